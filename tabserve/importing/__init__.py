"""A model from elsewhere becomes a checked model version in the store (import_model.py)."""

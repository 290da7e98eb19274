"""What training and serving both need: settings, errors, the feature schema, reading CSV text, calling the
pipeline, the model store and card."""

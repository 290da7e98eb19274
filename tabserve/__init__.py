"""What train.py and service.py share: configuration, data, feature schema, pipeline, model store."""

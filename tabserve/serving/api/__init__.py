"""The APIs: request and answer types from the feature schema, CSV upload, /v1, /v2 (Open Inference Protocol),
pages, entities."""

"""Serving: the HTTP contract, the gate in front of every route, cache, batching, the link to the model service,
metrics, the /v1 app."""

"""The edge: the gate in front of every route (keys, quotas, limits), one error shape, the OpenAPI additions."""

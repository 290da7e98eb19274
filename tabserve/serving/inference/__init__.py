"""The model call: the request path (version -> cache -> batch -> model -> answer), the runtimes held, the link to
a model service."""

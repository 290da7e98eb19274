"""One runtime per model family behind one small interface (base.Runtime), as MLServer's runtimes are.

`formats.open_file` reads a file a user brings (import time: detection, trust checks, what the model says it
expects); `formats.load` loads a stored version's runtime for serving and scoring. Each family module keeps
its quirks (output shapes, label handling, its fast path) inside it.
"""

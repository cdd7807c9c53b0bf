"""HTTP edge: problem responses, pure-ASGI middleware, metrics, auth dependencies."""

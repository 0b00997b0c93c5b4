"""The HTTP routes, one module a resource; `api.app.create_app` includes each router."""

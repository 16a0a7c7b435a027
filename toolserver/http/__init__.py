"""The HTTP face of the server: the FastAPI app, routes, auth, request and response models, the MCP endpoint."""

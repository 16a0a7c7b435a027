"""Running the server on Ray Serve: the deployments, the application builder, the ingress and the server image."""

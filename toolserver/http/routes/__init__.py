"""HTTP routes, one module per resource; each is thin over the service layer."""

"""Where sessions live: the node client seam, in-process nodes, Ray node actors, and session expiry."""

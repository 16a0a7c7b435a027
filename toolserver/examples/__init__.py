"""Small trusted tools shipped with the server, usable as `deployment` tools and in the docs."""

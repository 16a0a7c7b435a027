"""What the server sends out on a tenant's behalf: the egress policy and caps on what comes back."""

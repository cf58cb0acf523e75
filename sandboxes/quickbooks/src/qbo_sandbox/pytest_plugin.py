"""pytest fixtures: a real sandbox subprocess on a free 127.0.0.1 port (filled in below)."""

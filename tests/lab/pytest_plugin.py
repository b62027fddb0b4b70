"""pytest fixtures that start, share and stop the local lab (filled in by the lab work)."""

"""Serving: the Triton model repository (one python-backend model per stage) and the HTTP API."""

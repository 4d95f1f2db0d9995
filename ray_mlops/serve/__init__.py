"""Serving the champion over HTTP with Ray Serve."""

"""Packaging as MLflow pyfunc models, registration and the champion alias."""

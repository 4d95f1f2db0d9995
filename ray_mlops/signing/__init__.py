"""Model signing: sign a model's files at registration, verify them at every load."""

"""Data stages: read, check, split and fingerprint with Ray Data."""

"""`ray-mlops keys`: the signing key pair kept outside the workspace."""

"""Running the pipeline as a Ray Job on a cluster."""

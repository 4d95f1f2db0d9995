"""Model builders and the Ray-free predictor used by evaluation and serving."""

"""Model builders, the Ray-free predictor used by evaluation and serving, pyfunc packaging."""

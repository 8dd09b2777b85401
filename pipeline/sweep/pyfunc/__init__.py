"""MLflow models-from-code entries: each file sets one model of pipeline/sweep/models.py, so
a registered model is code MLflow copies, not a pickled object."""

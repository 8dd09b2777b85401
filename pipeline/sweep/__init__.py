"""`ecomrl sweep`: Ray Tune sweeps of the search policy's and the re-ranker's settings, each
trial an MLflow run, the best model registered (config.py, trainables.py, tuner.py, models.py)."""

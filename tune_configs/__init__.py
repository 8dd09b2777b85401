"""The bundled sweep files of `ecomrl sweep NAME` (NAME.yaml here; pipeline/sweep/config.py)."""

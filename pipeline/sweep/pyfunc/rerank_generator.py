"""The registered re-ranking generator (pipeline/sweep/models.py: RerankGeneratorModel)."""

import mlflow

from pipeline.sweep.models import RerankGeneratorModel

mlflow.models.set_model(RerankGeneratorModel())

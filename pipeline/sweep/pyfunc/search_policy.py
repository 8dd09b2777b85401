"""The registered search policy (pipeline/sweep/models.py: SearchPolicyModel)."""

import mlflow

from pipeline.sweep.models import SearchPolicyModel

mlflow.models.set_model(SearchPolicyModel())

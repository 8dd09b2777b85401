"""The best trial's model, as an MLflow pyfunc registered in the Model Registry.

`mlflow.pyfunc.load_model("models:/ecomrl-anc/1").predict(...)` serves it wherever ecomrl is
installed: a search policy maps observations to ranking weights, a re-ranking generator maps
requests to the k candidates it shows. The registered version is tagged with what it was
trained in (`simulator`, `simulator_version`), the sweep, and its metric.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import mlflow
import numpy as np
import torch

from pipeline import __version__

MODEL_NAME = "model"  # the logged model's name in the best trial's run
_CODE = Path(__file__).parent / "pyfunc"
SEARCH_POLICY = _CODE / "search_policy.py"
RERANK_GENERATOR = _CODE / "rerank_generator.py"


class SearchPolicyModel(mlflow.pyfunc.PythonModel):
    """An exported ranking policy (pipeline/export): obs (B, obs_dim) -> actions (B, dim)."""

    def load_context(self, context) -> None:
        from pipeline.export.loader import load_policy

        self.policy = load_policy(context.artifacts["policy"])

    def predict(self, context, model_input, params=None) -> np.ndarray:
        return self.policy(np.asarray(model_input, dtype=np.float32))


class RerankGeneratorModel(mlflow.pyfunc.PythonModel):
    """A trained generator: {"user": (B, U), "items": (B, N, F + 2), "valid": (B, N)} arrays
    (pipeline/rerank/requests.py) -> (B, k) candidate indices, top first, greedy."""

    def load_context(self, context) -> None:
        from pipeline.weights import load_module

        self.net = load_module(context.artifacts["generator"]).eval()
        self.k = int(context.model_config["k"])

    def predict(self, context, model_input, params=None) -> np.ndarray:
        from pipeline.rerank.generator import generate_lists

        inputs = {name: torch.as_tensor(np.asarray(model_input[name])) for name in model_input}
        with torch.inference_mode():
            orders = generate_lists(
                self.net, inputs["user"], inputs["items"], inputs["valid"].bool(), self.k
            )
        return orders.numpy()


def log_and_register(
    run_id: str,
    code: Path,
    artifacts: dict[str, Path],
    name: str,
    tags: dict[str, str],
    signature,
    model_config: dict | None = None,
):
    """Log the model `code` sets (SEARCH_POLICY, RERANK_GENERATOR) with `artifacts` to run
    `run_id` and register it as `name` with `tags`; returns the ModelVersion."""
    with (
        mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None),
        warnings.catch_warnings(),
    ):
        # The signature says what predict takes; MLflow's type-hint schemas cannot (arrays).
        warnings.filterwarnings("ignore", message=".*Add type hints")
        warnings.filterwarnings("ignore", message=".*input example was not provided")
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(code),
            artifacts={key: str(path) for key, path in artifacts.items()},
            model_config=model_config,
            signature=signature,
            # The model's code is ecomrl's: no dependency inference (it would load the model).
            pip_requirements=[f"ecomrl=={__version__}"],
        )
    return mlflow.register_model(info.model_uri, name, tags=tags)


def policy_signature(obs_dim: int, action_dim: int):
    """observations (B, obs_dim) float32 -> ranking weights (B, action_dim) float32."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    obs = TensorSpec(np.dtype(np.float32), (-1, obs_dim))
    actions = TensorSpec(np.dtype(np.float32), (-1, action_dim))
    return ModelSignature(Schema([obs]), Schema([actions]))


def generator_signature(user_dim: int, item_dim: int, k: int):
    """{"user", "items", "valid"} -> (B, k) int64 candidate indices (RerankGeneratorModel)."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    inputs = Schema(
        [
            TensorSpec(np.dtype(np.float32), (-1, user_dim), "user"),
            TensorSpec(np.dtype(np.float32), (-1, -1, item_dim), "items"),
            TensorSpec(np.dtype(np.bool_), (-1, -1), "valid"),
        ]
    )
    return ModelSignature(inputs, Schema([TensorSpec(np.dtype(np.int64), (-1, k))]))

"""Shared fixtures: one Ray per test session, MLflow in a temporary local store, `--slow`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run the slow end-to-end tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


@pytest.fixture(scope="session", autouse=True)
def mlflow_store(tmp_path_factory) -> str:
    """Every test logs to a throw-away SQLite store, never to the checkout."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlruns.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    return uri


@pytest.fixture(autouse=True)
def mlflow_store_restored(mlflow_store):
    """`mlflow.set_tracking_uri` also sets MLFLOW_TRACKING_URI: after a test that pointed MLflow
    at a store of its own, the next ones log to the session's store again."""
    yield
    os.environ["MLFLOW_TRACKING_URI"] = mlflow_store
    if "mlflow" in sys.modules:
        sys.modules["mlflow"].set_tracking_uri(mlflow_store)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (a fresh one costs ~10 s)."""
    import ray

    ray.init(
        num_cpus=2, include_dashboard=False, object_store_memory=300 * 1024**2, log_to_driver=False
    )
    yield ray
    ray.shutdown()


@pytest.fixture
def cli(capsys):
    """Run `ecomrl ARGS` in this process; returns (exit code, stdout, stderr)."""
    from pipeline.cli import main

    def invoke(*args: str) -> tuple[int, str, str]:
        old = sys.argv
        sys.argv = ["ecomrl", *map(str, args)]
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.argv = old
        out = capsys.readouterr()
        return code, out.out, out.err

    return invoke


@pytest.fixture
def one_torch_thread():
    """Torch's default threads oversubscribe a shared 2-core box (measured ~50x slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

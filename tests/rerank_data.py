"""World-written re-ranking requests and a small trained causal evaluator, on disk, for the
`ReRank-v0`, learner and CLI tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.rerank.config import EvaluatorConfig
from pipeline.rerank.evaluator import (
    EvaluatorKind,
    save_evaluator,
    train_evaluator,
)
from pipeline.rerank.requests import load_requests
from pipeline.world.generate import generate_logs

TINY_EVALUATOR = EvaluatorConfig(hidden=(16,), rnn_hidden=8, epochs=1, batch_size=128)


@dataclass(frozen=True)
class RerankData:
    logs: Path  # generated logs (page_views/, rerank_lists/)
    requests: Path  # the rerank_lists table directory (contract-valid as generated)
    evaluators: Path  # holds causal.safetensors


def make_rerank_data(root: Path, sessions: int = 4000) -> RerankData:
    torch.set_num_threads(1)
    generate_logs(root / "logs", sessions=sessions, seed=0)
    table = root / "logs" / "rerank_lists"
    requests, _ = load_requests(table)
    train, test = requests.split(0.2)
    model, _ = train_evaluator(EvaluatorKind.CAUSAL, train, test, TINY_EVALUATOR)
    save_evaluator(model, root / "evaluators")
    return RerankData(root / "logs", table, root / "evaluators")

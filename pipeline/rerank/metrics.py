"""The list-level metrics of the seed: the generator's greedy lists and BP (better percentage)."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.rerank.evaluator import ListEvaluator, score_lists
from pipeline.rerank.generator import GeneratorNet, generate_lists
from pipeline.rerank.requests import Requests


@torch.no_grad()
def generated_orders(net: GeneratorNet, requests: Requests, k: int, batch: int = 1024):
    """The generator's greedy list (M, k) for every request."""
    device = next(net.parameters()).device
    orders = []
    for start in range(0, len(requests), batch):
        part = requests.take(np.arange(start, min(start + batch, len(requests))))
        inputs = (torch.as_tensor(getattr(part, n), device=device) for n in ("user", "items"))
        valid = torch.as_tensor(part.valid, device=device)
        orders.append(generate_lists(net, *inputs, valid, k).cpu().numpy())
    return np.concatenate(orders)


def better_percentage(
    evaluator: ListEvaluator, requests: Requests, orders: np.ndarray, label: str = "pay"
) -> float:
    """BP (seed): the share of requests where the evaluator scores the generated list above
    the logged order."""
    generated = score_lists(evaluator, requests, orders, label)
    logged = score_lists(evaluator, requests, requests.shown, label)
    return float(np.mean(generated > logged))

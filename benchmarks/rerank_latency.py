"""Inference latency of the re-ranking generator against an LSTM pointer network, on one core.

The seed (rl-rerank-generator-evaluator, "Product sequence generator") replaces the pointer
network's two LSTMs by DNN scoring and reports half the prediction time on CPU. Both networks
choose k=17 of n=30 candidates greedily, with random weights (latency does not depend on
training) and the default world's input sizes:

  (a) `GeneratorNet` + `generate_lists` (pipeline/rerank/generator.py);
  (b) `LstmPointerNet` below (Vinyals et al. 2015, "Pointer Networks"): an LSTM encoder over
      the candidates' embeddings, an LSTM decoder cell fed the last chosen candidate's
      embedding, and the additive attention pointer v^T tanh(W1 e_i + W2 d_t), masking chosen
      and padded candidates. W1 e_i is computed once per request, as the DNN's candidate part.

Per network: p50 / p99 latency of one request (batch 1, `time.perf_counter` around each of
`--requests` requests after a warm-up) and requests/s at batch 256, the two networks taking
turns so that load from other processes hits both alike. Targets: DNN p99 < 2 ms at
batch 1, and the DNN >= 1.8x faster than the LSTM pointer network. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
from torch import nn

from pipeline.logs.schema import LogSpec
from pipeline.rerank.config import GeneratorConfig
from pipeline.rerank.generator import GeneratorNet, generate_lists

N, K = 30, 17
THROUGHPUT_BATCH = 256
TARGET_P99_MS = 2.0
TARGET_SPEEDUP = 1.8


class LstmPointerNet(nn.Module):
    """The reference pointer network of the module docstring, width `hidden`."""

    def __init__(self, user_dim: int, item_dim: int, hidden: int):
        super().__init__()
        self.item = nn.Linear(item_dim, hidden)
        self.user = nn.Linear(user_dim, hidden, bias=False)
        self.encoder = nn.LSTM(hidden, hidden, batch_first=True)
        self.decoder = nn.LSTMCell(hidden, hidden)
        self.start = nn.Parameter(torch.zeros(hidden))
        self.w1 = nn.Linear(hidden, hidden, bias=False)
        self.w2 = nn.Linear(hidden, hidden)
        self.v = nn.Linear(hidden, 1, bias=False)

    @torch.no_grad()
    def generate(self, user: torch.Tensor, items: torch.Tensor, valid: torch.Tensor, k: int):
        """(B, k) greedy picks, with the DNN's decoding tricks: W1 e_i once per request, the
        mask added inside the pointer's last matmul, flat-index gathers, in-place tanh."""
        batch, n, _ = items.shape
        embedded = self.item(items) + self.user(user).unsqueeze(1)
        encoded, (h, c) = self.encoder(embedded)
        keys = self.w1(encoded)
        h, c = h[0], c[0]
        step_input = self.start.expand_as(h)
        offsets = torch.arange(0, batch * n, n, device=items.device)
        embedded_rows = embedded.flatten(0, 1)
        penalty = torch.zeros(batch * n, 1, device=items.device)
        penalty.masked_fill_(~valid.reshape(batch * n, 1), -torch.inf)
        v = self.v.weight.T
        picks = []
        for step in range(k):
            h, c = self.decoder(step_input, (h, c))
            attention = torch.tanh_(keys + self.w2(h).unsqueeze(1)).flatten(0, 1)
            pick = torch.addmm(penalty, attention, v).view(batch, n).argmax(-1)
            picks.append(pick)
            if step == k - 1:
                break
            flat = offsets + pick
            penalty.index_fill_(0, flat, -torch.inf)
            step_input = embedded_rows.index_select(0, flat)
        return torch.stack(picks, dim=1)


def _requests(batch: int, user_dim: int, item_dim: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Random inputs shaped as `pipeline/rerank/requests.py`'s: one-hot-like user, n=N valid."""
    g = torch.Generator().manual_seed(seed)
    user = (torch.rand(batch, user_dim, generator=g) < 0.1).float()
    items = torch.randn(batch, N, item_dim, generator=g)
    return user, items, torch.ones(batch, N, dtype=torch.bool)


def latencies_ms(decoders: dict, inputs: tuple, requests: int, warmup: int) -> dict[str, dict]:
    """p50 / p99 / mean of one request at batch 1 per decoder, cycling over `inputs`' rows.
    The decoders take turns request by request, so load from other processes hits both."""
    times = {name: np.empty(requests) for name in decoders}
    with torch.inference_mode():
        for i in range(warmup + requests):
            row = tuple(x[i % len(x)].unsqueeze(0) for x in inputs)
            for name, decode in decoders.items():
                start = time.perf_counter()
                decode(*row)
                if i >= warmup:
                    times[name][i - warmup] = time.perf_counter() - start
    return {name: _summary(seconds * 1e3) for name, seconds in times.items()}


def _summary(ms: np.ndarray) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "mean_ms": round(float(ms.mean()), 4),
    }


def throughputs(decoders: dict, inputs: tuple, seconds: float, rounds: int = 10) -> dict:
    """Requests/s per decoder at the batch size of `inputs`; the decoders take turns in
    `rounds` slices of `seconds / rounds` each."""
    done = dict.fromkeys(decoders, 0)
    spent = dict.fromkeys(decoders, 0.0)
    with torch.inference_mode():
        for decode in decoders.values():
            decode(*inputs)
        for _ in range(rounds):
            for name, decode in decoders.items():
                start = time.perf_counter()
                while (elapsed := time.perf_counter() - start) < seconds / rounds:
                    decode(*inputs)
                    done[name] += len(inputs[0])
                spent[name] += elapsed
    return {name: done[name] / spent[name] for name in decoders}


def _target(name: str, measured: float, target: float, below: bool = False) -> dict:
    passed = measured < target if below else measured >= target
    return {"name": name, "measured": round(measured, 3), "target": target, "pass": passed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="timed batch-1 requests")
    parser.add_argument("--warmup", type=int, default=200, help="untimed batch-1 requests")
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="timed seconds per network at batch 256"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)  # "on one core"
    torch.manual_seed(0)
    spec = LogSpec()
    user_dim = sum(spec.attr_cardinalities) + spec.n_query_categories
    item_dim = spec.rerank_feature_dim + 2
    config = GeneratorConfig()
    dnn = GeneratorNet(user_dim, item_dim, config).eval()
    lstm = LstmPointerNet(user_dim, item_dim, config.hidden[0]).eval()
    decoders = {
        "dnn": lambda user, items, valid: generate_lists(dnn, user, items, valid, K),
        "lstm_pointer": lambda user, items, valid: lstm.generate(user, items, valid, K),
    }
    single = _requests(512, user_dim, item_dim, seed=1)
    batch = _requests(THROUGHPUT_BATCH, user_dim, item_dim, seed=2)
    rows = latencies_ms(decoders, single, args.requests, args.warmup)
    for name, rate in throughputs(decoders, batch, args.seconds).items():
        rows[name]["requests_per_s_batch256"] = round(rate)
    dnn_row, lstm_row = rows["dnn"], rows["lstm_pointer"]
    ratios = {
        "p50": lstm_row["p50_ms"] / dnn_row["p50_ms"],
        "p99": lstm_row["p99_ms"] / dnn_row["p99_ms"],
        "throughput": dnn_row["requests_per_s_batch256"] / lstm_row["requests_per_s_batch256"],
    }
    report = {
        "task": f"greedy {K} of {N}, batch 1 latency and batch {THROUGHPUT_BATCH} throughput",
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "input_dims": {"user": user_dim, "item": item_dim},
        "generator_config": config.model_dump(),
        "parameters": {
            "dnn_policy": sum(p.numel() for p in dnn.policy.parameters()),
            "lstm_pointer": sum(p.numel() for p in lstm.parameters()),
        },
        "networks": rows,
        "lstm_over_dnn": {key: round(value, 3) for key, value in ratios.items()},
        "targets": [
            _target("dnn batch1 p99 ms", dnn_row["p99_ms"], TARGET_P99_MS, below=True),
            _target("lstm/dnn p50 latency", ratios["p50"], TARGET_SPEEDUP),
            _target("lstm/dnn p99 latency", ratios["p99"], TARGET_SPEEDUP),
            _target("dnn/lstm throughput", ratios["throughput"], TARGET_SPEEDUP),
        ],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""Fit time and fidelity of the four customer density models (paper, Table 1) with the default
configs, on the customers of an ingested trajectory directory.

For each model: fit on every logged customer of the scenario, sample 100k customers, and report
KL(generated || real) (the paper's direction, "from virtual to real") of the history, purchase
power, query category and customer category marginals, the mean over all categorical groups,
and the dense features' mean and std. Targets (2 cores, 60k customers): fits within ~60 s
(GAN-SD, GAN), ~90 s (WGAN), ~30 s (GMM). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from pipeline.simulator.config import DensityConfig
from pipeline.simulator.customers import CustomerCodec, Customers
from pipeline.simulator.data import open_training_data
from pipeline.simulator.density import DensityKind, fit_density, sample_customers

EPS = 1e-8
COLUMNS = {"history": 0, "purchase": 1, "query": -1, "user": 9}  # categorical() columns


def marginal_kls(generated: Customers, real: Customers, sizes: tuple[int, ...]) -> list[float]:
    """KL(generated || real) of every categorical group's marginal."""
    out = []
    for column, size in enumerate(sizes):
        p, q = (
            np.bincount(c.categorical()[:, column], minlength=size) / len(c)
            for c in (generated, real)
        )
        out.append(float(np.sum(p * (np.log(p + EPS) - np.log(q + EPS)))))
    return out


def measure(kind: DensityKind, real: Customers, codec: CustomerCodec, samples: int) -> dict:
    fit = fit_density(kind, real, codec, DensityConfig(), seed=0, progress=False)
    generated = sample_customers(fit.module, codec, samples, seed=1)
    kls = marginal_kls(generated, real, codec.group_sizes)
    return {
        "fit_seconds": round(fit.metrics["fit_seconds"], 1),
        "kl": {name: round(kls[column], 4) for name, column in COLUMNS.items()},
        "kl_mean_all_groups": round(float(np.mean(kls)), 4),
        "kl_max_all_groups": round(max(kls), 4),
        "dense_mean": generated.dense.mean(axis=0).round(3).tolist(),
        "dense_std": generated.dense.std(axis=0).round(3).tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="output directory of `ecomrl logs ingest`")
    parser.add_argument("--scenario", default="main_search")
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--kinds", default=",".join(DensityKind))
    args = parser.parse_args()
    data = open_training_data(args.root)
    real, _ = data.customers(args.scenario)
    codec = CustomerCodec.fit(data.spec, real)
    report = {
        "customers": len(real),
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "real_dense_mean": real.dense.mean(axis=0).round(3).tolist(),
        "real_dense_std": real.dense.std(axis=0).round(3).tolist(),
    }
    for kind in args.kinds.split(","):
        report[kind] = measure(DensityKind(kind), real, codec, args.samples)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

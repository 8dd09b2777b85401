"""Re-ranking quality on the default world: the issue's targets from logs to the report.

Generates logs from the reference world (`--sessions`, 80k by default: about 20k re-ranking
requests), ingests them, trains the default study (`ecomrl rerank train`: four evaluators, the
seed's five learners, GAIL, PPO-MC on 17 candidates, GMV and PAY_GMV) and evaluates it
(`ecomrl rerank evaluate`). Prints JSON: every run's BP (causal and context evaluators), its
TRUE purchase and GMV gains over the logged order with 95% CIs, and the targets:
PPO-MC BP >= 0.85, and the best learner's true expected purchases above the logged order's.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from pipeline import stages, tracking
from pipeline.config import IngestConfig
from pipeline.evaluation.rerank_report import BP_TARGET
from pipeline.rerank.config import RerankConfig
from pipeline.world.generate import generate_logs


def _run_summary(run: dict, size: str) -> dict:
    at = run["by_size"][size]
    return {
        "bp": round(at["bp"], 4),
        "bp_context": round(at["bp_context"], 4),
        "final_entropy": round(run["curves"][-1]["entropy"], 3),
        **{
            f"{key}_gain": [round(at[key][part], 4) for part in ("gain", "low", "high")]
            for key in ("evaluator_pay", "true_pay", "true_gmv")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=80_000)
    parser.add_argument("--seed", type=int, default=0, help="world and logging seed")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary dir")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="rerank-quality-"))
    started = time.perf_counter()
    generate_logs(work / "logs", sessions=args.sessions, seed=args.seed)
    stages.ingest(work / "logs", work / "ingested", IngestConfig(overwrite=True), progress=False)
    study = RerankConfig()
    with tracking.run("benchmark-rerank-quality", {"sessions": args.sessions}):
        trained = stages.rerank_train(work / "ingested", work / "study", study, True, False)
        result, report = stages.rerank_evaluate(work / "study", args.seed)
    runs = {
        name: _run_summary(run, str((run["config"]["train_sizes"] or [30])[0]))
        for name, run in result["runs"].items()
    }
    ppo_mc_bp = runs["ppo_mc"]["bp"]
    best = max(runs, key=lambda name: runs[name]["true_pay_gain"][0])
    print(
        json.dumps(
            {
                "benchmark": "rerank_quality",
                "machine": platform.platform(),
                "sessions": args.sessions,
                "test_requests": result["test_requests"],
                "evaluators": {
                    kind: {k: round(v, 4) for k, v in m.items()}
                    for kind, m in result["evaluators"].items()
                },
                "runs": runs,
                "train_seconds": {
                    name: round(final["train_seconds"], 1)
                    for name, final in trained["runs"].items()
                },
                "targets": {
                    "ppo_mc_bp": [ppo_mc_bp, f">= {BP_TARGET}", ppo_mc_bp >= BP_TARGET],
                    "best_true_purchases_gain": [
                        best,
                        runs[best]["true_pay_gain"],
                        "CI above 0",
                        runs[best]["true_pay_gain"][1] > 0,
                    ],
                },
                "report": str(report),
                "seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

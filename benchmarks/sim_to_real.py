"""Sim-to-real on the default world: the evaluation report's tables over several seeds.

One set of logs and one simulator (the `ecomrl run` defaults), then for each seed: train TRPO,
TRPO-ANC (MAIL simulator), TRPO-ANC (BC simulator), SL1 and SL2 with that seed and deploy them
in the world on that seed's customers (`pipeline.stages.train_and_evaluate`). Prints, per seed
and averaged, R2P in the world and in the simulator with 95% CIs, the gains of Table 2, and
each of the paper's claims with how many seeds it holds in. The paper's numbers are the
targets; nothing here tunes the world.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline import stages, tracking
from pipeline.config import RunConfig
from pipeline.evaluation.report import PAPER_ANC_SIM_R2P, PAPER_R2P, PAPER_TABLE2

POLICIES = ("random", "trpo", "trpo_anc", "trpo_anc_bc", "sl1", "sl2")


def _seeded(config: RunConfig, seed: int) -> RunConfig:
    update = {part: {"seed": seed} for part in ("train", "supervised", "evaluation")}
    data = config.model_dump()
    for part, values in update.items():
        data[part].update(values)
    return RunConfig.model_validate(data)


def _summary(result: dict) -> dict:
    """R2P (world by day, simulator by behaviour) with CIs, per policy."""
    out = {}
    for name in POLICIES:
        score = result["policies"][name]
        out[name] = {
            "world": {
                day: [round(w["r2p"], 4), round(w["r2p_ci_low"], 4), round(w["r2p_ci_high"], 4)]
                for day, w in score["world"].items()
            },
            "world_tt_day0": round(score["world"]["0"]["tt"], 1),
            "world_tv_day0": round(score["world"]["0"]["tv"], 1),
            "simulator": {b: round(s["r2p"], 4) for b, s in score["simulator"].items()},
        }
    return out


def _gain(result: dict, name: str, day: str) -> float:
    world = result["policies"]
    return 100 * (world[name]["world"][day]["r2p"] / world["random"]["world"][day]["r2p"] - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="training and deployment seeds")
    parser.add_argument("--workdir", help="keep outputs here (default: a temporary directory)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlruns.db'}")
        config = RunConfig(workdir=work)
        started = time.perf_counter()
        logs, trajectories = work / "logs", work / "trajectories"
        with tracking.run("sim-to-real"):
            overwrite = {"overwrite": True}
            generate = config.generate.model_copy(update=overwrite)
            stages.generate(logs, generate, config.spec, progress=False)
            ingest = config.ingest.model_copy(update=overwrite)
            stages.ingest(logs, trajectories, ingest, progress=False)
            _, simulator = stages.simulator_build(
                trajectories, work / "simulator", config.simulator, True, progress=False
            )
            build_s = time.perf_counter() - started
            per_seed = {}
            for seed in seeds:
                _, result, _ = stages.train_and_evaluate(
                    _seeded(config, seed), simulator, trajectories, work / f"seed{seed}", False
                )
                per_seed[seed] = result
    days = list(per_seed[seeds[0]]["policies"]["random"]["world"])
    claims = {}
    for seed, result in per_seed.items():
        for claim in result["claims"]:
            entry = claims.setdefault(claim["claim"], {"holds_in_seeds": 0, "numbers": {}})
            entry["holds_in_seeds"] += int(claim["holds"])
            entry["numbers"][seed] = claim["numbers"]
    table2 = {
        label: {
            day: round(float(np.mean([_gain(r, name, day) for r in per_seed.values()])), 2)
            for day in days
        }
        for label, name in (("BC", "trpo_anc_bc"), ("MAIL", "trpo_anc"))
    }
    print(
        json.dumps(
            {
                "benchmark": "sim_to_real",
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "config": "ecomrl run defaults (RunConfig())",
                "seeds": seeds,
                "build_seconds": round(build_s, 1),
                "total_seconds": round(time.perf_counter() - started, 1),
                "claims": {**claims, "seeds": len(seeds)},
                "table2_r2p_gain_over_random_percent_mean": table2,
                "paper": {
                    "r2p_world": PAPER_R2P,
                    "table2": PAPER_TABLE2,
                    "r2p_simulator_anc": PAPER_ANC_SIM_R2P,
                },
                "per_seed": {seed: _summary(r) for seed, r in per_seed.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

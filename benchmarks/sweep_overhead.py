"""What Tune + MLflow cost: a 4-trial sweep vs the same 4 trainings one after another.

The training is fixed and tiny: PPO under ANC in a simulator of random networks, `--env-steps`
per training, and after every iteration the policy's R2P on the same simulated customers (the
sweep's metric), then a checkpoint at the end. The reference runs the 4 configs in this
process with the project's own code and nothing else (`build_algorithm`, `algo.train()`,
`sim_r2p`, `save_to_path`), after one warm-up training that is not timed (its one-time
costs would flatter the sweep). The sweep runs them as `ecomrl sweep` does (`run_sweep`: Tune,
ASHA with a grace period of the whole budget so no trial stops early, Ray's MLflow callback
logging every result to a local store, the best trial's policy exported and registered),
twice: 2 trials at a time, as a sweep uses 2 cores (`ratio`, the target's), and 1 at a time,
which isolates what Tune and MLflow add (`ratio_one_at_a_time`). Torch uses 1 thread
everywhere, as Tune's 1-CPU trial actors do.

Target: `ratio` <= 1.3. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import ray
import torch

from pipeline.learners.config import TrainConfig
from pipeline.learners.train import build_algorithm, sampled_env_steps
from pipeline.simulator.checkpoint import load_simulator
from pipeline.simulator.deploy import simulated_customers
from pipeline.sweep.config import SweepConfig, with_params
from pipeline.sweep.trainables import sim_r2p
from pipeline.sweep.tuner import run_sweep

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from simulator_factory import random_simulator

TARGET = 1.3
SEEDS = [0, 1, 2, 3]
BASE = {
    "algo": "ppo",
    "anc": {"mu": 0.5},
    "num_envs_per_env_runner": 64,
    "initial_action_std": 0.1,
    "settings": {"train_batch_size_per_learner": 1024, "minibatch_size": 256, "num_epochs": 2},
}
EVAL_CUSTOMERS = 1000


def reference(simulator: Path, env_steps: int, out: Path, seeds: list[int] = SEEDS) -> float:
    """The trainings of `seeds` one after another, no Tune, no MLflow; wall seconds."""
    start = time.perf_counter()
    for seed in seeds:
        train = TrainConfig.model_validate(with_params(BASE, {"seed": seed}))
        algo, _ = build_algorithm(str(simulator), train)
        sim = load_simulator(simulator)
        customers = simulated_customers(sim, EVAL_CUSTOMERS)
        steps = 0
        while steps < env_steps:
            steps = sampled_env_steps(algo.train())
            sim_r2p(algo.get_module(), sim, train, customers)
        algo.save_to_path(str(out / f"seed{seed}"))
        algo.stop()
    return time.perf_counter() - start


def sweep(simulator: Path, env_steps: int, storage: Path, concurrent: int) -> float:
    config = SweepConfig(
        name=f"overhead-{concurrent}",
        kind="search",
        simulator=str(simulator),
        base=BASE,
        space={"seed": {"grid": SEEDS}},
        budget=env_steps,
        eval_customers=EVAL_CUSTOMERS,
        checkpoint_every=10_000,  # at the end only, as the reference
        scheduler={"kind": "asha", "grace_period": env_steps},
        max_concurrent_trials=concurrent,
    )
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # Tune's banner: stdout is the JSON's
        run_sweep(config, storage, progress=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-steps", type=int, default=32768, help="per training")
    parser.add_argument("--repeats", type=int, default=1, help="reference/sweep pairs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlruns.db'}"
        os.chdir(root)  # the local MLflow artifacts
        simulator = random_simulator(root / "simulator")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        reference(simulator, args.env_steps, root / "warm-up", seeds=[0])
        runs = []
        for repeat in range(args.repeats):
            ref = reference(simulator, args.env_steps, root / f"reference{repeat}")
            two = sweep(simulator, args.env_steps, root / f"sweeps{repeat}", concurrent=2)
            one = sweep(simulator, args.env_steps, root / f"sweeps{repeat}", concurrent=1)
            runs.append(
                {
                    "reference_s": round(ref, 1),
                    "sweep_s": round(two, 1),
                    "sweep_one_at_a_time_s": round(one, 1),
                    "ratio": round(two / ref, 3),
                    "ratio_one_at_a_time": round(one / ref, 3),
                }
            )
        ray.shutdown()
    worst = max(run["ratio"] for run in runs)
    print(
        json.dumps(
            {
                "benchmark": "sweep_overhead",
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "trainings": len(SEEDS),
                "env_steps_per_training": args.env_steps,
                "runs": runs,
                "target_ratio": TARGET,
                "worst_ratio": worst,
                "met": worst <= TARGET,
                "worst_ratio_one_at_a_time": max(run["ratio_one_at_a_time"] for run in runs),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

"""Throughput of `VirtualTaobaoVectorEnv` on one core, against its ceiling.

For each batch size B: customer-steps/s of the vector env under uniformly random actions, and
of the customer policy's bare forward pass (`CustomerPolicyNet.sample` on B observations and
actions), which no environment built on it can beat. A customer-step is one page view answered
by a customer; NEXT_STEP autoreset steps (a finished sub-env restarting) are not counted, as
RLlib does not count them either. Customers are drawn from the generator inside the timed loop,
so the cost of arrivals (one per episode) is included; `customer_arrivals_per_s` gives that
cost alone, and `mean_episode_length` how often it is paid.

Targets: batch 4096 >= 100k customer-steps/s; batch 4096 env/forward >= 0.5; batch 1024 env /
batch 1 env >= 50. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.simulator.checkpoint import load_simulator
from rllib_envs.virtual_taobao import VirtualTaobaoVectorEnv

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from simulator_factory import random_simulator

BATCHES = (1, 64, 1024, 4096)
TARGET_STEPS_4096 = 100_000
TARGET_OVER_FORWARD_4096 = 0.5
TARGET_SCALING_1024_OVER_1 = 50
WARMUP_S = 0.5
ACTION_BANK = 32  # pre-drawn random action batches, so drawing them is not timed


def _run(step, seconds: float) -> tuple[int, float]:
    """Call step() (returns the customer-steps it made) for `seconds`: (steps, elapsed)."""
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        count += step()
    return count, elapsed


def env_rate(simulator: str, batch: int, seconds: float) -> dict[str, float]:
    env = VirtualTaobaoVectorEnv(simulator=simulator, num_envs=batch, seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    bank = rng.uniform(-1, 1, (ACTION_BANK, *env.action_space.shape)).astype(np.float32)
    t, restarting, episodes = 0, np.zeros(batch, bool), 0

    def step() -> int:
        nonlocal t, restarting, episodes
        _, _, terminated, truncated, _ = env.step(bank[t % ACTION_BANK])
        stepped = batch - int(restarting.sum())  # NEXT_STEP restarts are not steps
        restarting = terminated | truncated
        episodes += int(restarting.sum())
        t += 1
        return stepped

    _run(step, WARMUP_S)
    episodes = 0
    steps, elapsed = _run(step, seconds)
    return {"env_steps_per_s": steps / elapsed, "episode_length": steps / max(episodes, 1)}


def forward_rate(simulator: str, batch: int, seconds: float) -> float:
    """The ceiling: pi^c's sampling forward pass on a batch of real observations."""
    env = VirtualTaobaoVectorEnv(simulator=simulator, num_envs=batch, seed=0, customer_pool=batch)
    obs = torch.from_numpy(env.reset()[0])
    policy = load_simulator(simulator).component("customer_policy")
    action = torch.empty((batch, env.single_action_space.shape[0])).uniform_(-1, 1)
    generator = torch.Generator().manual_seed(0)

    def step() -> int:
        with torch.inference_mode():
            policy.sample(obs, action, generator)
        return batch

    _run(step, WARMUP_S)
    steps, elapsed = _run(step, seconds)
    return steps / elapsed


def arrival_rate(simulator: str, seconds: float) -> float:
    """Customers/s drawn from P^c and encoded (a reset of B sub-envs with a pool of B draws a
    fresh pool each time): the other cost of an episode besides its page views."""
    batch = max(BATCHES)
    env = VirtualTaobaoVectorEnv(simulator=simulator, num_envs=batch, customer_pool=batch)

    def step() -> int:
        env.reset()
        return batch

    _run(step, WARMUP_S)
    customers, elapsed = _run(step, seconds)
    return customers / elapsed


def _target(name: str, measured: float, target: float) -> dict:
    passed = measured >= target
    return {"name": name, "measured": round(measured, 3), "target": target, "pass": passed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulator", help="checkpoint dir or MLflow URI (default: random)")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per measure")
    args = parser.parse_args()
    torch.set_num_threads(1)  # "on one core"
    with tempfile.TemporaryDirectory() as tmp:
        simulator = args.simulator or str(random_simulator(Path(tmp) / "simulator"))
        rows = {}
        for batch in BATCHES:
            env = env_rate(simulator, batch, args.seconds)
            forward = forward_rate(simulator, batch, args.seconds)
            rows[batch] = {
                "env_steps_per_s": round(env["env_steps_per_s"]),
                "forward_steps_per_s": round(forward),
                "env_over_forward": round(env["env_steps_per_s"] / forward, 3),
                "mean_episode_length": round(env["episode_length"], 2),
            }
        arrivals = arrival_rate(simulator, args.seconds)
    targets = [
        _target("batch4096 env steps/s", rows[4096]["env_steps_per_s"], TARGET_STEPS_4096),
        _target("batch4096 env/forward", rows[4096]["env_over_forward"], TARGET_OVER_FORWARD_4096),
        _target(
            "batch1024 env / batch1 env",
            rows[1024]["env_steps_per_s"] / rows[1]["env_steps_per_s"],
            TARGET_SCALING_1024_OVER_1,
        ),
    ]
    report = {
        "simulator": args.simulator or "random weights, default network sizes",
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "batches": {str(b): row for b, row in rows.items()},
        "customer_arrivals_per_s": round(arrivals),
        "targets": targets,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""How faithful is a simulator? The paper's fidelity experiments ("On Virtual-Taobao
Properties"), measured against the logs it was built from:

- Table 1 / Figure 3: generate customers with every density model (GAN-SD, GMM, GAN, WGAN)
  and report KL(generated || logged) of four attributes' distributions: history turnover
  level, purchase power, query category and customer category;
- Figure 4: R2P by customer group in the simulator vs the logs, the logged engine policy
  replayed in the simulator;
- Figure 5: R2P over the 12 two-hour slices of a day, one simulator built per slice.

"Replaying the logged engine policy" draws each page's action from the logged actions (of the
slice, for Figure 5). That is exact when the logging policy ignores the customer, as the
paper's random A/B bucket and our reference world's do; for a context-dependent logging policy
it replays the action distribution only, and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pipeline.errors import UserError
from pipeline.logs.schema import LogSpec
from pipeline.simulator import gan_sd
from pipeline.simulator.build import GENERATOR, build_simulator, density_component
from pipeline.simulator.checkpoint import Simulator, load_simulator
from pipeline.simulator.config import FidelityConfig
from pipeline.simulator.customers import Customers
from pipeline.simulator.data import BUY, N_SLICES, TrainingData, open_training_data
from pipeline.simulator.density import DensityKind, sample_customers
from rllib_envs.virtual_taobao import VirtualTaobaoVectorEnv

QUERY = "query_category"
TABLE1_ATTRIBUTES = ("history_turnover_level", "purchase_power_level", QUERY, "customer_category")
SIM_BATCH = 4096  # sessions stepped together when replaying the logged policy


def levels(spec: LogSpec, attribute: str) -> int:
    if attribute == QUERY:
        return spec.n_query_categories
    return spec.attr_cardinalities[_attr_index(spec, attribute)]


def _attr_index(spec: LogSpec, attribute: str) -> int:
    if attribute not in spec.attr_names:
        raise UserError(f"unknown customer attribute {attribute!r}; known: {spec.attr_names}")
    return spec.attr_names.index(attribute)


def attribute_codes(customers: Customers, spec: LogSpec, attribute: str) -> np.ndarray:
    if attribute == QUERY:
        return customers.query
    return customers.attrs[:, _attr_index(spec, attribute)]


def distribution(codes: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(codes, minlength=k)[:k] / max(len(codes), 1)


def kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) of two distributions over the same categories (GAN-SD's, finite where q
    has empty categories)."""
    return float(gan_sd.kl(torch.as_tensor(p), torch.as_tensor(q)))


def density_models(simulator: Simulator) -> dict[str, torch.nn.Module]:
    """GAN-SD (the simulator's P^c) and whichever baselines the checkpoint holds."""
    models = {DensityKind.GAN_SD.value: simulator.component(GENERATOR)}
    for kind in (DensityKind.GMM, DensityKind.GAN, DensityKind.WGAN):
        if simulator.has(density_component(kind)):
            models[kind.value] = simulator.component(density_component(kind))
    return models


def customer_fidelity(
    simulator: Simulator, logged: Customers, n: int, seed: int
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, list[float]]]]:
    """Table 1 (KL per model and attribute) and Figure 3 (the distributions themselves)."""
    spec = simulator.spec
    dists = {
        "logs": {
            a: distribution(attribute_codes(logged, spec, a), levels(spec, a))
            for a in TABLE1_ATTRIBUTES
        }
    }
    table = {}
    for name, module in density_models(simulator).items():
        generated = sample_customers(module, simulator.codec, n, seed)
        dists[name] = {
            a: distribution(attribute_codes(generated, spec, a), levels(spec, a))
            for a in TABLE1_ATTRIBUTES
        }
        table[name] = {a: kl(dists[name][a], dists["logs"][a]) for a in TABLE1_ATTRIBUTES}
    as_lists = {m: {a: d.tolist() for a, d in v.items()} for m, v in dists.items()}
    return table, as_lists


@dataclass
class PageViews:
    """Page views with their customer group codes and whether they ended in a purchase."""

    codes: dict[str, np.ndarray] = field(default_factory=dict)
    purchase: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def r2p(self) -> float:
        return float(self.purchase.mean()) if len(self.purchase) else float("nan")

    def r2p_by_group(self, attribute: str, k: int) -> list[float]:
        views = np.bincount(self.codes[attribute], minlength=k)[:k]
        buys = np.bincount(self.codes[attribute], weights=self.purchase, minlength=k)[:k]
        return [float(b / v) if v else float("nan") for b, v in zip(buys, views, strict=True)]


def logged_page_views(
    data: TrainingData, scenario: str, time_slice: int | None, attributes: tuple[str, ...]
) -> tuple[PageViews, np.ndarray]:
    """The logged page views and the logged engine actions (the policy to replay)."""
    transitions = data.transitions(scenario, time_slice)
    codes = {a: attribute_codes(transitions.customers, data.spec, a) for a in attributes}
    return PageViews(codes, transitions.decision == BUY), transitions.engine_action


def observation_codes(obs: np.ndarray, spec: LogSpec, attribute: str) -> np.ndarray:
    """Read an attribute back from the engine observation's one-hots (observation.py)."""
    if attribute == QUERY:
        start = sum(spec.attr_cardinalities)
    else:
        start = sum(spec.attr_cardinalities[: _attr_index(spec, attribute)])
    return obs[:, start : start + levels(spec, attribute)].argmax(axis=1)


def simulated_page_views(
    location: str | Path,
    behaviour: str,
    replay: np.ndarray,
    sessions: int,
    attributes: tuple[str, ...],
    seed: int,
) -> PageViews:
    """Replay logged actions in the simulator until `sessions` sessions have ended."""
    spec = load_simulator(location).spec
    config = {"simulator": str(location), "behaviour": behaviour, "seed": seed}
    env = VirtualTaobaoVectorEnv(config, num_envs=min(SIM_BATCH, sessions))
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    live = np.ones(env.num_envs, bool)  # False on NEXT_STEP autoreset steps: no page shown
    obs_parts, buy_parts, ended = [], [], 0
    while ended < sessions:
        actions = replay[rng.integers(len(replay), size=env.num_envs)]
        next_obs, reward, terminated, _, _ = env.step(actions)
        obs_parts.append(obs[live])
        buy_parts.append(reward[live] > 0)
        ended += int(terminated.sum())
        live = ~terminated
        obs = next_obs
    shown = np.concatenate(obs_parts)
    codes = {a: observation_codes(shown, spec, a) for a in attributes}
    return PageViews(codes, np.concatenate(buy_parts))


def slice_r2p(
    data: TrainingData, out: Path, config: FidelityConfig, scenario: str, progress: bool
) -> dict[str, list[float | None]]:
    """Figure 5: per two-hour slice, the logged R2P and the R2P of a simulator built from that
    slice alone, the slice's logged actions replayed. Slices without logs are None."""
    logged, simulated = [], []
    slices = tqdm(range(N_SLICES), desc="per-slice simulators", disable=not progress)
    for k in slices:
        try:
            views, replay = logged_page_views(data, scenario, k, ())
        except UserError:  # no page views in this slice
            logged.append(None)
            simulated.append(None)
            continue
        slice_config = config.slice_simulator.model_copy(
            update={"time_slice": k, "scenario": scenario, "seed": config.seed + k}
        )
        directory = out / "slices" / f"slice={k:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        build_simulator(data.root, directory, slice_config, progress=False)
        sim = simulated_page_views(directory, "mail", replay, config.sessions, (), config.seed)
        logged.append(views.r2p())
        simulated.append(sim.r2p())
    return {"logs": logged, "simulator": simulated}


def evaluate(
    location: str | Path,
    trajectories: Path,
    out: Path,
    config: FidelityConfig,
    progress: bool = True,
) -> dict:
    """Every fidelity experiment of one simulator against the logs at `trajectories`."""
    simulator = load_simulator(location)
    data = open_training_data(trajectories)
    if data.spec != simulator.spec:
        raise UserError(f"{trajectories}: logs of another spec than the simulator's")
    scenario, spec = simulator.manifest.scenario, simulator.spec
    logged_customers, _ = data.customers(scenario, simulator.manifest.time_slice)
    kl_table, distributions = customer_fidelity(
        simulator, logged_customers, config.customers, config.seed
    )
    attributes = config.group_attributes
    for attribute in attributes:
        levels(spec, attribute)  # unknown names fail here, before any simulation
    logged, replay = logged_page_views(data, scenario, simulator.manifest.time_slice, attributes)
    groups = {"logs": logged}
    for behaviour in ("mail", "bc"):
        groups[behaviour] = simulated_page_views(
            simulator.root, behaviour, replay, config.sessions, attributes, config.seed
        )
    result = {
        "kl": kl_table,
        "distributions": distributions,
        "r2p": {name: views.r2p() for name, views in groups.items()},
        "r2p_by_group": {
            a: {name: v.r2p_by_group(a, levels(spec, a)) for name, v in groups.items()}
            for a in attributes
        },
    }
    if config.slices:
        result["r2p_by_slice"] = slice_r2p(data, out, config, scenario, progress)
    return result

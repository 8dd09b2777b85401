"""`ecomrl simulator build`: logs -> a versioned Virtual-Taobao checkpoint (paper, Figure 1).

1. GAN-SD learns the customer distribution P^c (and, for Table 1, the GMM, GAN and WGAN);
2. behaviour cloning fits pi^c, pi_sigma and the amount model from the logged page views:
   the BC simulator of Table 2 and MAIL's starting point;
3. MAIL refines pi^c and pi_sigma adversarially on RLlib, customers drawn from GAN-SD.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np

from pipeline.logs.observation import observation_dim
from pipeline.ray_runtime import ensure_ray
from pipeline.simulator.behaviour_cloning import clone
from pipeline.simulator.checkpoint import Manifest, component_path, write_checkpoint
from pipeline.simulator.config import SimulatorConfig
from pipeline.simulator.customers import CustomerCodec
from pipeline.simulator.data import open_training_data
from pipeline.simulator.density import DensityKind, fit_density
from pipeline.simulator.mail import mail_config, train_mail
from pipeline.weights import save_module

GENERATOR = "customer_generator"
BASELINES = (DensityKind.GMM, DensityKind.GAN, DensityKind.WGAN)


def density_component(kind: DensityKind) -> str:
    return f"density_{kind.value}"


def build_simulator(
    trajectories: Path, out: Path, config: SimulatorConfig, progress: bool = True
) -> Manifest:
    """Train every component from the ingested `trajectories` and write the checkpoint to
    `out` (an existing, empty directory). Returns the written manifest."""
    data = open_training_data(trajectories)
    customers, _ = data.customers(config.scenario, config.time_slice)
    transitions = data.transitions(config.scenario, config.time_slice)
    codec = CustomerCodec.fit(data.spec, customers)
    metrics: dict[str, float] = {"customers": len(customers), "page_views": len(transitions)}
    # The scale of the logged actions: ANC's mu is set relative to it (paper, "ANC").
    norms = np.linalg.norm(transitions.engine_action, axis=1)
    metrics.update(
        {f"logged_action_norm.p{q}": float(np.percentile(norms, q)) for q in (10, 50, 90)}
    )

    # 1. P^c by GAN-SD (Algorithm 1), and the baselines of Table 1.
    kinds = (DensityKind.GAN_SD, *(BASELINES if config.baselines else ()))
    modules = {}
    for kind in kinds:
        fitted = fit_density(
            kind, customers, codec, config.density, config.seed, progress, out / "training"
        )
        name = GENERATOR if kind is DensityKind.GAN_SD else density_component(kind)
        modules[name] = fitted.module
        metrics.update({f"{kind.value}.{k}": v for k, v in fitted.metrics.items()})
    # MAIL's environments load the generator from this file (on every env runner).
    save_module(modules[GENERATOR], component_path(out, GENERATOR))

    # 2. Behaviour cloning (the baseline simulator and MAIL's warm start).
    started = time.perf_counter()
    cloned = clone(
        transitions, data.spec, config.behaviour, config.amount_hidden, config.seed, progress
    )
    metrics.update({f"bc.{k}": v for k, v in cloned.metrics.items()})
    metrics["bc.fit_seconds"] = time.perf_counter() - started

    # 3. MAIL (Algorithm 2) on RLlib.
    mail = config.mail
    if mail.iterations:
        ensure_ray()
        algo_config = mail_config(
            data,
            str(component_path(out, GENERATOR)),
            codec,
            config.behaviour.hidden,
            mail,
            config.scenario,
            config.time_slice,
            config.seed,
        )
        start = (copy.deepcopy(cloned.customer), copy.deepcopy(cloned.engine))
        started = time.perf_counter()
        result = train_mail(algo_config, start, mail.iterations, progress)
        customer, engine = result.customer, result.engine
        metrics.update({f"mail.{k}": v for k, v in result.metrics.items()})
        metrics["mail.fit_seconds"] = time.perf_counter() - started
    else:
        customer, engine = cloned.customer, cloned.engine

    modules.update(
        customer_policy=customer,
        engine_policy=engine,
        bc_customer_policy=cloned.customer,
        amount=cloned.amount,
    )
    manifest = Manifest(
        spec=data.spec,
        scenario=config.scenario,
        time_slice=config.time_slice,
        observation_dim=observation_dim(data.spec),
        action_dim=data.spec.action_dim,
        codec=codec.to_json(),
        data_fingerprint=data.fingerprint,
        data_root=str(Path(trajectories).resolve()),
        config=config.model_dump(mode="json"),
        metrics={k: float(v) for k, v in metrics.items()},
    )
    return write_checkpoint(out, manifest, modules)

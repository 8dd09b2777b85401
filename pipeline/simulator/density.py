"""The customer density models P^c of the fidelity table (paper, Table 1) behind one interface.

GAN-SD (the simulator's), the plain GAN, the WGAN and the GMM baselines all learn the codec's
flat vectors (`customers.CustomerCodec`) and return a loadable module with
`sample_vectors(n, generator)`, so fitting, saving, loading and sampling are the same for all.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.simulator import gan_sd, gmm, wgan
from pipeline.simulator.config import DensityConfig, GeneratorConfig
from pipeline.simulator.customers import CustomerCodec, Customers

KL_SAMPLE = 10_000  # generated customers behind the `marginal_kl` metric


class DensityKind(enum.StrEnum):
    GAN_SD = "gan_sd"
    GAN = "gan"
    WGAN = "wgan"
    GMM = "gmm"


@dataclass
class FitResult:
    """A fitted density: a @loadable module with `sample_vectors`, and its fit's metrics."""

    module: nn.Module
    metrics: dict[str, float]


def _adversarial(
    kind: DensityKind, config: DensityConfig
) -> tuple[GeneratorConfig, gan_sd.StepMaker]:
    """The config and the update of an adversarial kind (GAN-SD and the GAN share their code)."""
    return {
        DensityKind.GAN_SD: (config.gan_sd, gan_sd.training_step),
        DensityKind.GAN: (config.gan, gan_sd.training_step),
        DensityKind.WGAN: (config.wgan, wgan.training_step),
    }[kind]


def marginal_kl(module: nn.Module, vectors: np.ndarray, codec: CustomerCodec, seed: int) -> float:
    """Mean over the categorical groups of KL(real marginal || marginal of KL_SAMPLE draws)."""
    sample = module.sample_vectors(KL_SAMPLE, torch.Generator().manual_seed(seed))
    decoded = codec.encode(codec.decode(sample.numpy()))  # GMM draws are continuous: argmax
    slices = codec.group_slices()
    real = gan_sd.group_marginals(torch.from_numpy(vectors), slices)
    generated = gan_sd.group_marginals(torch.from_numpy(decoded), slices)
    return float(
        torch.stack([gan_sd.kl(p, q) for p, q in zip(real, generated, strict=True)]).mean()
    )


def fit_density(
    kind: DensityKind,
    customers: Customers,
    codec: CustomerCodec,
    config: DensityConfig,
    seed: int,
    progress: bool = True,
    checkpoint_dir: Path | None = None,
) -> FitResult:
    """Fit one density model on `customers`; metrics: the fit's own (final losses for the
    adversarial kinds, EM diagnostics for the GMM), `marginal_kl` and `fit_seconds`."""
    kind = DensityKind(kind)
    vectors = codec.encode(customers)
    start = time.perf_counter()
    if kind is DensityKind.GMM:
        module, metrics = gmm.fit(vectors, config.gmm, seed)
    else:
        settings, make_step = _adversarial(kind, config)
        module, losses = gan_sd.fit_adversarial(
            kind.value, vectors, codec, settings, seed, progress, checkpoint_dir, make_step
        )
        metrics = {k: losses[k] for k in ("d_loss", "g_loss")}
    metrics["fit_seconds"] = time.perf_counter() - start
    metrics["marginal_kl"] = marginal_kl(module, vectors, codec, seed)
    return FitResult(module, metrics)


def sample_customers(
    module: nn.Module, codec: CustomerCodec, n: int, seed: int, batch: int = 65536
) -> Customers:
    """n customers from a fitted density, drawn `batch` at a time to bound memory."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        chunks = [
            module.sample_vectors(min(batch, n - done), generator).numpy()
            for done in range(0, n, batch)
        ]
    return codec.decode(np.concatenate(chunks))

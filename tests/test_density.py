"""The customer density models (paper, Table 1): GAN-SD's loss pieces on known answers, each
model on a toy problem whose marginals are known, weights round trips and checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline import tracking
from pipeline.simulator import gan_sd
from pipeline.simulator.config import (
    DensityConfig,
    GanConfig,
    GmmConfig,
    PlainGanConfig,
    WganConfig,
)
from pipeline.simulator.customers import CustomerCodec, Customers
from pipeline.simulator.density import DensityKind, fit_density, sample_customers
from pipeline.simulator.networks import CustomerGenerator
from pipeline.weights import load_module, save_module

ATTR = np.array([0.7, 0.2, 0.1])
QUERY = np.array([0.55, 0.25, 0.15, 0.05])
DENSE_MEAN, DENSE_STD = 2.0, 0.5
CODEC = CustomerCodec(group_sizes=(3, 4), dense_mean=(DENSE_MEAN,), dense_std=(DENSE_STD,))
TINY = {"noise_dim": 8, "hidden": (32, 32), "batch_size": 256, "steps": 400, "lr": 1e-3}
CONFIG = DensityConfig(
    # A small alpha: the optimum of alpha H(q) - KL(p || q) is then within KL 0.002 of p, so
    # the real marginals are the right answer (alpha = 1 flattens them on purpose).
    gan_sd=GanConfig(**TINY, alpha=0.1),
    gan=PlainGanConfig(**TINY),
    wgan=WganConfig(**{**TINY, "steps": 300, "lr": 5e-4}),
    gmm=GmmConfig(max_iter=50),
)


def toy_customers(n: int = 4000, seed: int = 0) -> Customers:
    rng = np.random.default_rng(seed)
    return Customers(
        attrs=rng.choice(3, size=(n, 1), p=ATTR),
        query=rng.choice(4, size=n, p=QUERY),
        dense=rng.normal(DENSE_MEAN, DENSE_STD, size=(n, 1)).astype(np.float32),
    )


def marginal_kls(customers: Customers) -> list[float]:
    """KL(true marginal || generated marginal) of the attribute group and the query."""
    codes = customers.categorical()
    out = []
    for column, truth in enumerate((ATTR, QUERY)):
        freq = np.bincount(codes[:, column], minlength=len(truth)) / len(codes)
        out.append(float(gan_sd.kl(torch.tensor(truth), torch.tensor(freq))))
    return out


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    torch.testing.assert_close(a.state_dict(), b.state_dict(), rtol=0, atol=0)


@pytest.fixture(scope="module")
def fits():
    customers = toy_customers()
    return {kind: fit_density(kind, customers, CODEC, CONFIG, 0, False) for kind in DensityKind}


@pytest.fixture(scope="module")
def untrained_kl() -> float:
    torch.manual_seed(0)
    untrained = CustomerGenerator(8, CODEC.group_sizes, CODEC.dense_dim, (32, 32))
    return max(marginal_kls(sample_customers(untrained, CODEC, 20_000, seed=1)))


# (a) loss pieces on known answers


def test_entropy_of_uniform_is_log_k():
    for k in (2, 5, 12):
        assert gan_sd.entropy(torch.full((k,), 1.0 / k)).item() == pytest.approx(math.log(k))


def test_kl_of_equal_distributions_is_zero():
    p = torch.tensor([0.5, 0.3, 0.2])
    assert gan_sd.kl(p, p).item() == 0.0


def test_kl_of_two_point_distributions():
    p, q = torch.tensor([0.25, 0.75]), torch.tensor([0.5, 0.5])
    expected = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert gan_sd.kl(p, q).item() == pytest.approx(expected, abs=1e-6)


def test_group_marginals_of_one_hots_are_frequencies():
    customers = toy_customers(n=1000)
    vectors = torch.from_numpy(CODEC.encode(customers))
    marginals = gan_sd.group_marginals(vectors, CODEC.group_slices())
    codes = customers.categorical()
    for column, (size, marginal) in enumerate(zip(CODEC.group_sizes, marginals, strict=True)):
        freq = np.bincount(codes[:, column], minlength=size) / len(codes)
        np.testing.assert_allclose(marginal.numpy(), freq, atol=1e-6)


def test_marginal_terms_of_matching_probabilities():
    """Generated logits whose softmax is the real frequencies: KL 0, H the frequencies'."""
    customers = toy_customers(n=1000)
    real = torch.from_numpy(CODEC.encode(customers))
    frequencies = gan_sd.group_marginals(real, CODEC.group_slices())
    logits = [torch.log(f).expand(64, -1) for f in frequencies]
    h, divergence = gan_sd.marginal_terms(logits, real, CODEC.group_slices())
    assert divergence.item() == pytest.approx(0.0, abs=1e-5)
    assert h.item() == pytest.approx(sum(gan_sd.entropy(f).item() for f in frequencies))


# (b) the toy problem: known marginals and dense mean


def test_gan_sd_recovers_the_marginals_and_dense_mean(fits, untrained_kl):
    generated = sample_customers(fits[DensityKind.GAN_SD].module, CODEC, 20_000, seed=1)
    assert max(marginal_kls(generated)) < 0.02 < untrained_kl
    assert generated.dense.mean() == pytest.approx(DENSE_MEAN, abs=0.1)


@pytest.mark.parametrize(
    ("kind", "bound"), [(DensityKind.GMM, 0.02), (DensityKind.WGAN, 0.1), (DensityKind.GAN, 0.1)]
)
def test_baselines_fit_the_toy_problem(fits, untrained_kl, kind, bound):
    generated = sample_customers(fits[kind].module, CODEC, 20_000, seed=1)
    assert max(marginal_kls(generated)) < min(bound, untrained_kl / 3)
    assert generated.dense.mean() == pytest.approx(DENSE_MEAN, abs=0.3)


@pytest.mark.parametrize("kind", list(DensityKind))
def test_fit_metrics(fits, kind):
    metrics = fits[kind].metrics
    assert metrics["fit_seconds"] > 0
    assert 0 <= metrics["marginal_kl"] < 0.1
    if kind is not DensityKind.GMM:
        assert np.isfinite([metrics["d_loss"], metrics["g_loss"]]).all()


# (c) weights round trip


@pytest.mark.parametrize("kind", list(DensityKind))
def test_saved_module_samples_identically(fits, kind, tmp_path):
    module = fits[kind].module
    save_module(module, tmp_path / "density.safetensors")
    loaded = load_module(tmp_path / "density.safetensors")
    assert type(loaded) is type(module)
    draws = [m.sample_vectors(500, torch.Generator().manual_seed(3)) for m in (module, loaded)]
    assert draws[0].shape == (500, CODEC.dim)
    torch.testing.assert_close(draws[0], draws[1], rtol=0, atol=0)


def test_sample_customers_is_seeded_and_batched(fits):
    module = fits[DensityKind.GAN_SD].module
    first, again = (sample_customers(module, CODEC, 1000, seed=5, batch=300) for _ in range(2))
    assert len(first) == 1000
    np.testing.assert_array_equal(first.categorical(), again.categorical())
    np.testing.assert_array_equal(first.dense, again.dense)


def test_fit_is_seeded():
    config = CONFIG.model_copy(update={"gan_sd": CONFIG.gan_sd.model_copy(update={"steps": 5})})
    customers = toy_customers(n=500)
    modules = [
        fit_density(DensityKind.GAN_SD, customers, CODEC, config, 7, False).module for _ in range(2)
    ]
    assert_same_weights(*modules)


# (d) checkpoints and MLflow curves


@pytest.mark.parametrize("kind", [DensityKind.GAN_SD, DensityKind.WGAN])
def test_checkpoints_every_n_steps_and_at_the_end(kind, tmp_path, monkeypatch):
    saved: list[int] = []

    def counting_save(module, path):
        saved.append(path.name)
        save_module(module, path)

    monkeypatch.setattr(gan_sd, "save_module", counting_save)
    short = {"steps": 10, "checkpoint_every": 4}
    config = CONFIG.model_copy(
        update={
            "gan_sd": CONFIG.gan_sd.model_copy(update=short),
            "wgan": CONFIG.wgan.model_copy(update=short),
        }
    )
    result = fit_density(kind, toy_customers(n=500), CODEC, config, 0, False, tmp_path)
    assert saved == [f"{kind}.safetensors"] * 3  # steps 4, 8 and 10
    assert_same_weights(load_module(tmp_path / f"{kind}.safetensors"), result.module)


def test_losses_are_logged_to_the_active_mlflow_run():
    import mlflow

    config = CONFIG.model_copy(
        update={"gan": CONFIG.gan.model_copy(update={"steps": 10, "log_every": 5})}
    )
    with tracking.run("density-test") as run:
        fit_density(DensityKind.GAN, toy_customers(n=500), CODEC, config, 0, False)
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "gan.d_loss")
    assert [m.step for m in history] == [5, 10]
    for name in ("gan.g_loss", "gan.kl", "gan.entropy"):
        assert len(mlflow.MlflowClient().get_metric_history(run.info.run_id, name)) == 2

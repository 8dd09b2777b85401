"""The fidelity measures on inputs whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.logs.schema import LogSpec
from pipeline.simulator.customers import Customers
from pipeline.simulator.fidelity import (
    QUERY,
    PageViews,
    attribute_codes,
    distribution,
    kl,
    observation_codes,
)

SPEC = LogSpec()


def test_kl_of_known_distributions():
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    assert kl(p, p) == pytest.approx(0.0, abs=1e-9)
    expected = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert kl(p, q) == pytest.approx(expected, rel=1e-4)
    assert math.isfinite(kl(p, np.array([1.0, 0.0])))  # smoothed, not infinite


def test_distribution_and_r2p_by_group():
    codes = np.array([0, 0, 1, 2, 2, 2])
    assert distribution(codes, 4).tolist() == pytest.approx([2 / 6, 1 / 6, 3 / 6, 0])
    views = PageViews({"g": codes}, np.array([1, 0, 0, 1, 1, 0], bool))
    by_group = views.r2p_by_group("g", 4)
    assert by_group[:3] == pytest.approx([0.5, 0.0, 2 / 3]) and math.isnan(by_group[3])
    assert views.r2p() == pytest.approx(0.5)


def test_groups_read_back_from_observations():
    rng = np.random.default_rng(0)
    n = 50
    customers = Customers(
        np.stack([rng.integers(0, c, n) for c in SPEC.attr_cardinalities], 1),
        rng.integers(0, SPEC.n_query_categories, n),
        rng.normal(size=(n, SPEC.dense_dim)).astype(np.float32),
    )
    obs = customers.observation(SPEC, rng.integers(0, 5, n), rng.integers(0, 3, n))
    for attribute in (*SPEC.attr_names, QUERY):
        expected = attribute_codes(customers, SPEC, attribute)
        assert np.array_equal(observation_codes(obs, SPEC, attribute), expected)

"""Estimates with confidence intervals, shared by the world's deployment and the simulator's."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np


@dataclass(frozen=True)
class Estimate:
    value: float
    ci_low: float
    ci_high: float


def ratio_estimate(num: np.ndarray, den: np.ndarray, z: float) -> Estimate:
    """sum(num) / sum(den) over clusters, with a delta-method (linearised) clustered CI."""
    ratio = num.sum() / den.sum()
    m = num.size
    resid = num - ratio * den
    se = np.sqrt(m / max(m - 1, 1) * np.sum(resid**2)) / den.sum()
    return Estimate(float(ratio), float(ratio - z * se), float(ratio + z * se))


def total_estimate(values: np.ndarray, z: float) -> Estimate:
    """sum over clusters, with a normal CI from the spread of the cluster sums."""
    total = values.sum()
    se = np.sqrt(values.size * values.var(ddof=1)) if values.size > 1 else 0.0
    return Estimate(float(total), float(total - z * se), float(total + z * se))


def z_value(confidence: float) -> float:
    """The two-sided normal quantile of `confidence` (1.96 for 0.95)."""
    return NormalDist().inv_cdf(0.5 + confidence / 2)

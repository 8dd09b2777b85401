"""The generator's step rewards (seed, "Strengthen the way of learning" and the GMV section).

With the causal evaluator, the purchase probability p_t of the item placed at position t depends
only on the items above it, so each step has its own reward:

    PAY      r_t = p_t                                   (expected purchases)
    GMV      r_t = p_t * q_t                             (q_t: the item's price quantile in its
                                                          candidate set, not its raw price)
    PAY_GMV  r_t = (1 - w) * p_t + w * p_t * q_t         (w = `gmv_weight`, swept by Tune)

and a list's return is sum_t r_t (gamma = 1: a list is judged as a whole).
"""

from __future__ import annotations

import enum

import numpy as np


class RewardKind(enum.StrEnum):
    PAY = "pay"
    GMV = "gmv"
    PAY_GMV = "pay_gmv"


def step_reward(pay_prob, price_quantile, kind: RewardKind, gmv_weight: float = 0.5):
    """r_t from p_t and q_t (numpy arrays or torch tensors of one shape)."""
    if kind is RewardKind.PAY:
        return pay_prob
    if kind is RewardKind.GMV:
        return pay_prob * price_quantile
    return (1.0 - gmv_weight) * pay_prob + gmv_weight * pay_prob * price_quantile


def returns_to_go(rewards: np.ndarray) -> np.ndarray:
    """G_t = sum_{t' >= t} r_t' along the last axis (gamma = 1)."""
    return np.flip(np.cumsum(np.flip(rewards, -1), -1), -1)

"""The GAIL variant's discriminator (seed, "GAIL reinforcement learning rearrangement"): tells
generated lists from logged ones, so that the generator is paid for staying near the data the
evaluator was trained on.

A list is read top-down by a GRU over its items' inputs, with the customer added to every step;
the last hidden state gives one logit, the log-odds that the list is GENERATED (the convention of
`pipeline.learners.adversarial.discriminator_step`).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn


class ListDiscriminator(nn.Module):
    def __init__(self, user_dim: int, item_dim: int, hidden: int = 32):
        super().__init__()
        self.user = nn.Linear(user_dim, hidden)
        self.item = nn.Linear(item_dim, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, lists: dict[str, torch.Tensor]) -> torch.Tensor:
        """lists: user (B, U), items (B, N, D), order (B, k) -> logits (B,)."""
        order = lists["order"]
        shown = lists["items"].gather(1, order[..., None].expand(-1, -1, lists["items"].shape[2]))
        steps = torch.relu(self.item(shown) + self.user(lists["user"])[:, None, :])
        _, last = self.gru(steps)
        return self.head(last[0]).squeeze(-1)


def imitation_reward(discriminator: ListDiscriminator, lists: dict[str, torch.Tensor]):
    """r = log(1 - R) - log R = -logit R: positive when the list looks logged."""
    with torch.no_grad():
        return (-discriminator(lists)).cpu().numpy().astype(np.float64)


def discriminator_auc(
    discriminator: ListDiscriminator,
    generated: dict[str, torch.Tensor],
    logged: dict[str, torch.Tensor],
) -> float:
    """ROC AUC of telling generated (positive) from logged lists: 0.5 = indistinguishable."""
    with torch.no_grad():
        scores = torch.cat([discriminator(generated), discriminator(logged)]).cpu().numpy()
    labels = np.r_[np.ones(len(generated["order"])), np.zeros(len(logged["order"]))]
    return float(roc_auc_score(labels, scores))

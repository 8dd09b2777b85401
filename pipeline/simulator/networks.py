"""The simulator's networks, all multi-layer perceptrons as in the paper ("Experiment Setting").

Every module here is rebuilt from its constructor arguments plus a safetensors state dict
(`checkpoint.py`), so a checkpoint never needs unpickling. Inputs are standardised inside the
modules by buffers fitted on the training data, so the buffers travel with the weights.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import nn

from pipeline.weights import loadable


def mlp(sizes: list[int] | tuple[int, ...], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers of `sizes` with `activation` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def gumbel_argmax(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A sample of Categorical(logits) per row by the Gumbel-max trick (no softmax needed)."""
    uniform = torch.rand(logits.shape, generator=generator, device=logits.device)
    return (logits - torch.log(-torch.log(uniform.clamp_min(1e-20)))).argmax(dim=-1)


class Standardize(nn.Module):
    """x -> (x - mean) / std with the statistics of the training inputs, kept as buffers."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, x: np.ndarray) -> None:
        self.mean.copy_(torch.as_tensor(x.mean(axis=0), dtype=torch.float32))
        std = torch.as_tensor(x.std(axis=0), dtype=torch.float32)
        self.std.copy_(torch.where(std > 1e-3, std, torch.ones_like(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@loadable
class CustomerPolicyNet(nn.Module):
    """pi^c(a^c | s^c): the customer's response to a page (paper, "MAIL").

    s^c = <s, a, n>: the engine's observation s (which holds the page index n and the last
    page's clicks) and the engine action a. The customer first clicks (0..page_size items),
    then decides (buy, turn_page, leave) knowing its clicks:
        pi^c(clicks, decision | s^c) = p(clicks | s^c) * p(decision | s^c, clicks).
    Clicks are our addition to the paper's a^c: the engine observes them and the click reward
    needs them. `AmountNet` gives the purchase amount of a buy.
    """

    def __init__(self, obs_dim: int, action_dim: int, page_size: int, hidden: tuple[int, ...]):
        super().__init__()
        self.obs_dim, self.action_dim, self.page_size = obs_dim, action_dim, page_size
        self.inputs = Standardize(obs_dim + action_dim)
        self.trunk = mlp([obs_dim + action_dim, *hidden], nn.Tanh)
        self.trunk.append(nn.Tanh())
        self.clicks_head = nn.Linear(hidden[-1], page_size + 1)
        self.decision_head = nn.Linear(hidden[-1], 3)
        self.clicks_to_decision = nn.Embedding(page_size + 1, 3)

    def hidden(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.inputs(torch.cat([obs, action], dim=-1)))

    def clicks_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.clicks_head(h)

    def decision_logits(self, h: torch.Tensor, clicks: torch.Tensor) -> torch.Tensor:
        return self.decision_head(h) + self.clicks_to_decision(clicks)

    def log_prob(self, obs, action, clicks, decision) -> torch.Tensor:
        h = self.hidden(obs, action)
        lp_clicks = torch.log_softmax(self.clicks_logits(h), -1).gather(-1, clicks[:, None])
        lp_decision = torch.log_softmax(self.decision_logits(h, clicks), -1).gather(
            -1, decision[:, None]
        )
        return (lp_clicks + lp_decision).squeeze(-1)

    @torch.no_grad()
    def sample(self, obs, action, generator: torch.Generator | None = None):
        """(clicks, decision) for a batch, one forward pass of the trunk."""
        h = self.hidden(obs, action)
        clicks = gumbel_argmax(self.clicks_logits(h), generator)
        decision = gumbel_argmax(self.decision_logits(h, clicks), generator)
        return clicks, decision


@loadable
class EnginePolicyNet(nn.Module):
    """pi_sigma(a | s): the engine policy MAIL learns jointly with the customer (Algorithm 2),
    a diagonal Gaussian whose mean depends on s and whose log-std is a free parameter."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.inputs = Standardize(obs_dim)
        self.mean = mlp([obs_dim, *hidden, action_dim], nn.Tanh)
        self.log_std = nn.Parameter(torch.full((action_dim,), -1.0))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.mean(self.inputs(obs))
        return mean, self.log_std.expand_as(mean)


@loadable
class AmountNet(nn.Module):
    """log(purchase amount) | s^c, buy ~ Normal(mu, sigma): the amount of a simulated buy.

    The paper does not model amounts ("we didn't predict ... commodity price"); the
    purchase-amount reward of `VirtualTaobao-v0` needs one, so we fit this by maximum likelihood
    on the logged buys."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.inputs = Standardize(obs_dim + action_dim)
        self.net = mlp([obs_dim + action_dim, *hidden, 2], nn.Tanh)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(self.inputs(torch.cat([obs, action], dim=-1)))
        return out[:, 0], out[:, 1].clamp(-5.0, 3.0)

    def nll(self, obs, action, amount: torch.Tensor) -> torch.Tensor:
        mu, log_sigma = self(obs, action)
        z = (torch.log(amount) - mu) / log_sigma.exp()
        return (0.5 * z**2 + log_sigma).mean()

    @torch.no_grad()
    def sample(self, obs, action, generator: torch.Generator | None = None) -> torch.Tensor:
        mu, log_sigma = self(obs, action)
        noise = torch.randn(mu.shape, generator=generator, device=mu.device)
        return torch.exp(mu + log_sigma.exp() * noise)


@loadable
class CustomerGenerator(nn.Module):
    """G(z): noise -> a customer in the codec's space (pipeline/simulator/customers.py).

    One logit vector per categorical group (attributes, then the query category) and the
    standardised dense features. GAN-SD, the plain GAN and the WGAN share this generator, so
    Table 1 compares training objectives, not architectures."""

    def __init__(
        self, noise_dim: int, group_sizes: tuple[int, ...], dense_dim: int, hidden: tuple[int, ...]
    ):
        super().__init__()
        self.noise_dim, self.group_sizes, self.dense_dim = noise_dim, group_sizes, dense_dim
        self.net = mlp([noise_dim, *hidden, sum(group_sizes) + dense_dim])
        edges = np.cumsum((0, *group_sizes))
        self.slices = [slice(int(a), int(b)) for a, b in itertools.pairwise(edges)]

    def forward(self, z: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per-group logits and the dense part for noise `z`."""
        out = self.net(z)
        categorical = sum(self.group_sizes)
        return [out[:, s] for s in self.slices], out[:, categorical:]

    @torch.no_grad()
    def sample_vectors(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n customers in codec space: a one-hot drawn from each group's softmax, then dense."""
        device = next(self.parameters()).device
        z = torch.randn((n, self.noise_dim), generator=generator, device=device)
        logits, dense = self(z)
        onehots = [
            nn.functional.one_hot(gumbel_argmax(g, generator), g.shape[-1]).float() for g in logits
        ]
        return torch.cat([*onehots, dense], dim=-1)

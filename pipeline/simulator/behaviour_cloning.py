"""Behaviour cloning (BC): the customer policy learned by supervised learning on logged pairs.

Paper ("Generalization Capability of MAIL"): "a behavior cloning method (BC) which uses the same
network structure with MAIL" is the baseline simulator of Table 2. BC maximises the likelihood
of the logged customer action a^c given s^c = <s, a, n> (a mapping from customer states to
actions, i.i.d. over page views). The same routine fits MAIL's starting point: the customer
policy pi^c and the engine policy pi_sigma (whose log-likelihood of the logged engine actions is
maximised), and the purchase-amount model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from pipeline.logs.observation import observation_dim
from pipeline.logs.schema import LogSpec
from pipeline.simulator.config import BehaviourConfig
from pipeline.simulator.data import BUY, Transitions
from pipeline.simulator.networks import AmountNet, CustomerPolicyNet, EnginePolicyNet


@dataclass(frozen=True)
class ClonedPolicies:
    customer: CustomerPolicyNet
    engine: EnginePolicyNet
    amount: AmountNet
    metrics: dict[str, float]


def _tensors(transitions: Transitions, spec: LogSpec) -> dict[str, torch.Tensor]:
    return {
        "obs": torch.as_tensor(transitions.observation(spec)),
        "action": torch.as_tensor(transitions.engine_action),
        "clicks": torch.as_tensor(transitions.clicks),
        "decision": torch.as_tensor(transitions.decision),
        "amount": torch.as_tensor(np.nan_to_num(transitions.amount, nan=0.0)),
    }


def _fit(
    module: torch.nn.Module,
    loss_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    data: dict[str, torch.Tensor],
    config: BehaviourConfig,
    seed: int,
    desc: str,
    progress: bool,
) -> dict[str, float]:
    """Minibatch Adam on `loss_fn` (a mean negative log-likelihood) with a held-out split.
    Returns the train and validation loss of the last epoch."""
    n = len(next(iter(data.values())))
    rng = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=rng)
    n_val = int(n * config.validation_fraction) if n >= 20 else 0
    val, train = order[:n_val], order[n_val:]
    optimiser = torch.optim.Adam(module.parameters(), lr=config.lr)
    per_epoch = max(1, math.ceil(len(train) / config.batch_size))
    epochs = max(config.epochs, math.ceil(config.min_steps / per_epoch))
    bar = tqdm(total=epochs * per_epoch, desc=desc, disable=not progress, leave=False)
    module.train()
    train_loss = float("nan")
    for _ in range(epochs):
        for batch in torch.split(
            train[torch.randperm(len(train), generator=rng)], config.batch_size
        ):
            loss = loss_fn({k: v[batch] for k, v in data.items()})
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            train_loss = loss.item()
            bar.update()
            bar.set_postfix(loss=f"{train_loss:.4f}")
    bar.close()
    module.eval()
    with torch.no_grad():
        val_loss = float(loss_fn({k: v[val] for k, v in data.items()})) if n_val else train_loss
    return {"train_nll": train_loss, "validation_nll": val_loss}


def _customer_nll(policy: CustomerPolicyNet):
    return lambda b: -policy.log_prob(b["obs"], b["action"], b["clicks"], b["decision"]).mean()


def _engine_nll(engine: EnginePolicyNet):
    def loss(b: dict[str, torch.Tensor]) -> torch.Tensor:
        mean, log_std = engine(b["obs"])
        return -torch.distributions.Normal(mean, log_std.exp()).log_prob(b["action"]).sum(-1).mean()

    return loss


def _amount_nll(amount: AmountNet):
    return lambda b: amount.nll(b["obs"], b["action"], b["amount"])


def clone(
    transitions: Transitions,
    spec: LogSpec,
    config: BehaviourConfig,
    amount_hidden: tuple[int, ...],
    seed: int = 0,
    progress: bool = True,
) -> ClonedPolicies:
    """Fit pi^c, pi_sigma and the amount model by maximum likelihood on logged page views."""
    torch.manual_seed(seed)
    data = _tensors(transitions, spec)
    obs_dim = observation_dim(spec)
    customer = CustomerPolicyNet(obs_dim, spec.action_dim, spec.page_size, config.hidden)
    engine = EnginePolicyNet(obs_dim, spec.action_dim, config.hidden)
    amount = AmountNet(obs_dim, spec.action_dim, amount_hidden)
    s_c = torch.cat([data["obs"], data["action"]], dim=-1).numpy()
    customer.inputs.fit(s_c)
    amount.inputs.fit(s_c)
    engine.inputs.fit(data["obs"].numpy())

    metrics = {}
    for name, module, loss, rows in (
        ("customer", customer, _customer_nll(customer), slice(None)),
        ("engine", engine, _engine_nll(engine), slice(None)),
        ("amount", amount, _amount_nll(amount), _bought_with_amount(transitions)),
    ):
        subset = {k: v[rows] for k, v in data.items()}
        if len(subset["obs"]) == 0:  # click-only logs: no amounts to learn from
            continue
        fitted = _fit(module, loss, subset, config, seed, f"BC {name}", progress)
        metrics.update({f"{name}_{k}": v for k, v in fitted.items()})
    metrics.update(_decision_metrics(customer, data))
    return ClonedPolicies(customer, engine, amount, metrics)


def _bought_with_amount(transitions: Transitions) -> np.ndarray:
    amount = transitions.amount
    return (transitions.decision == BUY) & np.isfinite(amount) & (amount > 0)


@torch.no_grad()
def _decision_metrics(policy: CustomerPolicyNet, data: dict[str, torch.Tensor]) -> dict[str, float]:
    """How often the most likely decision is the logged one, and the predicted buy rate."""
    h = policy.hidden(data["obs"], data["action"])
    probs = torch.softmax(policy.decision_logits(h, data["clicks"]), -1)
    return {
        "customer_decision_accuracy": float((probs.argmax(-1) == data["decision"]).float().mean()),
        "customer_predicted_buy_rate": float(probs[:, BUY].mean()),
        "logged_buy_rate": float((data["decision"] == BUY).float().mean()),
    }

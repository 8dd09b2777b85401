"""List evaluators: the seed's three scoring models plus the causal reward model of the generator.

Seed (rl-rerank-generator-evaluator), "Regardless of the context, is the model accurate enough to
grade the goods?" and "Strengthen the way of learning". Each model scores the item shown at each
position of a list with a click and a pay logit:

    SIMPLE   "Simple DNN": an MLP of [user, item]; no position, no context.
    AE       "AE rerank": SIMPLE + global statistics of the candidate set (mean, variance, min,
             max of each item-input column over the valid candidates), which ignore the order.
    CONTEXT  the seed's new model: AE + a 1-D CNN over the displayed sequence (sees neighbours
             above AND below) + a GRU read top-down + the position.
    CAUSAL   the RL reward model: CONTEXT without the CNN ("the specific modification of the
             evaluator is to remove the CNN module"), so the pay probability at position j
             depends only on the items at positions <= j. `start` / `step` score a list one
             position at a time, which is what the generator's step rewards need.

The GRU state that enters position j has read the items ABOVE j only (h_{j-1}); the item at j
enters through its own features. The first layer of the scoring MLP is written as a sum of one
Linear per input block (the same function as one Linear of their concatenation), so the
order-free blocks [user, stats] and [item] are computed once per request and candidate by
`start`.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from pipeline.errors import UserError
from pipeline.rerank.config import EvaluatorConfig
from pipeline.rerank.requests import Requests
from pipeline.simulator.networks import mlp
from pipeline.weights import load_module, loadable, save_module

LABELS = ("click", "pay")


class EvaluatorKind(enum.StrEnum):
    SIMPLE = "simple"
    AE = "ae"
    CONTEXT = "context"
    CAUSAL = "causal"


@dataclass(frozen=True)
class CausalState:
    """A CAUSAL evaluator's view of a list being built: `start` computes the order-free parts
    once, each `step` only advances the GRU."""

    candidate_pre: torch.Tensor  # (B, N, H0) first-layer pre-activation of [user, stats, item]
    items: torch.Tensor  # (B, N, D) the GRU's input per candidate
    hidden: torch.Tensor  # (B, R) GRU state after the items placed so far
    position: int  # the next position to fill


def candidate_stats(items: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """AE rerank's global statistics (B, 4D): mean, variance, min, max of each item column over
    the valid candidates; padding never counts."""
    mask = valid.unsqueeze(-1)
    count = mask.sum(dim=1).clamp_min(1)
    mean = (items * mask).sum(dim=1) / count
    var = (((items - mean.unsqueeze(1)) * mask) ** 2).sum(dim=1) / count
    low = items.masked_fill(~mask, torch.inf).amin(dim=1)
    high = items.masked_fill(~mask, -torch.inf).amax(dim=1)
    return torch.cat([mean, var, low, high], dim=-1)


def gather_items(items: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """(B, N, D) candidates -> (B, L, D) in the displayed order."""
    return items.gather(1, order.unsqueeze(-1).expand(-1, -1, items.shape[-1]))


@loadable
class ListEvaluator(nn.Module):
    """Click and pay logits of the items a list shows (module docstring for the four kinds)."""

    def __init__(
        self,
        kind: EvaluatorKind,
        user_dim: int,
        item_dim: int,
        config: EvaluatorConfig | dict | None = None,
    ):
        super().__init__()
        config = EvaluatorConfig.model_validate(config or {})
        self.kind, self.config = EvaluatorKind(kind), config
        self.user_dim, self.item_dim = user_dim, item_dim
        first = config.hidden[0]
        context_dim = user_dim if self.kind is EvaluatorKind.SIMPLE else user_dim + 4 * item_dim
        self.context_in = nn.Linear(context_dim, first)
        self.item_in = nn.Linear(item_dim, first, bias=False)
        if self.sequential:
            self.position_in = nn.Embedding(config.max_positions, first)
            # The GRU starts from the request (user and candidate set), not from zeros.
            self.initial_state = nn.Linear(context_dim, config.rnn_hidden)
            self.gru = nn.GRU(item_dim, config.rnn_hidden, batch_first=True)
            self.history_in = nn.Linear(config.rnn_hidden, first, bias=False)
        if self.kind is EvaluatorKind.CONTEXT:
            kernel = config.cnn_kernel
            self.cnn = nn.Conv1d(item_dim, config.cnn_channels, kernel, padding=kernel // 2)
            self.neighbours_in = nn.Linear(config.cnn_channels, first, bias=False)
        self.trunk = nn.Sequential(nn.ReLU(), *mlp(config.hidden), nn.ReLU())
        self.heads = nn.Linear(config.hidden[-1], len(LABELS))

    @property
    def sequential(self) -> bool:
        """Whether scores depend on the order (position and GRU): CONTEXT and CAUSAL."""
        return self.kind in (EvaluatorKind.CONTEXT, EvaluatorKind.CAUSAL)

    def _context(self, user: torch.Tensor, items: torch.Tensor, valid: torch.Tensor):
        if self.kind is EvaluatorKind.SIMPLE:
            return user
        return torch.cat([user, candidate_stats(items, valid)], dim=-1)

    def _candidate_pre(self, context: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.context_in(context).unsqueeze(1) + self.item_in(items)

    def _position_pre(self, position: torch.Tensor) -> torch.Tensor:
        return self.position_in(position.clamp(max=self.config.max_positions - 1))

    def _logits(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.heads(self.trunk(pre))
        return logits[..., 0], logits[..., 1]

    def forward(
        self, user: torch.Tensor, items: torch.Tensor, valid: torch.Tensor, order: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(click_logits, pay_logits), each (B, L), of the candidates `order` (B, L) shows top
        first; user (B, U), items (B, N, D), valid (B, N)."""
        context = self._context(user, items, valid)
        shown = gather_items(items, order)
        pre = self._candidate_pre(context, shown)
        if self.sequential:
            pre = pre + self._position_pre(torch.arange(order.shape[1], device=order.device))
            pre = pre + self.history_in(self._histories(context, shown))
        if self.kind is EvaluatorKind.CONTEXT:
            neighbours = F.relu(self.cnn(shown.transpose(1, 2))).transpose(1, 2)
            pre = pre + self.neighbours_in(neighbours)
        return self._logits(pre)

    def _histories(self, context: torch.Tensor, shown: torch.Tensor) -> torch.Tensor:
        """h_{j-1} for every position j (B, L, R): the GRU state after the items above j."""
        initial = torch.tanh(self.initial_state(context))
        after, _ = self.gru(shown, initial.unsqueeze(0).contiguous())
        return torch.cat([initial.unsqueeze(1), after[:, :-1]], dim=1)

    def list_score(
        self,
        user: torch.Tensor,
        items: torch.Tensor,
        valid: torch.Tensor,
        order: torch.Tensor,
        label: str = "pay",
    ) -> torch.Tensor:
        """The evaluator's score of each list (B,) for `label` ("click" or "pay").

        CONTEXT, CAUSAL: the expected count, sum_j sigmoid(logit_j) (seed: "the evaluator is
        predicting the expected number of transactions in the sequence").
        SIMPLE, AE: p_i does not depend on the order, so a plain sum would rate every order of
        a set alike; the seed's DCG-like form sum_j p_j / log2(j + 2) (j = 0 at the top) rewards
        placing the likely items high ("Regardless of the change of order ...")."""
        if label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, not {label!r}")
        probs = torch.sigmoid(self(user, items, valid, order)[LABELS.index(label)])
        if self.sequential:
            return probs.sum(dim=1)
        position = torch.arange(order.shape[1], device=order.device, dtype=probs.dtype)
        return (probs / torch.log2(position + 2.0)).sum(dim=1)

    def _check_causal(self) -> None:
        if self.kind is not EvaluatorKind.CAUSAL:
            raise ValueError(f"step rewards need the causal evaluator, not {self.kind.value!r}")

    @torch.no_grad()
    def start(self, user: torch.Tensor, items: torch.Tensor, valid: torch.Tensor) -> CausalState:
        """An empty list of a request: the order-free parts of every candidate's score."""
        self._check_causal()
        context = self._context(user, items, valid)
        return CausalState(
            candidate_pre=self._candidate_pre(context, items),
            items=items,
            hidden=torch.tanh(self.initial_state(context)),
            position=0,
        )

    @torch.no_grad()
    def step(
        self, state: CausalState, chosen: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, CausalState]:
        """(pay_prob (B,), click_prob (B,), next state) of placing candidate `chosen` (B,) at
        the next position, below the items placed so far: the generator's step reward (seed,
        "Strengthen the way of learning"). One GRU step and the small MLP per call."""
        self._check_causal()
        rows = torch.arange(chosen.shape[0], device=chosen.device)
        position = torch.full_like(chosen, state.position)
        pre = (
            state.candidate_pre[rows, chosen]
            + self._position_pre(position)
            + self.history_in(state.hidden)
        )
        click, pay = self._logits(pre)
        _, hidden = self.gru(state.items[rows, chosen].unsqueeze(1), state.hidden.unsqueeze(0))
        hidden = hidden.squeeze(0)
        advanced = CausalState(state.candidate_pre, state.items, hidden, state.position + 1)
        return torch.sigmoid(pay), torch.sigmoid(click), advanced


# --- training -------------------------------------------------------------------------------


def _model_inputs(requests: Requests, device: torch.device) -> dict[str, torch.Tensor]:
    return {
        "user": torch.as_tensor(requests.user, device=device),
        "items": torch.as_tensor(requests.items, device=device),
        "valid": torch.as_tensor(requests.valid, device=device),
    }


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weights only: decaying the biases pulls the pay logit's large negative
    intercept (pays are ~1 % of positions) towards 0 and inflates every probability."""
    params = list(model.parameters())
    return [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]


def train_evaluator(
    kind: EvaluatorKind,
    train: Requests,
    test: Requests,
    config: EvaluatorConfig | None = None,
    progress: bool = False,
    device: str | torch.device = "cpu",
) -> tuple[ListEvaluator, dict[str, float]]:
    """Fit one evaluator on the logged lists of `train` (minibatch Adam on the click and pay
    BCE of every shown position) and return it with its held-out metrics on `test`
    (`evaluate_evaluator`, plus `train_seconds`)."""
    config, device = config or EvaluatorConfig(), torch.device(device)
    # Own RNG streams: the same config gives the same model whatever ran before.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = ListEvaluator(kind, train.user.shape[1], train.items.shape[2], config).to(device)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(_decay_groups(model, config.weight_decay), lr=config.lr)
    # At a constant rate the last iterate's mean pay probability swung by +-25 % from epoch to
    # epoch (pays are rare, so minibatch gradients are noisy); annealing the rate to 0 ends
    # calibrated, and calibration matters: the probabilities are the generator's rewards.
    batches = -(-len(train) // config.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs * batches)
    inputs = _model_inputs(train, device)
    order = torch.as_tensor(train.shown, device=device)
    clicks = torch.as_tensor(train.clicks, dtype=torch.float32, device=device)
    pays = torch.as_tensor(train.pays, dtype=torch.float32, device=device)

    started = time.perf_counter()
    model.train()
    with tqdm(total=config.epochs, desc=f"evaluator {kind}", disable=not progress) as bar:
        for _ in range(config.epochs):
            total = torch.zeros((), device=device)
            for batch in torch.randperm(len(train), generator=generator).split(config.batch_size):
                batch = batch.to(device)
                click_logits, pay_logits = model(
                    **{name: value[batch] for name, value in inputs.items()}, order=order[batch]
                )
                # pay_weight scales a whole proper scoring rule, so the pay probabilities stay
                # calibrated (they are summed into expected purchases and rewards); weighting
                # only the positive labels, as for rare pays one often does, would not.
                loss = F.binary_cross_entropy_with_logits(
                    click_logits, clicks[batch]
                ) + config.pay_weight * F.binary_cross_entropy_with_logits(pay_logits, pays[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                total += loss.detach() * len(batch)
            bar.set_postfix(loss=f"{total.item() / len(train):.4f}")
            bar.update()
    seconds = time.perf_counter() - started
    model.eval()
    return model, {**evaluate_evaluator(model, test), "train_seconds": seconds}


# --- inference and metrics ------------------------------------------------------------------


def _chunks(model: ListEvaluator, requests: Requests, orders: np.ndarray, batch_size: int):
    """(model inputs, order) of consecutive chunks of requests, on the model's device."""
    device = _device(model)
    for start in range(0, len(requests), batch_size):
        rows = np.arange(start, min(start + batch_size, len(requests)))
        order = torch.as_tensor(np.asarray(orders[rows], dtype=np.int64), device=device)
        yield _model_inputs(requests.take(rows), device), order


@torch.no_grad()
def score_lists(
    model: ListEvaluator,
    requests: Requests,
    orders: np.ndarray,
    label: str = "pay",
    batch_size: int = 1024,
) -> np.ndarray:
    """`model.list_score` (M,) of showing `orders` (M, L) candidate indices for the requests."""
    scores = [
        model.list_score(**inputs, order=order, label=label).cpu().numpy()
        for inputs, order in _chunks(model, requests, orders, batch_size)
    ]
    return np.concatenate(scores)


@torch.no_grad()
def position_probs(
    model: ListEvaluator, requests: Requests, orders: np.ndarray, batch_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """(click_probs, pay_probs), each (M, L), of the items `orders` (M, L) shows."""
    clicks, pays = [], []
    for inputs, order in _chunks(model, requests, orders, batch_size):
        click, pay = model(**inputs, order=order)
        clicks.append(torch.sigmoid(click).cpu().numpy())
        pays.append(torch.sigmoid(pay).cpu().numpy())
    return np.concatenate(clicks), np.concatenate(pays)


def pair_accuracy(
    scores: np.ndarray, counts: np.ndarray, pairs: int = 20_000, seed: int = 0
) -> float:
    """The seed's list-level test ("overall judgment ability of sequence"): over random pairs
    of lists whose label counts differ, the share that `scores` orders like the counts. Draws
    `pairs` pairs with a seeded rng and drops those with equal counts, so the tested pairs are
    a fixed sample; a tie in score counts as wrong. NaN when no pair differs."""
    rng = np.random.default_rng(seed)
    first, second = rng.integers(0, len(scores), (2, pairs))
    label_sign = np.sign(counts[first] - counts[second])
    differ = label_sign != 0
    if not differ.any():
        return float("nan")
    score_sign = np.sign(scores[first] - scores[second])
    return float((score_sign[differ] == label_sign[differ]).mean())


def _auc(labels: np.ndarray, probs: np.ndarray) -> float:
    labels = labels.ravel()
    if labels.min() == labels.max():
        return float("nan")
    return float(roc_auc_score(labels, probs.ravel()))


def evaluate_evaluator(model: ListEvaluator, test: Requests) -> dict[str, float]:
    """Held-out metrics on the logged lists of `test`: per-item AUC over shown positions
    (seed: the scoring-model table) and the list-level pair accuracy of `list_score`."""
    click_probs, pay_probs = position_probs(model, test, test.shown)
    metrics = {"click_auc": _auc(test.clicks, click_probs), "pay_auc": _auc(test.pays, pay_probs)}
    for label, counts in (("click", test.clicks), ("pay", test.pays)):
        scores = score_lists(model, test, test.shown, label)
        metrics[f"{label}_pair_accuracy"] = pair_accuracy(scores, counts.sum(axis=1))
    return metrics


# --- persistence ----------------------------------------------------------------------------


def _path(directory: str | Path, kind: EvaluatorKind) -> Path:
    return Path(directory) / f"{EvaluatorKind(kind).value}.safetensors"


def save_evaluator(model: ListEvaluator, directory: str | Path) -> Path:
    """Write `<kind>.safetensors` (weights and constructor arguments, no pickle) under
    `directory`; returns its path."""
    path = _path(directory, model.kind)
    save_module(model, path)
    return path


def load_evaluator(
    directory: str | Path, kind: EvaluatorKind, device: str | torch.device = "cpu"
) -> ListEvaluator:
    """The `kind` evaluator `save_evaluator` wrote under `directory`, in eval mode on `device`."""
    path = _path(directory, kind)
    if not path.is_file():
        raise UserError(f"{path}: no saved {EvaluatorKind(kind).value} evaluator; train one first")
    model = load_module(path, device)
    if not isinstance(model, ListEvaluator) or model.kind != EvaluatorKind(kind):
        raise UserError(f"{path}: not a {EvaluatorKind(kind).value} evaluator")
    return model

"""SL1 and SL2: engine policies fitted to the logged engine actions (paper, "Comparison with
supervised learning", equations 4 and 5), the baselines RL in Virtual-Taobao is compared with.

The logged records S = {(s, a)} of one scenario split into S1 (records with purchase) and S0
(the rest; the paper's eq. 5 calls it S2):

    SL1: min_pi  1/|S1| sum_{S1} |pi(s) - a|^2                                            (4)
    SL2: min_pi  1/|S1| sum_{S1} |pi(s) - a|^2 - l1/|S0| sum_{S0} |pi(s) - a|^2
                 + l2/|S| sum_{S} |pi(s)|^2                                                (5)

|x|^2 is the squared Euclidean norm over the action's dimensions. SL2's second term is
unbounded below (pi(s) far from every logged a), which the paper's l2 penalty only tempers: the
policy ends in tanh, so pi(s) lies in the engine's action space Box(-1, 1, (action_dim,)) and
every term is bounded. Per state, eq. 5 weighs pi(s) by P(s | S1) - l1 P(s | S0): where a state
rarely sells (P(s | S1) < l1 P(s | S0)) it is concave in pi(s), and SL2 drives pi(s) to the box's
bounds. On the 200k-view benchmark its loss falls below 0 after ~10 epochs while the S1 error
|pi(s) - a|^2 rises from 0.25 to 0.46 (SL1: 0.24).

Data: Ray Data reads the `engine_transitions` table and encodes it once (read_parquet -> one
map_batches that keeps the scenario's training rows and encodes s with `encode_observation`,
the one encoding) into Ray's object store (`materialize`: the driver holds references only, Ray
spills to disk past the store's size). Each epoch streams those rows into torch with
`iter_torch_batches`, in a new block order and through a local shuffle buffer. Re-reading the
parquet every epoch would cost a Ray Data execution per epoch: 5 to 15 s on 2 busy cores even
for 900 rows. SL1 only ever holds S1: the map drops the other rows. The input standardisation is
fitted on the training rows and kept as buffers inside the network, so an exported policy needs
nothing else.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn
from tqdm.auto import tqdm

from pipeline import tracking
from pipeline.baselines.config import SupervisedConfig, SupervisedKind
from pipeline.errors import UserError
from pipeline.logs.observation import encode_observation
from pipeline.logs.schema import ENGINE_TRANSITIONS, LogSpec
from pipeline.ray_runtime import data_context, ensure_ray
from pipeline.simulator.data import open_training_data

COLUMNS = [
    "scenario",
    "customer_attrs",
    "query_category",
    "customer_dense",
    "page_index",
    "last_clicks",
    "engine_action",
    "purchase",
]


# ---- losses: eq. 4 and eq. 5 on a minibatch ------------------------------------------------


def _set_mean(values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over the minibatch rows in the set `rows` (bool); 0 for an empty set,
    so a minibatch without rows of a set contributes no term for it (and no gradient)."""
    rows = rows.to(values.dtype)
    return (values * rows).sum() / rows.sum().clamp_min(1.0)


def sl1_loss(pred: torch.Tensor, action: torch.Tensor, purchase: torch.Tensor) -> torch.Tensor:
    """Eq. 4: 1/|S1| sum_{(s,a) in S1} |pi(s) - a|^2, over the minibatch's purchase rows."""
    return _set_mean(((pred - action) ** 2).sum(dim=-1), purchase)


def sl2_loss(
    pred: torch.Tensor,
    action: torch.Tensor,
    purchase: torch.Tensor,
    lambda1: float,
    lambda2: float,
) -> torch.Tensor:
    """Eq. 5: 1/|S1| sum_{S1} |pi(s) - a|^2 - l1/|S0| sum_{S0} |pi(s) - a|^2
    + l2/|S| sum_{S} |pi(s)|^2, each mean over the minibatch's rows of its set
    (an unbiased estimate of the full-data mean; a set absent from the minibatch adds 0)."""
    error = ((pred - action) ** 2).sum(dim=-1)
    near_s1 = _set_mean(error, purchase)
    far_from_s0 = _set_mean(error, ~purchase)
    norm = (pred**2).sum(dim=-1).mean()
    return near_s1 - lambda1 * far_from_s0 + lambda2 * norm


def supervised_loss(
    config: SupervisedConfig, pred: torch.Tensor, action: torch.Tensor, purchase: torch.Tensor
) -> torch.Tensor:
    if config.kind is SupervisedKind.SL1:
        return sl1_loss(pred, action, purchase)
    return sl2_loss(pred, action, purchase, config.lambda1, config.lambda2)


# ---- the policy ----------------------------------------------------------------------------


class SupervisedPolicy(nn.Module):
    """pi(s) = tanh(MLP((s - mean) / std)): observation -> action in [-1, 1]^action_dim."""

    def __init__(
        self, obs_mean: np.ndarray, obs_std: np.ndarray, action_dim: int, hidden: tuple[int, ...]
    ):
        super().__init__()
        self.register_buffer("obs_mean", torch.as_tensor(obs_mean, dtype=torch.float32))
        self.register_buffer("obs_std", torch.as_tensor(obs_std, dtype=torch.float32))
        layers: list[nn.Module] = []
        fan_in = len(obs_mean)
        for width in hidden:
            layers += [nn.Linear(fan_in, width), nn.ReLU()]
            fan_in = width
        self.body = nn.Sequential(*layers, nn.Linear(fan_in, action_dim))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.body((obs - self.obs_mean) / self.obs_std))


# ---- data: Ray Data from the engine_transitions table --------------------------------------


def _fixed_lists(table: pa.Table, column: str, width: int) -> np.ndarray:
    return table.column(column).combine_chunks().flatten().to_numpy().reshape(-1, width)


def _dense(table: pa.Table, spec: LogSpec) -> np.ndarray:
    """(N, dense_dim) with NaN where the list or its entry is null (encoded as 0)."""
    column = table.column("customer_dense").combine_chunks()
    out = np.full((table.num_rows, spec.dense_dim), np.nan, dtype=np.float32)
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    values = column.drop_null().flatten().to_numpy(zero_copy_only=False)
    out[valid] = values.reshape(-1, spec.dense_dim)
    return out


def encode_batch(
    table: pa.Table, spec: LogSpec, scenario: str, purchases_only: bool
) -> dict[str, np.ndarray]:
    """Engine transitions -> obs (B, obs_dim) float32, action (B, action_dim), purchase (B,)
    bool (null: not a purchase), for the rows of `scenario` (and of S1 if `purchases_only`)."""
    keep = pc.equal(table.column("scenario"), scenario)
    if purchases_only:
        keep = pc.and_(keep, pc.fill_null(table.column("purchase"), False))
    table = table.filter(keep)
    obs = encode_observation(
        spec,
        _fixed_lists(table, "customer_attrs", spec.n_attrs),
        table.column("query_category").to_numpy(),
        _dense(table, spec),
        table.column("page_index").to_numpy(),
        table.column("last_clicks").to_numpy(),
    )
    return {
        "obs": obs,
        "action": _fixed_lists(table, "engine_action", spec.action_dim).astype(np.float32),
        "purchase": pc.fill_null(table.column("purchase"), False).to_numpy(),
    }


def _training_rows(root: Path, spec: LogSpec, config: SupervisedConfig):
    """The encoded training rows (S for SL2, S1 for SL1), materialised in the object store."""
    import ray.data

    sl1 = config.kind is SupervisedKind.SL1
    return (
        ray.data.read_parquet(str(root / ENGINE_TRANSITIONS), columns=COLUMNS)
        .map_batches(
            encode_batch,
            batch_format="pyarrow",
            fn_kwargs={"spec": spec, "scenario": config.scenario, "purchases_only": sl1},
        )
        .materialize()
    )


@dataclass(frozen=True)
class _Counts:
    obs_mean: np.ndarray
    obs_std: np.ndarray
    rows: int  # training rows: |S| for SL2, |S1| for SL1
    purchases: int  # |S1|


def _count(dataset) -> _Counts:
    """One pass: the rows, the purchases and the mean and std of every observation feature."""
    n, purchases, total, squares = 0, 0, 0.0, 0.0
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        obs = batch["obs"].astype(np.float64)
        n += len(obs)
        purchases += int(batch["purchase"].sum())
        total = total + obs.sum(axis=0)
        squares = squares + (obs**2).sum(axis=0)
    if n == 0:
        return _Counts(np.zeros(0), np.ones(0), 0, 0)
    mean = total / n
    std = np.sqrt(np.maximum(squares / n - mean**2, 0.0))
    # A constant feature (a category never seen) keeps unit scale.
    return _Counts(mean, np.where(std > 1e-3, std, 1.0), n, purchases)


# ---- training ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SupervisedResult:
    policy: SupervisedPolicy  # eval mode; obs (B, obs_dim) float32 -> action (B, action_dim)
    spec: LogSpec
    data_fingerprint: str
    epoch_losses: tuple[float, ...]  # mean minibatch loss of each epoch
    metrics: dict[str, float]


def _epoch(
    policy: SupervisedPolicy,
    optimizer: torch.optim.Optimizer,
    batches,
    config: SupervisedConfig,
    steps_left: int | float,
) -> tuple[float, float, int]:
    """One pass of Adam steps. Returns the mean minibatch loss, the mean |pi(s) - a|^2 over S1
    (eq. 4's value, comparable between SL1 and SL2) and the number of steps taken."""
    loss_sum, s1_error_sum, s1_rows, steps = 0.0, 0.0, 0, 0
    for batch in batches:
        if steps >= steps_left:
            break
        pred = policy(batch["obs"])
        loss = supervised_loss(config, pred, batch["action"], batch["purchase"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        n_s1 = int(batch["purchase"].sum())
        s1_error_sum += float(sl1_loss(pred.detach(), batch["action"], batch["purchase"])) * n_s1
        s1_rows += n_s1
        loss_sum += loss.item()
        steps += 1
    return loss_sum / max(steps, 1), s1_error_sum / max(s1_rows, 1), steps


def train_supervised(
    root: str | Path, config: SupervisedConfig | None = None, progress: bool = True
) -> SupervisedResult:
    """Fit SL1 or SL2 (`config.kind`) on the ingested trajectories under `root`."""
    import ray.data  # noqa: F401  (before ensure_ray: importing it resets its logging to INFO)

    config = config or SupervisedConfig()
    started = time.perf_counter()
    data = open_training_data(Path(root))
    spec = data.spec
    ensure_ray()
    torch.manual_seed(config.seed)
    with data_context(progress=False):
        rows = _training_rows(data.root, spec, config)
        counts = _count(rows)
        if counts.purchases == 0:
            raise UserError(
                f"{data.root}: no {config.scenario!r} page view with a purchase: SL1 and SL2 "
                "learn from the records with purchase (S1)"
            )
        policy = SupervisedPolicy(counts.obs_mean, counts.obs_std, spec.action_dim, config.hidden)
        optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr)
        steps_left = config.max_steps or math.inf
        steps_done = 0
        losses: list[float] = []
        epochs = tqdm(range(config.epochs), desc=config.kind.value, disable=not progress)
        for epoch in epochs:
            batches = rows.randomize_block_order(seed=config.seed + epoch).iter_torch_batches(
                batch_size=config.batch_size,
                device="cpu",
                local_shuffle_buffer_size=min(config.shuffle_buffer, counts.rows),
                local_shuffle_seed=config.seed + epoch,
            )
            loss, s1_error, steps = _epoch(policy, optimizer, batches, config, steps_left)
            steps_left -= steps
            steps_done += steps
            losses.append(loss)
            epochs.set_postfix(loss=f"{loss:.4f}", s1_error=f"{s1_error:.4f}")
            tracking.log_metrics({"sl.loss": loss, "sl.s1_error": s1_error}, step=epoch)
            if steps_left <= 0:
                break
    policy.eval()
    metrics = {
        "sl.loss": losses[-1],
        "sl.s1_error": s1_error,
        "sl.rows": float(counts.rows),
        "sl.purchases": float(counts.purchases),
        "sl.epochs": float(len(losses)),
        "sl.steps": float(steps_done),
        "sl.seconds": round(time.perf_counter() - started, 3),
    }
    return SupervisedResult(policy, spec, data.fingerprint, tuple(losses), metrics)

"""Deploying a ranking policy in the reference world: the paper's online test, run offline.

`deploy` draws FRESH customers (a population from its own seed stream, never the logged users)
for a day (drift) and time slice, runs their sessions batched (all live sessions of a batch step
together, one policy call per page index) and reports the paper's measures ("Empirical Study"):

- R2P: purchase pages / page views;      - CTR: clicks / items shown;
- TT: turnover, the sum of purchase amounts;   - TV: volume, the items sold (one per purchase).

A user can request several sessions (as in the logs), so confidence intervals are clustered by
user: delta method for the ratios, var(sum) = m * s^2 over the m users for the totals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from pipeline.stats import Estimate, ratio_estimate, total_estimate, z_value
from pipeline.world.market import DEPLOY_STREAM, SCENARIOS, World, stream
from pipeline.world.params import N_SLICES


@dataclass(frozen=True)
class DeploymentReport:
    r2p: Estimate
    ctr: Estimate
    tt: Estimate
    tv: Estimate
    customers: int  # sessions run (each from a customer request)
    page_views: int
    day: int
    time_slice: int | None  # None: slices drawn from the diurnal traffic profile
    scenario: str

    def as_dict(self) -> dict[str, float]:
        """Flat metrics: r2p, r2p_ci_low, r2p_ci_high, ..., customers, page_views, day and
        time_slice (absent when drawn from the profile)."""
        out: dict[str, float] = {}
        for name in ("r2p", "ctr", "tt", "tv"):
            est = asdict(getattr(self, name))
            out[name] = est["value"]
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = est["ci_low"], est["ci_high"]
        out.update(
            customers=float(self.customers), page_views=float(self.page_views), day=float(self.day)
        )
        if self.time_slice is not None:
            out["time_slice"] = float(self.time_slice)
        return out


def deploy(
    world: World,
    policy: Callable[[np.ndarray], np.ndarray],
    customers: int,
    day: int = 0,
    time_slice: int | None = None,
    scenario: str = "main_search",
    seed: int = 0,
    batch_size: int = 4096,
    confidence: float = 0.95,
) -> DeploymentReport:
    """Run `customers` fresh sessions of `scenario` under `policy` (obs (B, obs_dim) float32 ->
    actions (B, action_dim)) in `world` at `day` and `time_slice`; results depend on `seed` and
    `batch_size` (one random stream per batch). In-shop deployment starts sessions in a random
    shop of the query's category; main-search sessions are not followed by in-shop ones."""
    if customers < 1 or batch_size < 1:
        raise ValueError("customers and batch_size must be positive")
    if scenario not in SCENARIOS or scenario not in world.spec.scenarios:
        raise ValueError(f"unknown scenario {scenario!r}")
    if time_slice is not None and not 0 <= time_slice < N_SLICES:
        raise ValueError(f"time_slice must be in [0, {N_SLICES})")
    if not 0 < confidence < 1 or day < 0:
        raise ValueError("confidence must be in (0, 1) and day >= 0")
    code = SCENARIOS.index(scenario)
    key = (DEPLOY_STREAM, seed, day, N_SLICES if time_slice is None else time_slice, code)
    users = max(1, round(customers / world.params.sessions_per_user))
    pop = world.sample_population(stream(world.seed, *key, 0), users)
    # per-user sums: page views, purchases, clicks, turnover
    sums = np.zeros((4, users))
    for batch, lo in enumerate(range(0, customers, batch_size)):
        rng = stream(world.seed, *key, batch + 1)
        sessions = world.draw_sessions(
            pop, min(batch_size, customers - lo), rng, day, time_slice, code
        )
        views = world.run(pop, sessions, policy, rng, day)
        user = sessions.user[views.session]
        for i, w in enumerate((None, views.purchase, views.clicks, views.amount)):
            sums[i] += np.bincount(user, weights=w, minlength=users)
    pages, buys, clicks, amount = sums[:, sums[0] > 0]  # clusters: users who came
    z = z_value(confidence)
    return DeploymentReport(
        r2p=ratio_estimate(buys, pages, z),
        ctr=ratio_estimate(clicks, pages * world.spec.page_size, z),
        tt=total_estimate(amount, z),
        tv=total_estimate(buys, z),
        customers=customers,
        page_views=int(pages.sum()),
        day=day,
        time_slice=time_slice,
        scenario=scenario,
    )

"""Start or join Ray once per process: a cluster when RAY_ADDRESS is set, else a local one."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from pipeline.errors import UserError


def ensure_ray() -> None:
    import ray

    # Ray Data narrates every execution plan at INFO; its progress bars say what matters.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    if ray.is_initialized():
        return
    # Joining a cluster takes its resources; a local Ray gets this machine without a dashboard.
    address = os.environ.get("RAY_ADDRESS")
    kwargs = {} if address else {"include_dashboard": False}
    try:
        ray.init(address=address, log_to_driver=True, **kwargs)
    except ConnectionError as exc:  # a wrong address, or a token cluster without the token
        raise UserError(
            f"cannot join the Ray cluster at RAY_ADDRESS={address} ({exc}); a cluster with "
            "token authentication needs RAY_AUTH_MODE=token and its token (RAY_AUTH_TOKEN or "
            "RAY_AUTH_TOKEN_PATH)"
        ) from exc


def _import(modules: tuple[str, ...]) -> None:
    for module in modules:
        importlib.import_module(module)


def warm_workers(*modules: str) -> list:
    """Have every CPU's worker import `modules` now, in parallel, while the driver prepares the
    job: otherwise the first tasks of a stage pay for the imports one after another (~1.5 s on
    2 cores). Returns the refs: wait for them before the stage, whose scheduler would otherwise
    find no free CPU and warn that the job may hang."""
    import ray

    task = ray.remote(num_cpus=1)(_import)
    return [task.remote(modules) for _ in range(int(ray.cluster_resources().get("CPU", 1)))]


@contextmanager
def data_context(progress: bool) -> Iterator[None]:
    """Ray Data settings for our streaming passes, restored afterwards.

    Each pass is one map operator. Ray 2.60's resource reservation keeps half of the CPUs for
    operators that do not exist here: on 2 CPUs the map ran one task at a time (31 tasks of
    0.2 s: 6.9 s with the reservation, 3.6 s without, 3.2 s as plain Ray tasks).
    """
    import ray.data

    context = ray.data.DataContext.get_current()
    saved = context.enable_progress_bars, context.op_resource_reservation_enabled
    context.enable_progress_bars = progress
    context.op_resource_reservation_enabled = False
    try:
        yield
    finally:
        context.enable_progress_bars, context.op_resource_reservation_enabled = saved

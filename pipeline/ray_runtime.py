"""Start or join Ray once per process: a cluster when RAY_ADDRESS is set, else a local one."""

from __future__ import annotations

import logging
import os


def ensure_ray() -> None:
    import ray

    # Ray Data narrates every execution plan at INFO; its progress bars say what matters.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    if ray.is_initialized():
        return
    # Joining a cluster takes its resources; a local Ray gets this machine without a dashboard.
    address = os.environ.get("RAY_ADDRESS")
    kwargs = {} if address else {"include_dashboard": False}
    ray.init(address=address, log_to_driver=True, **kwargs)

"""Ray job entrypoints: `python -m pipeline.jobs.<stage> ARGS` runs `ecomrl <command> ARGS`.

One module per stage, each a few lines naming the CLI command it wraps (`COMMAND`), so a job
takes exactly that command's options, help text and one-line errors: there is no second
option parser. Submit one to a cluster from a checkout:

    ray job submit --address http://HEAD:8265 --working-dir . \\
        --runtime-env-json '{"env_vars": {"MLFLOW_TRACKING_URI": "http://mlflow:5000"}}' \\
        -- python -m pipeline.jobs.generate --out /shared/logs --no-progress

or with `python -m pipeline.jobs.submit STAGE --address ... -- ARGS`, which checks the
arguments here first. Inside a job the supervisor sets RAY_ADDRESS, so the stages that use
Ray (`pipeline.ray_runtime.ensure_ray`) join the cluster instead of starting their own.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Sequence

HELPERS = frozenset({"submit"})  # modules of this package that are not stages


def stages() -> dict[str, tuple[str, ...]]:
    """Every stage module's name -> the `ecomrl` command path it runs."""
    names = [m.name for m in pkgutil.iter_modules(__path__) if m.name not in HELPERS]
    return {name: command(name) for name in sorted(names)}


def command(stage: str) -> tuple[str, ...]:
    """The `ecomrl` command path that `pipeline.jobs.<stage>` runs; KeyError when none."""
    if stage in HELPERS or not stage.isidentifier() or stage.startswith("_"):
        raise KeyError(stage)
    try:
        module = importlib.import_module(f"{__name__}.{stage}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{stage}":
            raise
        raise KeyError(stage) from None
    return tuple(module.COMMAND)


def run_command(command: Sequence[str], args: Sequence[str] | None = None) -> None:
    """Run `ecomrl COMMAND ARGS` in this process, exactly as the console script does (bad
    input: one line on stderr, exit status 2). ARGS default to this process's arguments.
    Exits like the CLI, through SystemExit."""
    from pipeline.cli import main

    args = list(sys.argv[1:] if args is None else args)
    # `--debug` is the app's global option: it goes before the command path.
    debug = ["--debug"] if "--debug" in args else []
    rest = [arg for arg in args if arg != "--debug"]
    saved = sys.argv
    sys.argv = ["ecomrl", *debug, *command, *rest]
    try:
        main()
    finally:
        sys.argv = saved

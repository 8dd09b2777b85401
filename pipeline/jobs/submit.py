"""Submit a stage as a Ray job, after checking here what can be checked without the cluster.

    python -m pipeline.jobs.submit STAGE [--address URL] [--working-dir DIR] [--no-wait] -- ARGS

ARGS are the arguments of the stage's `ecomrl` command. Before anything is uploaded this checks
that the stage exists, that ARGS parse as that command's (options, required arguments, choices)
and that the file named by `--config` exists; a relative `--config` is read by the job from
its working directory, so it is looked up under `--working-dir`. Then it submits
`python -m pipeline.jobs.STAGE ARGS` with the Ray Jobs SDK, the working directory uploaded
(Ray leaves out what .gitignore names: .venv, mlruns.db, ...) and MLFLOW_TRACKING_URI passed
through when set, streams the job's logs and exits 0 only when the job SUCCEEDED.

The address defaults to RAY_API_SERVER_ADDRESS or RAY_ADDRESS (http://HEAD:8265, the
dashboard). A cluster with token authentication needs RAY_AUTH_MODE=token and the token in
~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN, as `ray job submit` does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import UserError
from pipeline.jobs import command, stages


def check(stage: str, args: Sequence[str], working_dir: Path) -> str:
    """The job's entrypoint for `stage` run with `args`; UserError when the stage does not
    exist, `args` do not parse as its command's or its `--config` file is missing."""
    import typer

    from pipeline.cli import app

    try:
        path = command(stage)
    except KeyError:
        raise UserError(f"unknown stage {stage!r}; stages: {', '.join(stages())}") from None
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    try:
        with cmd.make_context(f"ecomrl {' '.join(path)}", list(args)) as ctx:
            options = {p.name for p in cmd.params if p.param_type_name == "option"}
            # `--config` only: `ecomrl sweep CONFIG` also takes the name of a bundled sweep.
            config = ctx.params.get("config") if "config" in options else None
    except typer.Exit as exc:  # --help: shown here, nothing to submit
        raise SystemExit(exc.exit_code) from None
    except typer.TyperException as exc:  # typer's click: a usage error, a bad value
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        raise UserError(f"{stage}: {message}") from None
    if isinstance(config, Path):
        where = config if config.is_absolute() else working_dir / config
        if not where.is_file():
            raise UserError(
                f"--config {config}: no such file {where} (the job reads it from its "
                "working directory: put it under --working-dir and name it relatively)"
            )
    return shlex.join(["python", "-m", f"pipeline.jobs.{stage}", *args])


def runtime_env(working_dir: Path) -> dict:
    env: dict = {"working_dir": str(working_dir)}
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        env["env_vars"] = {"MLFLOW_TRACKING_URI": uri}
    else:
        print(
            "note: MLFLOW_TRACKING_URI is not set here; unless the cluster sets it, the job "
            "logs its runs to mlruns.db in its temporary working directory there",
            file=sys.stderr,
        )
    return env


def submit(address: str | None, entrypoint: str, env: dict, wait: bool) -> int:
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobStatus, JobSubmissionClient

    try:
        client = JobSubmissionClient(address)
        job_id = client.submit_job(entrypoint=entrypoint, runtime_env=env)
    except (ConnectionError, AuthenticationError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot submit to {address or 'RAY_ADDRESS'}: {first}") from exc
    print(f"submitted {job_id}: {entrypoint}", file=sys.stderr)
    if not wait:
        return 0

    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            print(lines, end="", flush=True)

    try:
        asyncio.run(tail())
    except KeyboardInterrupt:
        print(f"\nthe job goes on; stop it with: ray job stop {job_id}", file=sys.stderr)
        return 130
    info = client.get_job_info(job_id)
    print(
        f"job {job_id}: {info.status}{f' ({info.message})' if info.message else ''}",
        file=sys.stderr,
    )
    return 0 if info.status == JobStatus.SUCCEEDED else 1


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Our options before `--`, the stage's arguments after it."""
    argv = list(argv)
    ours, rest = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.jobs.submit",
        description="Check a stage's arguments here, then run it as a Ray job.",
        epilog=f"stages: {', '.join(stages())}",
    )
    parser.add_argument("stage", help="a module of pipeline.jobs, e.g. generate, train")
    parser.add_argument(
        "--address",
        default=os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS"),
        help="the cluster's dashboard, http://HEAD:8265 (default: RAY_API_SERVER_ADDRESS, "
        "RAY_ADDRESS)",
    )
    parser.add_argument(
        "--working-dir", type=Path, default=Path("."), help="uploaded as the job's cwd (.)"
    )
    parser.add_argument("--no-wait", action="store_true", help="return once submitted")
    return parser.parse_args(ours), rest


def main(argv: Sequence[str] | None = None) -> int:
    options, args = parse(sys.argv[1:] if argv is None else argv)
    try:
        working_dir = options.working_dir.resolve()
        if not working_dir.is_dir():
            raise UserError(f"--working-dir {options.working_dir}: no such directory")
        entrypoint = check(options.stage, args, working_dir)
        return submit(options.address, entrypoint, runtime_env(working_dir), not options.no_wait)
    except UserError as exc:
        print(f"ecomrl submit: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

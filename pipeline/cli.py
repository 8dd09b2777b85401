"""`ecomrl`: the command line. Thin: parse options (defaults come from pipeline/config.py),
call one stage function, print its summary. Bad input ends in one line on stderr and exit
status 2; `--debug` shows the traceback instead."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipeline import __version__
from pipeline.config import (
    GenerateConfig,
    IngestConfig,
    OnBadFile,
    default,
    help_of,
    load_config,
    load_run_config,
)
from pipeline.errors import UserError
from pipeline.logs.schema import RewardColumn
from pipeline.simulator.config import FidelityConfig, MailConfig, SimulatorConfig

app = typer.Typer(
    help="ecomrl: learn a Virtual-Taobao simulator from search session logs and train "
    "ranking policies in it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
logs_app = typer.Typer(help="Session logs: generate, ingest, inspect.", no_args_is_help=True)
app.add_typer(logs_app, name="logs")
simulator_app = typer.Typer(
    help="Virtual-Taobao: build a simulator from ingested logs, evaluate its fidelity.",
    no_args_is_help=True,
)
app.add_typer(simulator_app, name="simulator")
console = Console()


def _print_summary(title: str, summary: dict) -> None:
    table = Table(title=title, show_header=False)
    for key, value in summary.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    console.print(table)


def _version(value: bool) -> None:
    if value:
        console.print(f"ecomrl {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Global options; `--debug` is read by `main` before parsing."""


@logs_app.command("generate")
def logs_generate(
    out: Annotated[
        Path, typer.Option(help="Output directory (gets page_views/ and rerank_lists/).")
    ],
    sessions: Annotated[
        int, typer.Option(min=1, help=help_of(GenerateConfig, "sessions"))
    ] = default(GenerateConfig, "sessions"),
    days: Annotated[int, typer.Option(min=1, help=help_of(GenerateConfig, "days"))] = default(
        GenerateConfig, "days"
    ),
    seed: Annotated[int, typer.Option(min=0, help=help_of(GenerateConfig, "seed"))] = default(
        GenerateConfig, "seed"
    ),
    overwrite: Annotated[bool, typer.Option(help=help_of(GenerateConfig, "overwrite"))] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Write session logs from the reference world under its small-norm logging policy,
    Hive-partitioned by date. Same seed, same bytes."""
    from pipeline import stages

    config = GenerateConfig(sessions=sessions, days=days, seed=seed, overwrite=overwrite)
    summary = stages.generate(out, config, progress=progress)
    _print_summary(
        "generated logs",
        {
            "out": str(summary.out),
            "sessions": summary.sessions,
            "page_views": summary.page_views,
            "rerank_requests": summary.rerank_requests,
            "purchases": summary.purchases,
            "r2p": round(summary.r2p, 4),
        },
    )


@logs_app.command("ingest")
def logs_ingest(
    src: Annotated[
        Path,
        typer.Argument(help="Log dataset root (holding page_views/) or a page_views directory."),
    ],
    out: Annotated[Path, typer.Option(help="Output directory for the training tables.")],
    shards: Annotated[int, typer.Option(min=1, help=help_of(IngestConfig, "shards"))] = default(
        IngestConfig, "shards"
    ),
    reward: Annotated[RewardColumn, typer.Option(help=help_of(IngestConfig, "reward"))] = default(
        IngestConfig, "reward"
    ),
    on_bad_file: Annotated[
        OnBadFile, typer.Option(help=help_of(IngestConfig, "on_bad_file"))
    ] = default(IngestConfig, "on_bad_file"),
    rows_per_bucket: Annotated[
        int, typer.Option(help=help_of(IngestConfig, "rows_per_bucket"))
    ] = default(IngestConfig, "rows_per_bucket"),
    overwrite: Annotated[bool, typer.Option(help=help_of(IngestConfig, "overwrite"))] = False,
    progress: Annotated[bool, typer.Option(help="Show Ray Data's progress bars.")] = True,
) -> None:
    """Validate page views row by row (bad rows to a quarantine table with their reason),
    group them into sessions, shard by user id hash and write the engine transitions, customer
    transitions and customer features, on Ray Data."""
    from pipeline import stages

    config = IngestConfig(
        shards=shards,
        reward=reward,
        on_bad_file=on_bad_file,
        rows_per_bucket=rows_per_bucket,
        overwrite=overwrite,
    )
    summary = stages.ingest(src, out, config, progress)
    _print_summary("ingest", {k: v for k, v in vars(summary).items()})


@logs_app.command("inspect")
def logs_inspect(
    path: Annotated[
        Path, typer.Argument(help="A dataset root, a table directory or a parquet file.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Print schema, partitions, row counts and per-column statistics of ecomrl tables."""
    from pipeline.logs.inspect import inspect_logs

    reports = inspect_logs(path)
    if as_json:
        console.print_json(json.dumps([r.as_dict() for r in reports], default=str))
        return
    for report in reports:
        data = report.as_dict()
        _print_summary(
            f"{report.table} at {report.root}",
            {
                "files": data["files"],
                "rows": data["rows"],
                "schema version": data["schema_version"],
                "spec": data["spec"],
            },
        )
        parts = Table("partition", "files", "rows", title="partitions")
        for key, value in report.partitions.items():
            parts.add_row(key, str(value["files"]), str(value["rows"]))
        console.print(parts)
        columns = Table("column", "type", "nulls", "statistics", title="columns")
        for name, stats in report.columns.items():
            rest = {k: v for k, v in stats.items() if k not in ("type", "rows", "nulls")}
            columns.add_row(name, stats["type"], str(stats["nulls"]), json.dumps(rest, default=str))
        console.print(columns)


@simulator_app.command("build")
def simulator_build(
    logs: Annotated[
        Path, typer.Argument(help="Ingested trajectories (the --out of `ecomrl logs ingest`).")
    ],
    out: Annotated[Path, typer.Option(help="Output directory for the simulator checkpoint.")],
    config: Annotated[
        Path | None, typer.Option(help="YAML file overriding the simulator defaults.")
    ] = None,
    scenario: Annotated[str | None, typer.Option(help=help_of(SimulatorConfig, "scenario"))] = None,
    time_slice: Annotated[
        int | None, typer.Option(min=0, max=11, help=help_of(SimulatorConfig, "time_slice"))
    ] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Seed of every component.")] = None,
    mail_iterations: Annotated[
        int | None, typer.Option(min=0, help=help_of(MailConfig, "iterations"))
    ] = None,
    baselines: Annotated[
        bool | None,
        typer.Option("--baselines/--no-baselines", help=help_of(SimulatorConfig, "baselines")),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output directory.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Learn Virtual-Taobao from logs: GAN-SD customers (plus the GMM, GAN and WGAN
    baselines), behaviour cloning, then MAIL on RLlib. Writes a versioned checkpoint and logs
    it to MLflow as the run's `simulator` artifact."""
    from pipeline import stages

    overrides = {
        "scenario": scenario,
        "time_slice": time_slice,
        "seed": seed,
        "baselines": baselines,
        "mail": {"iterations": mail_iterations},
    }
    sim_config = load_config(SimulatorConfig, config, overrides)
    manifest, uri = stages.simulator_build(logs, out, sim_config, overwrite, progress)
    _print_summary(
        "simulator",
        {
            "out": str(out),
            "mlflow": uri,
            "data_fingerprint": manifest.data_fingerprint[:16],
            "customers": int(manifest.metrics["customers"]),
            "page_views": int(manifest.metrics["page_views"]),
            "components": ", ".join(manifest.files),
        },
    )


@simulator_app.command("evaluate")
def simulator_evaluate(
    simulator: Annotated[
        str, typer.Argument(help="Checkpoint directory or MLflow URI (runs:/<id>/simulator).")
    ],
    logs: Annotated[Path, typer.Option(help="Ingested trajectories to compare against.")],
    out: Annotated[Path, typer.Option(help="Output directory for report.md and the plots.")],
    config: Annotated[
        Path | None, typer.Option(help="YAML file overriding the fidelity defaults.")
    ] = None,
    customers: Annotated[
        int | None, typer.Option(min=100, help=help_of(FidelityConfig, "customers"))
    ] = None,
    sessions: Annotated[
        int | None, typer.Option(min=10, help=help_of(FidelityConfig, "sessions"))
    ] = None,
    slices: Annotated[
        bool | None, typer.Option("--slices/--no-slices", help=help_of(FidelityConfig, "slices"))
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output directory.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """The paper's fidelity experiments: KL of generated vs logged customers for GAN-SD, GMM,
    GAN and WGAN (Table 1); R2P by customer group with the logged policy replayed (Figure 4);
    R2P over the 12 slices of a day, one simulator per slice (Figure 5). Writes report.md and
    PNG plots, logged to MLflow."""
    from pipeline import stages

    overrides = {"customers": customers, "sessions": sessions, "slices": slices}
    fidelity = load_config(FidelityConfig, config, overrides)
    result, report = stages.simulator_evaluate(simulator, logs, out, fidelity, overwrite, progress)
    kl = Table("model", *next(iter(result["kl"].values())), title="KL(generated || logs)")
    for model, row in result["kl"].items():
        kl.add_row(model, *(f"{v:.3f}" for v in row.values()))
    console.print(kl)
    _print_summary(
        "R2P, logged policy replayed", {k: round(v, 4) for k, v in result["r2p"].items()}
    )
    console.print(f"report: {report}")


@app.command("run")
def run(
    config: Annotated[
        Path | None, typer.Option(help="YAML file overriding the embedded defaults.")
    ] = None,
    workdir: Annotated[Path | None, typer.Option(help="Where every stage writes.")] = None,
    sessions: Annotated[
        int | None, typer.Option(min=1, help="Sessions of logs to generate.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """The whole pipeline on the embedded defaults: generate logs -> ingest -> summary, tracked
    as one MLflow run with a child run per stage."""
    from pipeline import stages

    run_config = load_run_config(config, {"workdir": workdir, "generate": {"sessions": sessions}})
    _print_summary("ecomrl run", stages.run_pipeline(run_config, progress=progress))


def main() -> None:
    debug = "--debug" in sys.argv[1:]
    try:
        app(prog_name="ecomrl")
    except UserError as exc:
        if debug:
            raise
        print(f"ecomrl: error: {exc}", file=sys.stderr)
        sys.exit(2)

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
from pipeline.baselines.config import SupervisedConfig, SupervisedKind
from pipeline.config import (
    GenerateConfig,
    IngestConfig,
    OnBadFile,
    Profile,
    default,
    help_of,
    load_config,
    load_run_config,
)
from pipeline.errors import UserError
from pipeline.evaluation.config import EvaluationConfig
from pipeline.learners.anc import AncConfig
from pipeline.learners.config import TrainConfig
from pipeline.learners.registry import Algo
from pipeline.logs.schema import RewardColumn
from pipeline.rerank.config import (
    RERANK_PROFILES,
    EvaluatorConfig,
    GeneratorTrainConfig,
    RerankConfig,
)
from pipeline.simulator.config import Behaviour, FidelityConfig, MailConfig, SimulatorConfig
from pipeline.sweep.config import SweepConfig

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
    table.add_column()
    table.add_column(overflow="fold")  # paths and URIs whole, wrapped, never cut with "…"
    for key, value in summary.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    console.print(table)


def _stages():
    """pipeline.stages, imported once a command's options and config are checked: its imports
    (Ray, torch, RLlib) take seconds that a bad config file should not wait for."""
    from pipeline import stages

    return stages


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
    config = GenerateConfig(sessions=sessions, days=days, seed=seed, overwrite=overwrite)
    summary = _stages().generate(out, config, progress=progress)
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
    rerank_k: Annotated[int, typer.Option(min=1, help=help_of(IngestConfig, "rerank_k"))] = default(
        IngestConfig, "rerank_k"
    ),
    overwrite: Annotated[bool, typer.Option(help=help_of(IngestConfig, "overwrite"))] = False,
    progress: Annotated[bool, typer.Option(help="Show Ray Data's progress bars.")] = True,
) -> None:
    """Validate page views row by row (bad rows to a quarantine table with their reason),
    group them into sessions, shard by user id hash and write the engine transitions, customer
    transitions and customer features, on Ray Data. Re-ranking requests (rerank_lists), when
    the logs have them, are validated the same way and written to OUT/rerank_lists."""
    config = IngestConfig(
        shards=shards,
        reward=reward,
        on_bad_file=on_bad_file,
        rows_per_bucket=rows_per_bucket,
        rerank_k=rerank_k,
        overwrite=overwrite,
    )
    summary = _stages().ingest(src, out, config, progress)
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
    overrides = {
        "scenario": scenario,
        "time_slice": time_slice,
        "seed": seed,
        "baselines": baselines,
        "mail": {"iterations": mail_iterations},
    }
    sim_config = load_config(SimulatorConfig, config, overrides)
    manifest, uri = _stages().simulator_build(logs, out, sim_config, overwrite, progress)
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
    overrides = {"customers": customers, "sessions": sessions, "slices": slices}
    fidelity = load_config(FidelityConfig, config, overrides)
    result, report = _stages().simulator_evaluate(
        simulator, logs, out, fidelity, overwrite, progress
    )
    kl = Table("model", *next(iter(result["kl"].values())), title="KL(generated || logs)")
    for model, row in result["kl"].items():
        kl.add_row(model, *(f"{v:.3f}" for v in row.values()))
    console.print(kl)
    _print_summary(
        "R2P, logged policy replayed", {k: round(v, 4) for k, v in result["r2p"].items()}
    )
    console.print(f"report: {report}")


@app.command("train")
def train(
    simulator: Annotated[str, typer.Argument(help="Simulator checkpoint directory or MLflow URI.")],
    out: Annotated[Path, typer.Option(help="Output directory: checkpoint/ and policy/.")],
    algo: Annotated[Algo | None, typer.Option(help=help_of(TrainConfig, "algo"))] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML file overriding the training defaults.")
    ] = None,
    anc: Annotated[
        bool | None,
        typer.Option("--anc/--no-anc", help="Shape rewards by the action norm constraint (eq. 3)."),
    ] = None,
    anc_rho: Annotated[float | None, typer.Option(min=0, help=help_of(AncConfig, "rho"))] = None,
    anc_mu: Annotated[float | None, typer.Option(min=0, help=help_of(AncConfig, "mu"))] = None,
    behaviour: Annotated[
        Behaviour | None, typer.Option(help=help_of(TrainConfig, "behaviour"))
    ] = None,
    env_steps: Annotated[
        int | None, typer.Option(min=1, help=help_of(TrainConfig, "env_steps"))
    ] = None,
    num_env_runners: Annotated[
        int | None, typer.Option(min=0, help=help_of(TrainConfig, "num_env_runners"))
    ] = None,
    seed: Annotated[
        int | None, typer.Option(min=0, help="Seed of the learner and the env.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output directory.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train a ranking policy in Virtual-Taobao with PPO (RLlib's), TRPO or DDPG (ours, on
    RLlib's new stack), under ANC unless --no-anc. Saves the RLlib checkpoint and the policy
    exported to TorchScript (and ONNX), logged to MLflow as the run's `policy` artifact."""
    overrides: dict = {
        "algo": algo,
        "behaviour": behaviour,
        "env_steps": env_steps,
        "num_env_runners": num_env_runners,
        "seed": seed,
    }
    anc_given = {k: v for k, v in {"rho": anc_rho, "mu": anc_mu}.items() if v is not None}
    if anc or anc_given:  # a dict merges into the file's ANC settings, or the defaults
        overrides["anc"] = anc_given
    train_config = load_config(TrainConfig, config, overrides)
    if anc is False:
        train_config = train_config.model_copy(update={"anc": None})
    metrics, uri = _stages().train(simulator, out, train_config, overwrite, progress)
    _print_summary(
        f"train {train_config.algo}",
        {"out": str(out), "mlflow": uri, **{k: round(v, 4) for k, v in metrics.items()}},
    )


@app.command("baseline")
def baseline(
    kind: Annotated[SupervisedKind, typer.Argument(help="sl1 (eq. 4) or sl2 (eq. 5).")],
    logs: Annotated[Path, typer.Argument(help="Ingested trajectories.")],
    out: Annotated[Path, typer.Option(help="Output directory of the exported policy.")],
    config: Annotated[
        Path | None, typer.Option(help="YAML file overriding the supervised defaults.")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(min=1, help=help_of(SupervisedConfig, "epochs"))
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output directory.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Fit the paper's supervised baseline SL1 or SL2 on the logs (Ray Data feeding torch) and
    export it like a trained policy."""
    sl_config = load_config(SupervisedConfig, config, {"kind": kind, "epochs": epochs})
    metrics, uri = _stages().baseline(logs, out, sl_config, overwrite, progress)
    _print_summary(kind.value, {"out": str(out), "mlflow": uri, **metrics})


def _policies(values: list[str]) -> dict[str, str]:
    policies = {}
    for value in values:
        name, sep, location = value.partition("=")
        if not sep or not name or not location:
            raise UserError(f"--policy {value!r}: expected NAME=PATH (or NAME=runs:/<id>/policy)")
        policies[name] = location
    return policies


@app.command("evaluate")
def evaluate(
    simulator: Annotated[str, typer.Argument(help="Simulator checkpoint directory or MLflow URI.")],
    policy: Annotated[
        list[str],
        typer.Option(
            help="NAME=PATH of an exported policy (directory or runs:/<id>/policy); repeat. "
            "Names trpo, trpo_anc, trpo_anc_bc, sl1, sl2 fill the paper's experiments."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Output directory for report.md and the plots.")],
    config: Annotated[
        Path | None, typer.Option(help="YAML file overriding the evaluation defaults.")
    ] = None,
    world_seed: Annotated[
        int | None, typer.Option(min=0, help=help_of(EvaluationConfig, "world_seed"))
    ] = None,
    customers: Annotated[
        int | None, typer.Option(min=100, help=help_of(EvaluationConfig, "customers"))
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output directory.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Deploy policies in the reference world (R2P, TT, TV with CIs, on each evaluation day)
    and in the simulator on the same customers, beside the random logging policy; write the
    paper's experiments (ANC, RL vs SL1/SL2, generalisation) as report.md and plots."""
    overrides = {"world_seed": world_seed, "customers": customers}
    eval_config = load_config(EvaluationConfig, config, overrides)
    result, report = _stages().evaluate(
        simulator, _policies(policy), out, eval_config, overwrite, progress
    )
    table = Table("policy", "R2P world day 0", "R2P simulator (MAIL)", title="evaluation")
    for name, score in result["policies"].items():
        sim = score["simulator"]["mail"]["r2p"]
        table.add_row(name, f"{score['world']['0']['r2p']:.4f}", f"{sim:.4f}")
    console.print(table)
    console.print(f"report: {report}")


rerank_app = typer.Typer(
    help="Re-ranking: evaluators on logged lists, generators trained on ReRank-v0, BP and "
    "the world's truth.",
    no_args_is_help=True,
)
app.add_typer(rerank_app, name="rerank")


@rerank_app.command("train")
def rerank_train(
    ingested: Annotated[
        Path, typer.Argument(help="Output of `ecomrl logs ingest` (holds rerank_lists/).")
    ],
    out: Annotated[Path, typer.Option(help="Output directory: evaluators/, runs/<name>/.")],
    config: Annotated[
        Path | None, typer.Option(help="YAML file overriding the study's defaults and runs.")
    ] = None,
    profile: Annotated[
        Profile,
        typer.Option(help="default: the full study; quick: every run on a tiny budget."),
    ] = Profile.DEFAULT,
    runs: Annotated[
        str | None,
        typer.Option(help="Comma-separated run names to train (default: every run of the study)."),
    ] = None,
    env_steps: Annotated[
        int | None, typer.Option(min=1, help=help_of(GeneratorTrainConfig, "env_steps"))
    ] = None,
    evaluator_epochs: Annotated[
        int | None, typer.Option(min=1, help=help_of(EvaluatorConfig, "epochs"))
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output directory.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train the four evaluators (Simple DNN, AE rerank, context CNN+RNN, causal RNN) on the
    logged lists, then one generator per run of the study on ReRank-v0, paid by the causal
    evaluator: the seed's five learners (REINFORCE, two logged baselines, PPO, PPO-MC), GAIL,
    PPO-MC on 17-candidate data and with the GMV and PAY_GMV rewards. Then run
    `ecomrl rerank evaluate OUT`."""
    overrides = {
        "defaults": {"env_steps": env_steps},
        "evaluator": {"epochs": evaluator_epochs},
    }
    study = load_config(RerankConfig, config, overrides, base=RERANK_PROFILES[profile])
    if runs is not None:
        names = [name.strip() for name in runs.split(",") if name.strip()]
        unknown = sorted(set(names) - set(study.runs))
        if unknown:
            raise UserError(f"--runs: unknown run(s) {unknown}; the study has {sorted(study.runs)}")
        study = study.model_copy(update={"runs": {n: study.runs[n] for n in names}})
    result = _stages().rerank_train(ingested, out, study, overwrite, progress)
    _print_summary(
        "rerank train",
        {
            name: {k: round(v, 4) for k, v in final.items()}
            for name, final in result["runs"].items()
        },
    )


@rerank_app.command("evaluate")
def rerank_evaluate(
    out: Annotated[Path, typer.Argument(help="The --out of `ecomrl rerank train`.")],
    world_seed: Annotated[
        int, typer.Option(min=0, help="Seed of the world that wrote the logs (its truth).")
    ] = default(EvaluationConfig, "world_seed"),
) -> None:
    """Every trained generator on the held-out requests at n = 17, 30, 50, 100: BP by the
    evaluator, and the TRUE expected purchases and GMV of generated vs logged lists from the
    world. Writes out/report/report.md, evaluation.json and the curves, logged to MLflow."""
    result, report = _stages().rerank_evaluate(out, world_seed)
    rows = {}
    for name, run in result["runs"].items():
        for size, values in run["by_size"].items():
            rows[f"{name} n={size}"] = (
                f"BP {values['bp']:.3f}, true purchases {values['true_pay']['gain']:+.1%}"
            )
    _print_summary("rerank evaluate", rows)
    console.print(f"report: {report}")


@app.command("sweep")
def sweep(
    config: Annotated[
        Path,
        typer.Argument(
            help="Sweep YAML file, or the name of a bundled one (anc, rewards, rerank_rewards, "
            "learners, lr_optuna: tune_configs/NAME.yaml)."
        ),
    ],
    resume: Annotated[
        bool, typer.Option(help="Continue the interrupted sweep of this config.")
    ] = False,
    storage: Annotated[
        Path, typer.Option(help="Where Tune keeps sweeps: STORAGE/NAME holds trials, checkpoints.")
    ] = Path("ecomrl-out/sweeps"),
    simulator: Annotated[str | None, typer.Option(help=help_of(SweepConfig, "simulator"))] = None,
    study: Annotated[Path | None, typer.Option(help=help_of(SweepConfig, "study"))] = None,
    name: Annotated[str | None, typer.Option(help=help_of(SweepConfig, "name"))] = None,
    budget: Annotated[int | None, typer.Option(min=1, help=help_of(SweepConfig, "budget"))] = None,
    num_samples: Annotated[
        int | None, typer.Option(min=1, help=help_of(SweepConfig, "num_samples"))
    ] = None,
    max_concurrent_trials: Annotated[
        int | None, typer.Option(min=1, help=help_of(SweepConfig, "max_concurrent_trials"))
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show Tune's trial table.")] = True,
) -> None:
    """Sweep settings with Ray Tune (ASHA scheduler; grid, random or Optuna search): ANC's
    rho and mu, reward definitions and weights, learners. Each trial is an MLflow run nested
    under the sweep's run; the best trial's model is registered in the MLflow Model Registry,
    tagged with the simulator it was trained in. Ctrl-C stops it; --resume continues it."""
    from pipeline.sweep.config import load_sweep

    overrides = {
        "simulator": simulator,
        "study": None if study is None else str(study),
        "name": name,
        "budget": budget,
        "num_samples": num_samples,
        "max_concurrent_trials": max_concurrent_trials,
    }
    sweep_config = load_sweep(config, overrides)
    result = _stages().sweep(sweep_config, storage, resume, progress)
    registered = result.registered or {}
    _print_summary(
        f"sweep {sweep_config.name}",
        {
            "trials": result.trials,
            "directory": str(result.directory),
            "mlflow parent run": result.parent_run_id,
            "best trial": result.best,
            "registered model": f"models:/{registered['name']}/{registered['version']}"
            if registered
            else "not registered",
        },
    )


@app.command("run")
def run(
    config: Annotated[
        Path | None, typer.Option(help="YAML file overriding the embedded defaults.")
    ] = None,
    profile: Annotated[
        Profile, typer.Option(help="quick: every stage on a small budget (a smoke test).")
    ] = Profile.DEFAULT,
    workdir: Annotated[Path | None, typer.Option(help="Where every stage writes.")] = None,
    sessions: Annotated[
        int | None, typer.Option(min=1, help="Sessions of logs to generate.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """The whole pipeline on the embedded defaults: generate logs -> ingest -> build the
    simulator -> train TRPO-ANC (and TRPO, and TRPO-ANC in the BC simulator) and the SL1/SL2
    baselines -> evaluate in the world -> report. One MLflow run with a child run per stage."""
    overrides = {"workdir": workdir, "generate": {"sessions": sessions}}
    run_config = load_run_config(config, overrides, profile)
    _print_summary("ecomrl run", _stages().run_pipeline(run_config, progress=progress))


def main() -> None:
    debug = "--debug" in sys.argv[1:]
    try:
        app(prog_name="ecomrl")
    except UserError as exc:
        if debug:
            raise
        print(f"ecomrl: error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

"""One function per pipeline stage, each tracked as an MLflow run. The CLI and the Ray job
entrypoints call these; they hold the glue between a stage's library code and tracking."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from pipeline import tracking
from pipeline.config import GenerateConfig, IngestConfig, RunConfig
from pipeline.logs.ingest import SUMMARY_FILE, IngestSummary, ingest_logs
from pipeline.logs.schema import LogSpec
from pipeline.paths import prepare_out
from pipeline.simulator.checkpoint import Manifest
from pipeline.simulator.config import FidelityConfig, SimulatorConfig

SIMULATOR_ARTIFACT = "simulator"


def generate(out: Path, config: GenerateConfig, spec: LogSpec | None = None, progress: bool = True):
    """Write page_views and rerank_lists from the reference world under its logging policy."""
    from pipeline.world.generate import generate_logs

    spec = spec or LogSpec()
    prepare_out(out, config.overwrite)
    with tracking.run("generate", {"generate": config.model_dump(mode="json"), "out": str(out)}):
        summary = generate_logs(
            out,
            sessions=config.sessions,
            days=config.days,
            seed=config.seed,
            spec=spec,
            start_date=config.start_date,
            progress=progress,
        )
        tracking.log_metrics(
            {
                "sessions": summary.sessions,
                "page_views": summary.page_views,
                "rerank_requests": summary.rerank_requests,
                "purchases": summary.purchases,
                "r2p": summary.r2p,
            }
        )
        tracking.log_json(spec.model_dump(), "spec.json")
        tracking.log_json(asdict(summary), "generate_summary.json")
    return summary


def ingest(src: Path, out: Path, config: IngestConfig, progress: bool = True) -> IngestSummary:
    """Validate, quarantine and shard page views into the training tables."""
    params = {"ingest": config.model_dump(mode="json"), "source": str(src), "out": str(out)}
    with tracking.run("ingest", params):
        summary = ingest_logs(src, out, config, progress)
        tracking.log_metrics(summary.metrics())
        tracking.log_artifact(Path(out) / SUMMARY_FILE)
    return summary


def run_pipeline(config: RunConfig, progress: bool = True) -> dict:
    """`ecomrl run`: generate logs -> ingest -> summary; one parent run, a child run per stage."""
    workdir = config.workdir
    logs, trajectories = workdir / "logs", workdir / "trajectories"
    with tracking.run(
        "pipeline", {"run": config.model_dump(mode="json", exclude={"spec"})}
    ) as parent:
        tracking.log_json(config.model_dump(mode="json"), "run_config.json")
        generate_config = config.generate.model_copy(update={"overwrite": True})
        generated = generate(logs, generate_config, config.spec, progress)
        ingest_config = config.ingest.model_copy(update={"overwrite": True})
        ingested = ingest(logs, trajectories, ingest_config, progress)
        summary = {
            "mlflow_run_id": parent.info.run_id,
            "logs": str(logs),
            "trajectories": str(trajectories),
            "sessions_generated": generated.sessions,
            "page_views_generated": generated.page_views,
            "logged_r2p": round(generated.r2p, 4),
            "rows_read": ingested.rows_read,
            "rows_accepted": ingested.rows_accepted,
            "rows_quarantined": ingested.rows_quarantined,
            "sessions_ingested": ingested.sessions,
        }
        tracking.log_metrics({k: v for k, v in summary.items() if isinstance(v, int | float)})
        tracking.log_json(summary, "pipeline_summary.json")
    return summary


def simulator_build(
    trajectories: Path,
    out: Path,
    config: SimulatorConfig,
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[Manifest, str]:
    """Build a Virtual-Taobao checkpoint in `out`, logged as the run's `simulator` artifact.
    Returns the manifest and the MLflow URI of the checkpoint (`runs:/<id>/simulator`)."""
    from pipeline.simulator.build import build_simulator

    prepare_out(out, overwrite)
    params = {"simulator": config.model_dump(mode="json"), "source": str(trajectories)}
    with tracking.run("simulator-build", {**params, "out": str(out)}) as active:
        manifest = build_simulator(trajectories, out, config, progress)
        tracking.log_metrics(manifest.metrics)
        tracking.log_artifacts(out, SIMULATOR_ARTIFACT)
    return manifest, f"runs:/{active.info.run_id}/{SIMULATOR_ARTIFACT}"


def simulator_evaluate(
    simulator: str | Path,
    trajectories: Path,
    out: Path,
    config: FidelityConfig,
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[dict, Path]:
    """The fidelity report of a simulator against logs, logged to MLflow as `report/`."""
    from pipeline.simulator.fidelity import evaluate
    from pipeline.simulator.fidelity_report import write_report

    prepare_out(out, overwrite)
    params = {"fidelity": config.model_dump(mode="json"), "simulator": str(simulator)}
    with tracking.run("simulator-evaluate", {**params, "logs": str(trajectories)}):
        result = evaluate(simulator, trajectories, out, config, progress)
        header = {"simulator": str(simulator), "logs": str(trajectories)}
        report = write_report(result, out, header)
        tracking.log_metrics(fidelity_metrics(result))
        for name in ("report.md", "fidelity.json", *(p.name for p in out.glob("*.png"))):
            tracking.log_artifact(out / name, "report")
    return result, report


def fidelity_metrics(result: dict) -> dict[str, float]:
    """The headline numbers of a fidelity result as flat MLflow metrics."""
    metrics = {f"kl.{m}.{a}": v for m, row in result["kl"].items() for a, v in row.items()}
    metrics.update({f"r2p.{name}": v for name, v in result["r2p"].items()})
    return metrics

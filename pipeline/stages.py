"""One function per pipeline stage, each tracked as an MLflow run. The CLI and the Ray job
entrypoints call these; they hold the glue between a stage's library code and tracking."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel

from pipeline import tracking
from pipeline.baselines.config import SupervisedConfig
from pipeline.config import GenerateConfig, IngestConfig, RunConfig
from pipeline.evaluation.config import EvaluationConfig
from pipeline.learners.config import TrainConfig
from pipeline.logs.ingest import SUMMARY_FILE, IngestSummary, ingest_logs
from pipeline.logs.schema import LogSpec
from pipeline.paths import prepare_out
from pipeline.simulator.checkpoint import Manifest
from pipeline.simulator.config import FidelityConfig, SimulatorConfig

if TYPE_CHECKING:
    from pipeline.rerank.config import RerankConfig
    from pipeline.sweep.config import SweepConfig

M = TypeVar("M", bound=BaseModel)
SIMULATOR_ARTIFACT = "simulator"
POLICY_ARTIFACT = "policy"
REPORT_ARTIFACT = "report"


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


def train(
    simulator: str, out: Path, config: TrainConfig, overwrite: bool = False, progress: bool = True
) -> tuple[dict[str, float], str]:
    """Train a ranking policy in `simulator`; the exported policy is the run's `policy`
    artifact. Returns the training metrics and the policy's MLflow URI."""
    from pipeline.learners.train import train_policy
    from pipeline.ray_runtime import ensure_ray

    prepare_out(out, overwrite)
    ensure_ray()
    params = {"train": config.model_dump(mode="json"), "simulator": str(simulator)}
    with tracking.run(_train_run_name(config), {**params, "out": str(out)}) as active:
        result = train_policy(simulator, out, config, progress)
        tracking.log_metrics(result.metrics)
        tracking.log_artifacts(result.policy, POLICY_ARTIFACT)
        tracking.log_artifacts(result.checkpoint, "checkpoint")
    return result.metrics, f"runs:/{active.info.run_id}/{POLICY_ARTIFACT}"


def _train_run_name(config: TrainConfig) -> str:
    """train-trpo, train-trpo-anc, train-trpo-anc-bc, ...: what was trained, and where."""
    anc = "" if config.anc is None else "-anc"
    return f"train-{config.algo}{anc}-{config.behaviour}".removesuffix("-mail")


def baseline(
    trajectories: Path,
    out: Path,
    config: SupervisedConfig,
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[dict[str, float], str]:
    """Fit SL1 or SL2 on the logs and export it like a trained policy (`policy` artifact)."""
    from pipeline.baselines.supervised import train_supervised
    from pipeline.export import export_policy
    from pipeline.logs.observation import observation_dim

    prepare_out(out, overwrite)
    params = {"supervised": config.model_dump(mode="json"), "source": str(trajectories)}
    with tracking.run(f"baseline-{config.kind}", {**params, "out": str(out)}) as active:
        result = train_supervised(trajectories, config, progress)
        metadata = {"algo": config.kind.value, "data_fingerprint": result.data_fingerprint}
        spec = result.spec
        export_policy(result.policy, out, observation_dim(spec), spec.action_dim, metadata)
        tracking.log_metrics(result.metrics)
        tracking.log_artifacts(out, POLICY_ARTIFACT)
    return result.metrics, f"runs:/{active.info.run_id}/{POLICY_ARTIFACT}"


def evaluate(
    simulator: str,
    policies: dict[str, str],
    out: Path,
    config: EvaluationConfig,
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[dict, Path]:
    """Score `policies` (name -> exported policy directory or MLflow URI) and the random
    policy in the world and the simulator; the report is the run's `report/` artifact."""
    from tqdm.auto import tqdm

    from pipeline.evaluation.report import write_report
    from pipeline.evaluation.scoring import RANDOM, Evaluation
    from pipeline.export.loader import load_policy
    from pipeline.simulator.checkpoint import resolve
    from pipeline.stats import z_value

    prepare_out(out, overwrite)
    params = {"evaluation": config.model_dump(mode="json"), "simulator": str(simulator)}
    with tracking.run("evaluate", {**params, "policies": policies}):
        evaluation = Evaluation(simulator, config)
        loaded = {RANDOM: evaluation.random_policy()}
        loaded.update({name: load_policy(resolve(loc)) for name, loc in policies.items()})
        scores = {
            name: evaluation.score(name, policy)
            for name, policy in tqdm(loaded.items(), desc="evaluate", disable=not progress)
        }
        header = {"simulator": simulator, **policies, "world seed": config.world_seed}
        report, result = write_report(scores, out, header, z_value(config.confidence))
        tracking.log_metrics(evaluation_metrics(result["policies"]))
        tracking.log_artifacts(out, REPORT_ARTIFACT)
    return result, report


def evaluation_metrics(result: dict) -> dict[str, float]:
    """Headline numbers of an evaluation as flat MLflow metrics."""
    metrics = {}
    for name, score in result.items():
        for day, world in score["world"].items():
            metrics.update({f"{name}.world.day{day}.{k}": world[k] for k in ("r2p", "tt", "tv")})
        for behaviour, sim in score["simulator"].items():
            metrics[f"{name}.sim.{behaviour}.r2p"] = sim["r2p"]
    return metrics


def run_pipeline(config: RunConfig, progress: bool = True) -> dict:
    """`ecomrl run`: generate logs -> ingest -> build the simulator -> train TRPO, TRPO-ANC (in
    the MAIL and in the BC simulator) and SL1, SL2 -> evaluate in the world -> report. One
    parent MLflow run, a child run per stage."""
    work = config.workdir
    logs, trajectories = work / "logs", work / "trajectories"
    with tracking.run(
        "pipeline", {"run": config.model_dump(mode="json", exclude={"spec"})}
    ) as parent:
        tracking.log_json(config.model_dump(mode="json"), "run_config.json")
        generated = generate(logs, _updated(config.generate, OVERWRITE), config.spec, progress)
        ingested = ingest(logs, trajectories, _updated(config.ingest, OVERWRITE), progress)
        _, simulator = simulator_build(
            trajectories, work / "simulator", config.simulator, True, progress
        )
        policies, _, report = train_and_evaluate(config, simulator, trajectories, work, progress)
        tracking.log_artifact(report)
        summary = {
            "mlflow_run_id": parent.info.run_id,
            "workdir": str(work),
            "sessions_generated": generated.sessions,
            "logged_r2p": round(generated.r2p, 4),
            "rows_quarantined": ingested.rows_quarantined,
            "simulator": simulator,
            **policies,
            "report": str(report),
        }
        tracking.log_json(summary, "pipeline_summary.json")
    return summary


def train_and_evaluate(
    config: RunConfig, simulator: str, trajectories: Path, work: Path, progress: bool = True
) -> tuple[dict[str, str], dict, Path]:
    """The run's learning half: the three TRPO policies and SL1, SL2, then the evaluation in
    the world of the logs. Returns the policies' URIs, the evaluation result and report.md."""
    policies = {}
    for name, update in _TRAININGS.items():
        train_config = _updated(config.train, update)
        _, policies[name] = train(simulator, work / name, train_config, True, progress)
    for kind in ("sl1", "sl2"):
        sl_config = _updated(config.supervised, {"kind": kind})
        _, policies[kind] = baseline(trajectories, work / kind, sl_config, True, progress)
    evaluation = _updated(config.evaluation, {"world_seed": config.generate.seed})
    result, report = evaluate(simulator, policies, work / "report", evaluation, True, progress)
    return policies, result, report


# The run's policies (evaluation/report.py finds them by these names): TRPO without and with
# ANC in the MAIL simulator, and with ANC in the BC simulator (Table 2's baseline).
_TRAININGS = {
    "trpo": {"algo": "trpo", "anc": None},
    "trpo_anc": {"algo": "trpo", "behaviour": "mail"},
    "trpo_anc_bc": {"algo": "trpo", "behaviour": "bc"},
}


OVERWRITE = {"overwrite": True}


def _updated(config: M, update: dict) -> M:
    """`config` with `update`, validated (model_copy would keep strings for enums)."""
    return type(config).model_validate({**config.model_dump(), **update})


def rerank_train(
    ingested: Path, out: Path, config: RerankConfig, overwrite: bool = False, progress: bool = True
) -> dict:
    """The re-ranking study: the evaluators on the logged lists, then every run's generator on
    `ReRank-v0`; one MLflow run with a child run per model. Returns the final metrics."""
    from pipeline.ray_runtime import ensure_ray
    from pipeline.rerank import train as rerank

    split = rerank.split_requests(ingested, config)  # bad data fails before anything is built
    prepare_out(out, overwrite)
    ensure_ray()
    params = {"rerank": config.model_dump(mode="json"), "ingested": str(ingested), "out": str(out)}
    with tracking.run("rerank-train", params):
        with tracking.run("rerank-evaluators"):
            evaluators = rerank.train_evaluators(split, out, config, progress)
            tracking.log_artifacts(out / rerank.EVALUATORS_DIR, "evaluators")
        rerank.write_study(out, ingested, config)
        tracking.log_artifact(out / rerank.STUDY_FILE)
        finals = {}
        for name in config.runs:
            with tracking.run(f"rerank-{name}", {"run": config.run(name).model_dump(mode="json")}):
                finals[name] = rerank.train_generator(ingested, out, name, config, split, progress)
                tracking.log_metrics({f"final.{k}": v for k, v in finals[name].items()})
                tracking.log_artifacts(out / rerank.RUNS_DIR / name, "generator")
    return {"evaluators": evaluators, "runs": finals}


def rerank_evaluate(out: Path, world_seed: int) -> tuple[dict, Path]:
    """Every generator of the study under `out` against the logged order, by the evaluator and
    by the world's truth; report.md and plots under out/report, logged to MLflow."""
    from pipeline.evaluation.rerank import evaluate_study
    from pipeline.evaluation.rerank_report import write_report

    with tracking.run("rerank-evaluate", {"out": str(out), "world_seed": world_seed}):
        result = evaluate_study(out, world_seed)
        report = write_report(result, out / "report")
        for name, run in result["runs"].items():
            for size, values in run["by_size"].items():
                tracking.log_metrics(
                    {
                        f"{name}.n{size}.bp": values["bp"],
                        f"{name}.n{size}.true_pay_gain": values["true_pay"]["gain"],
                    }
                )
        tracking.log_artifacts(out / "report", "report")
    return result, report


def sweep(config: SweepConfig, storage: Path, resume: bool = False, progress: bool = True):
    """A Ray Tune sweep tracked in MLflow: a parent run, a child per trial, the best trial's
    model registered (pipeline/sweep/tuner.py)."""
    from pipeline.sweep.tuner import run_sweep

    return run_sweep(config, storage, resume, progress)

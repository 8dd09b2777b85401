"""Ray job entrypoints (pipeline/jobs): each stage module runs its `ecomrl` command, the submit
helper checks arguments before contacting a cluster, and (slow) stage jobs run on a real Ray
head started here with token authentication, their MLflow runs landing where the job's
runtime env says."""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline import jobs
from pipeline.errors import UserError
from pipeline.jobs import submit

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent  # the venv's bin: python, ray, ecomrl
EXPECTED = {
    "generate": ("logs", "generate"),
    "ingest": ("logs", "ingest"),
    "simulator_build": ("simulator", "build"),
    "simulator_evaluate": ("simulator", "evaluate"),
    "train": ("train",),
    "baseline": ("baseline",),
    "evaluate": ("evaluate",),
    "rerank_train": ("rerank", "train"),
    "rerank_evaluate": ("rerank", "evaluate"),
    "sweep": ("sweep",),
    "pipeline": ("run",),
}


def cli_has(path: tuple[str, ...]) -> bool:
    import typer

    from pipeline.cli import app

    cmd = typer.main.get_command(app)
    for name in path:
        if name not in getattr(cmd, "commands", {}):
            return False
        cmd = cmd.commands[name]
    return True


def run_job_module(capsys, command, *args) -> tuple[int, str, str]:
    """`python -m pipeline.jobs.<stage> ARGS`, in this process."""
    with pytest.raises(SystemExit) as exit_info:
        jobs.run_command(command, [str(a) for a in args])
    out = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 1), out.out, out.err


def test_one_module_per_stage_each_naming_its_cli_command():
    assert jobs.stages() == EXPECTED
    for stage, command in EXPECTED.items():
        doc = (REPO / "pipeline" / "jobs" / f"{stage}.py").read_text()
        assert "ray job submit" in doc and f"python -m pipeline.jobs.{stage}" in doc
        assert cli_has(command), f"pipeline.jobs.{stage}: no `ecomrl {' '.join(command)}`"


def test_a_job_module_runs_as_a_script():
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.jobs.generate", "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0 and "Usage: ecomrl logs generate [OPTIONS]" in done.stdout


@pytest.mark.parametrize("stage", sorted(EXPECTED))
def test_job_help_is_the_commands_help(capsys, cli, stage):
    command = EXPECTED[stage]
    code, out, _ = run_job_module(capsys, command, "--help")
    assert code == 0 and f"Usage: ecomrl {' '.join(command)} [OPTIONS]" in out
    assert (code, out) == cli(*command, "--help")[:2]  # the same text, not a second parser


def test_job_errors_are_the_clis_one_line(capsys, tmp_path):
    # `logs inspect` fails on a missing path without importing the stages (torch, Ray Data).
    missing = tmp_path / "nope"
    code, out, err = run_job_module(capsys, ("logs", "inspect"), missing)
    assert code == 2 and "Traceback" not in out + err
    assert err.splitlines() == [f"ecomrl: error: {missing}: no such file or directory"]
    # --debug is the app's option (before the command): a job takes it anywhere.
    with pytest.raises(UserError):
        jobs.run_command(("logs", "inspect"), [str(missing), "--debug"])


@pytest.fixture
def no_cluster(monkeypatch):
    """The submit helper's local checks must fail before any cluster is contacted."""
    import ray.job_submission

    def refuse(*args, **kwargs):
        raise AssertionError("contacted a cluster")

    monkeypatch.setattr(ray.job_submission, "JobSubmissionClient", refuse)


def submit_main(capsys, *argv) -> tuple[int, str]:
    code = submit.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_submit_rejects_an_unknown_stage(capsys, no_cluster):
    code, err = submit_main(capsys, "trian", "--address", "http://127.0.0.1:9", "--", "x")
    assert code == 2
    stages = ", ".join(sorted(EXPECTED))
    assert err.splitlines() == [f"ecomrl submit: error: unknown stage 'trian'; stages: {stages}"]
    for helper in ("submit", "__init__"):
        assert submit_main(capsys, helper, "--", "x")[0] == 2


def test_submit_rejects_a_missing_config_file(capsys, no_cluster, tmp_path):
    args = ["train", "--working-dir", tmp_path, "--", "SIM", "--out", "x"]
    code, err = submit_main(capsys, *args, "--config", "train.yaml")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"--config train.yaml: no such file {tmp_path / 'train.yaml'}" in err
    code, err = submit_main(capsys, *args, "--config=/nope.yaml")
    assert code == 2 and "no such file /nope.yaml" in err


def test_submit_rejects_arguments_the_command_would_reject(capsys, no_cluster, tmp_path):
    code, err = submit_main(capsys, "train", "--working-dir", tmp_path, "--", "SIM")
    assert code == 2 and "train: Missing option '--out'" in err
    code, err = submit_main(capsys, "generate", "--", "--out", "x", "--bogus")
    assert code == 2 and "No such option: --bogus" in err
    code, err = submit_main(capsys, "train", "--", "SIM", "--out", "x", "--algo", "sac")
    assert code == 2 and "'--algo'" in err


def test_submit_entrypoint_and_runtime_env(tmp_path, monkeypatch):
    (tmp_path / "train.yaml").write_text("algo: ppo\n")
    args = ["SIM dir", "--out", "x", "--config", "train.yaml"]
    entrypoint = submit.check("train", args, tmp_path)
    assert entrypoint == "python -m pipeline.jobs.train 'SIM dir' --out x --config train.yaml"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert submit.runtime_env(tmp_path) == {
        "working_dir": str(tmp_path),
        "env_vars": {"MLFLOW_TRACKING_URI": "http://mlflow:5000"},
    }


def test_submit_checks_only_the_config_option(tmp_path):
    """`ecomrl sweep CONFIG` takes a file or a bundled sweep's name: not checked here."""
    assert submit.check("sweep", ["anc"], tmp_path) == "python -m pipeline.jobs.sweep anc"


# --- a real Ray head ----------------------------------------------------------------------


@dataclass
class Head:
    address: str  # the dashboard: the Jobs API, http://127.0.0.1:PORT
    gcs_port: int
    token: str
    env: dict[str, str]  # for `ray job ...` and the submit helper: the venv, the token


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def clean_env(**extra: str) -> dict[str, str]:
    """This environment minus anything that would point Ray or MLflow elsewhere (the test
    session's own Ray, conftest's MLflow store): jobs must get those from their runtime env."""
    drop = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH", "MLFLOW_TRACKING_URI")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"  # the job's `python`
    return {**env, **extra}


def stop_head(process: subprocess.Popen, temp_dir: str) -> list[str]:
    """Stop the head we started, and only it: never `ray stop`, which kills every Ray on the
    machine (the test session's own, other workers'). SIGTERM to `ray start --block` shuts its
    processes down; whatever survives (it or its descendants, the raylet's workers and job
    drivers included, or anything naming our temp dir) is killed. Returns what had to be."""
    import psutil

    try:
        head = psutil.Process(process.pid)
        tree = [head, *head.children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    tree += [
        p
        for p in psutil.process_iter(["cmdline"])
        if any(temp_dir in arg for arg in p.info["cmdline"] or ())
    ]
    process.terminate()
    _, alive = psutil.wait_procs(tree, timeout=20)
    killed = []
    for p in alive:
        try:
            killed.append(f"{p.pid} {p.name()}")
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=10)
    process.wait(timeout=10)
    return killed


@pytest.fixture(scope="module")
def ray_head():
    """`ray start --head --block` on loopback ports, in its own session, token auth on with a
    throwaway token (as Ray 2.61 will for every cluster; the GCS listens on every interface
    whatever --node-ip-address says), drain timeout 0 so SIGTERM stops it at once."""
    import psutil

    tmp = Path(tempfile.mkdtemp(prefix="ecomrl-ray-", dir="/tmp"))  # unix sockets: short paths
    token = secrets.token_hex(32)
    (tmp / "token").write_text(token)
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(tmp / "token")}
    gcs, dashboard, client, agent = free_ports(4)
    env = clean_env(**auth, RAY_USAGE_STATS_ENABLED="0", RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")
    command = [
        str(VENV_BIN / "ray"), "start", "--head", "--block",
        "--node-ip-address=127.0.0.1", f"--port={gcs}",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
        f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}",
        "--num-cpus=2", f"--object-store-memory={256 * 1024**2}",
        f"--temp-dir={tmp / 'r'}", "--disable-usage-stats",
    ]  # fmt: skip
    log = tmp / "head.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=tmp,
        )  # fmt: skip
    head = Head(f"http://127.0.0.1:{dashboard}", gcs, token, clean_env(**auth))
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"ray start exited {process.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"the Ray head did not come up in 90 s:\n{log.read_text()[-3000:]}")
            try:
                api(head, "/api/jobs/")
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        yield head
    finally:
        killed = stop_head(process, str(tmp))
        left = [
            p.pid
            for p in psutil.process_iter(["cmdline"])
            if str(tmp) in " ".join(p.info["cmdline"] or ())
        ]
        shutil.rmtree(tmp, ignore_errors=True)
        assert not left, f"Ray processes left behind: {left} (killed: {killed})"


def api(head: Head, path: str, body: dict | None = None, token: str | None = None):
    """The Jobs REST API (what `ray job ...` calls) with the cluster's token (or `token`):
    GET `path`, or POST `body` to it."""
    request = urllib.request.Request(
        head.address + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {token or head.token}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def ray_cli(head: Head, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "ray"), *map(str, args)],
        env=head.env, cwd=REPO, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def wait_job(head: Head, job_id: str, timeout: float = 150) -> dict:
    """The job's info once it has ended, its logs under "logs"."""
    deadline = time.monotonic() + timeout
    while True:
        info = api(head, f"/api/jobs/{job_id}")
        if info["status"] in ("SUCCEEDED", "FAILED", "STOPPED"):
            return {**info, "logs": api(head, f"/api/jobs/{job_id}/logs")["logs"]}
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} still {info['status']} after {timeout} s")
        time.sleep(1)


def run_of(uri: str, name: str):
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("ecomrl")
    assert experiment is not None, f"no ecomrl experiment in {uri}"
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"attributes.run_name = '{name}'"
    )
    assert len(runs) == 1, f"{len(runs)} '{name}' runs in {uri}"
    return runs[0]


@pytest.mark.slow
def test_stage_jobs_on_a_ray_head(ray_head, tmp_path):
    head, uri = ray_head, f"sqlite:///{tmp_path / 'mlruns.db'}"
    env_vars, tag = {"MLFLOW_TRACKING_URI": uri}, uuid.uuid4().hex[:8]
    with pytest.raises(urllib.error.HTTPError) as refused:  # token auth is on
        api(head, "/api/jobs/", token="not-the-token")
    assert refused.value.code in (401, 403)

    # The Jobs CLI: generate logs, tracked in the MLflow store its runtime env names (the head
    # itself was started without MLFLOW_TRACKING_URI).
    logs, gen_id = tmp_path / "logs", f"ecomrl-generate-{tag}"
    done = ray_cli(
        head, "job", "submit", "--address", head.address, "--working-dir", REPO,
        "--runtime-env-json", json.dumps({"env_vars": env_vars}), "--submission-id", gen_id,
        "--no-wait", "--",
        "python", "-m", "pipeline.jobs.generate", "--out", logs, "--sessions", 300, "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    # Beside it, on the package the CLI uploaded, a job whose --config file does not exist.
    package = api(head, f"/api/jobs/{gen_id}")["runtime_env"]["working_dir"]
    bad_id, bad_out = f"ecomrl-bad-config-{tag}", tmp_path / "trained"
    bad = ["python", "-m", "pipeline.jobs.train", "SIM", "--out", bad_out, "--config", "/nope.yaml"]
    api(head, "/api/jobs/", body={
        "entrypoint": shlex.join(map(str, bad)), "submission_id": bad_id,
        "runtime_env": {"working_dir": package, "env_vars": env_vars},
    })  # fmt: skip

    info = wait_job(head, gen_id)
    assert info["status"] == "SUCCEEDED", info["logs"]
    assert (logs / "page_views").is_dir()
    run = run_of(uri, "generate")
    assert run.info.status == "FINISHED"
    assert run.data.metrics["sessions"] == 300 and run.data.metrics["page_views"] > 300
    assert run.data.params["generate.sessions"] == "300"
    assert run.data.params["out"] == str(logs)

    # The bad config failed at once, before any compute: one clear line in the job's logs
    # (`ray job logs ID`), exit status 2, no Ray joined, nothing written.
    info = wait_job(head, bad_id)
    assert info["status"] == "FAILED" and info["driver_exit_code"] == 2, info
    assert "ecomrl: error: /nope.yaml: no such config file" in info["logs"].splitlines()
    assert "Traceback" not in info["logs"] and "Connecting to existing Ray" not in info["logs"]
    assert not bad_out.exists()

    # The submit helper (Jobs SDK, waiting, streaming the logs): ingest uses Ray, and joins
    # the cluster its job runs on instead of starting one.
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.jobs.submit", "ingest", "--address", head.address,
         "--working-dir", REPO, "--", logs, "--out", tmp_path / "ingested", "--no-progress"],
        env={**head.env, **env_vars}, cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    joined = rf"Connecting to existing Ray cluster at address: [\d.]+:{head.gcs_port}\.\.\."
    assert re.search(joined, output) and "Started a local Ray instance" not in output, output
    assert re.search(r"job raysubmit_\w+: SUCCEEDED", output), output
    ingest = run_of(uri, "ingest")
    assert ingest.data.metrics["rows_accepted"] == run.data.metrics["page_views"]
    assert ingest.data.params["source"] == str(logs)

"""Real servers for tests and benchmarks, started on loopback and always stopped.

- `postgres(tmp_dir)`: a throw-away PostgreSQL cluster; yields a SQLAlchemy URL.
- `mlflow_server(backend_uri, artifact_dir)`: `mlflow server` on that backend; yields its URL.
- `chromium(screenshot_dir)`: a headless selenium driver on Debian's chromium.
- `assert_page_shows(driver, url, texts, screenshot_path)`: the browser check.

They fail (never skip) when a program is missing: CI installs `postgresql`, `chromium` and
`chromium-driver` (Debian packages). Nothing is downloaded: selenium is pointed at the system
chromedriver, so Selenium Manager never runs.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

# Program locations, overridable for other systems (e.g. ECOMRL_PG_BIN=$(pg_config --bindir)).
PG_BIN = os.environ.get("ECOMRL_PG_BIN")
CHROMIUM = os.environ.get("ECOMRL_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ECOMRL_CHROMEDRIVER", "/usr/bin/chromedriver")
PG_USER, PG_PASSWORD, PG_DATABASE = "ecomrl", "ecomrl-test", "mlflow"
MLFLOW_SERVER_ENV = {
    # Without this the server starts a job runner and 7 huey consumers (GenAI judges and
    # periodic tasks), ~1 GB and a minute of CPU on a 2-core box, for nothing we use.
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    # No usage telemetry (and so no attempts to reach the internet).
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
}
# Seconds the latest `postgres` / `mlflow_server` took to answer (for reports and benchmarks).
STARTUP_SECONDS: dict[str, float] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _require(path: str | Path, package: str) -> None:
    if not Path(path).is_file():
        raise RuntimeError(f"{path} is missing: install the Debian package `{package}`")


def _pg_bin() -> Path:
    """ECOMRL_PG_BIN, else Debian's newest /usr/lib/postgresql/N/bin, else `initdb` on PATH."""
    if PG_BIN:
        return Path(PG_BIN)
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3])
    )
    if debian:
        return debian[-1].parent
    on_path = shutil.which("initdb")
    if on_path is None:
        raise RuntimeError("initdb is missing: install the Debian package `postgresql`")
    return Path(on_path).parent


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.is_file() else "(no log)"


@contextmanager
def postgres(tmp_dir: str | Path) -> Iterator[str]:
    """A PostgreSQL cluster on 127.0.0.1 and a free port, with database `mlflow` owned by a
    password user; yields `postgresql+psycopg2://user:pw@127.0.0.1:PORT/mlflow`.

    PostgreSQL refuses to run as root: as root, its programs run as the `postgres` user, in a
    fresh directory under the system temp dir (pytest's tmp dirs are private to root). The
    server log is copied to `tmp_dir/postgres.log` on exit.
    """
    import psycopg2

    started_at = time.monotonic()
    pg_bin = _pg_bin()
    for program in ("initdb", "pg_ctl", "postgres"):
        _require(pg_bin / program, "postgresql")
    as_root = os.geteuid() == 0
    if as_root:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError(
                "PostgreSQL refuses to run as root and there is no `postgres` user to run it "
                "as: install the Debian package `postgresql` (it creates one)"
            ) from None
    run_as = {"user": "postgres", "group": "postgres", "extra_groups": []} if as_root else {}
    root = Path(tempfile.mkdtemp(prefix="ecomrl-pg-"))
    data, log = root / "data", root / "postgres.log"
    if as_root:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()

    def pg(*args: str, timeout: float = 120) -> None:
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, cwd=root, **run_as
        )
        if done.returncode:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
                f"\n--- server log ---\n{_tail(log)}"
            )

    started = False
    try:
        # Trust on the unix socket only (for the superuser set-up below); passwords over TCP.
        pg(
            str(pg_bin / "initdb"), "-D", str(data), "-U", "postgres", "--no-sync",
            "--encoding=UTF8", "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256",
        )  # fmt: skip
        # Durability is pointless for a throw-away cluster: no fsync makes it much faster.
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off"
        )
        started = True
        pg(
            str(pg_bin / "pg_ctl"), "start", "-D", str(data), "-l", str(log), "-w", "-t", "90",
            "-o", options,
        )  # fmt: skip
        admin = psycopg2.connect(host=str(root), port=port, user="postgres", dbname="postgres")
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE USER {PG_USER} WITH PASSWORD %s", (PG_PASSWORD,))
            cursor.execute(f"CREATE DATABASE {PG_DATABASE} OWNER {PG_USER}")
        admin.close()
        url = f"postgresql+psycopg2://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{port}/{PG_DATABASE}"
        _wait_for_postgres(url, log)
        STARTUP_SECONDS["postgres"] = time.monotonic() - started_at
        yield url
    finally:
        if started:
            subprocess.run(
                [str(pg_bin / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w"],
                capture_output=True, timeout=60, cwd=root, **run_as,
            )  # fmt: skip
        Path(tmp_dir).mkdir(parents=True, exist_ok=True)
        if log.is_file():
            shutil.copyfile(log, Path(tmp_dir) / "postgres.log")
        shutil.rmtree(root, ignore_errors=True)


def psycopg2_dsn(url: str) -> str:
    """The libpq form of a `postgresql+psycopg2://` SQLAlchemy URL."""
    return url.replace("postgresql+psycopg2://", "postgresql://", 1)


def _wait_for_postgres(url: str, log: Path, timeout: float = 30) -> None:
    import psycopg2

    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg2.connect(psycopg2_dsn(url), connect_timeout=3).close()
            return
        except psycopg2.OperationalError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"PostgreSQL does not accept connections after {timeout:.0f} s: {exc}"
                    f"\n--- server log ---\n{_tail(log)}"
                ) from exc
            time.sleep(0.2)


@contextmanager
def mlflow_server(backend_uri: str, artifact_dir: str | Path, timeout: float = 90) -> Iterator[str]:
    """`mlflow server` on 127.0.0.1 and a free port, one worker, runs in `backend_uri`, artifacts
    served by the server from `artifact_dir`; yields `http://127.0.0.1:PORT`. The server's log
    is `artifact_dir/../mlflow-server.log`."""
    artifact_dir = Path(artifact_dir)
    artifact_dir.mkdir(parents=True, exist_ok=True)
    log_path = artifact_dir.parent / "mlflow-server.log"
    mlflow = Path(sys.executable).parent / "mlflow"
    _require(mlflow, "mlflow (pip)")
    port = free_port()
    command = [
        str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", backend_uri,
        "--serve-artifacts", "--artifacts-destination", str(artifact_dir),
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    started_at = time.monotonic()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **MLFLOW_SERVER_ENV},
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    response.read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    state = (
                        f"exited with {process.returncode}"
                        if process.poll() is not None
                        else f"did not answer /health within {timeout:.0f} s"
                    )
                    raise RuntimeError(
                        f"mlflow server {state}\n--- server log ---\n{_tail(log_path)}"
                    ) from None
                time.sleep(0.5)
        STARTUP_SECONDS["mlflow_server"] = time.monotonic() - started_at
        yield url
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the process group (the CLI, uvicorn and its worker), SIGKILL after 20 s."""
    if process.poll() is None:
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    # Workers left behind in the group (the leader already gone) are killed too.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@contextmanager
def chromium(screenshot_dir: str | Path | None = None) -> Iterator:
    """A selenium driver on Debian's headless chromium (1600x1000), quit on exit. The profile
    is a new empty dir; `screenshot_dir` (created) is where callers put their screenshots."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    _require(CHROMIUM, "chromium")
    _require(CHROMEDRIVER, "chromium-driver")
    if screenshot_dir is not None:
        Path(screenshot_dir).mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="ecomrl-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--window-size=1600,1000",
        f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = None
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


_SCROLL_TO_TEXT = """
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
while (walker.nextNode()) {
  if (walker.currentNode.textContent.includes(arguments[0])) {
    walker.currentNode.parentElement.scrollIntoView({block: "start"});
    return true;
  }
}
return false;
"""


# MLflow 3.17's UI, tidied while we wait: its assistant panel (open on a first visit) is closed
# to give the page the full width, and with `expand_runs` the runs list's folded parents
# (a "+" button; child runs are hidden under them) are unfolded. Returns the clicks made.
_TIDY_MLFLOW_UI = """
let clicks = 0;
for (const b of document.querySelectorAll(
    'button[data-component-id="mlflow.assistant.chat_panel.close"]')) {
  b.click(); clicks++;
}
if (arguments[0]) {
  for (const b of document.querySelectorAll(
      'button[data-component-id*="runnamecellrenderer"]')) {
    if (b.innerHTML.includes("M7.25 7.25V4.5")) { b.click(); clicks++; }  // the "+" icon
  }
}
return clicks;
"""


def assert_page_shows(
    driver,
    url: str,
    texts: Iterable[str],
    screenshot_path: str | Path,
    timeout: float = 60,
    scroll_to: str | None = None,
    expand_runs: bool = False,
) -> str:
    """Open `url`, wait (at most `timeout` s) until every one of `texts` is in the page's
    visible text, save a PNG screenshot to `screenshot_path` (also when it fails) and return
    the page text. The failure names the missing texts and shows the start of the page.

    A text counts even when it is below the fold; `scroll_to` (a text on the page) scrolls
    its element to the top first, so that the screenshot shows that part of the page.
    On MLflow's UI the assistant panel is closed, and `expand_runs` unfolds the child runs
    in an experiment's runs list (they are folded under their parent run by default)."""
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    texts = list(texts)
    screenshot_path = Path(screenshot_path)
    screenshot_path.parent.mkdir(parents=True, exist_ok=True)

    def body_text(drv) -> str:
        try:
            return drv.find_element(By.TAG_NAME, "body").text
        except WebDriverException:  # the app re-renders: stale or absent just means "not yet"
            return ""

    def shows_all(drv) -> bool:
        # A button that went away while clicked is tried again on the next poll.
        with suppress(WebDriverException):
            drv.execute_script(_TIDY_MLFLOW_UI, expand_runs)
        page = body_text(drv)
        return all(text in page for text in texts)

    driver.get(url)
    try:
        WebDriverWait(driver, timeout, poll_frequency=0.5).until(shows_all)
    except TimeoutException:
        page = body_text(driver)
        missing = [text for text in texts if text not in page]
        driver.save_screenshot(str(screenshot_path))
        raise AssertionError(
            f"{url} does not show {missing} after {timeout:.0f} s (screenshot: "
            f"{screenshot_path}); page text:\n{page[:2000]}"
        ) from None
    if scroll_to is not None:
        driver.execute_script(_SCROLL_TO_TEXT, scroll_to)
    # Give the last rows a moment to paint before the picture is taken.
    time.sleep(1)
    driver.save_screenshot(str(screenshot_path))
    return body_text(driver)


REPO = Path(__file__).resolve().parent.parent


def artifacts_dir() -> Path:
    """Where tests leave files for CI to keep: `$ECOMRL_TEST_ARTIFACTS` or `test-artifacts/`
    at the repo root (created)."""
    path = Path(os.environ.get("ECOMRL_TEST_ARTIFACTS") or REPO / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def tracking_to(uri: str) -> Iterator[str]:
    """`MLFLOW_TRACKING_URI=uri` inside; on exit the variable and mlflow's process-global
    tracking URI are put back as they were, so later tests log where they did before."""
    import mlflow

    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    previous_uri = mlflow.get_tracking_uri()
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        yield uri
    finally:
        if previous_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env
        mlflow.set_tracking_uri(previous_uri)


# --- pytest fixtures, module-scoped: import them into a test module to use them
# (`from servers import mlflow_server_url, postgres_url`); each module gets its own servers.


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory) -> Iterator[str]:
    with postgres(tmp_path_factory.mktemp("postgres")) as url:
        yield url


@pytest.fixture(scope="module")
def mlflow_server_url(postgres_url, tmp_path_factory) -> Iterator[str]:
    """An `mlflow server` on the module's PostgreSQL, artifacts in a temp dir."""
    with mlflow_server(postgres_url, tmp_path_factory.mktemp("mlflow") / "artifacts") as url:
        yield url


@pytest.fixture(scope="module")
def chromium_driver() -> Iterator:
    with chromium(artifacts_dir()) as driver:
        yield driver

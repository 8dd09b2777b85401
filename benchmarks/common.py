"""What the benchmarks share: sized log generation and peak memory of a process tree."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import psutil

from pipeline.world.generate import generate_logs

GIB = 1024**3


def _ray_cluster_processes() -> list[psutil.Process]:
    procs = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if (
            "raylet" in cmdline
            or "gcs_server" in cmdline
            or "ray::" in cmdline
            or "default_worker" in cmdline
        ):
            procs.append(proc)
    return procs


class PeakMemory(threading.Thread):
    """Samples the memory of a process tree (plus, optionally, a Ray cluster's) until stopped."""

    def __init__(self, pid: int, with_cluster: bool, interval: float = 0.2):
        super().__init__(daemon=True)
        self.root, self.with_cluster, self.interval = psutil.Process(pid), with_cluster, interval
        self.peak_rss = self.peak_pss = 0
        self.done = threading.Event()

    def _processes(self) -> set[psutil.Process]:
        procs = {self.root, *self.root.children(recursive=True)}
        return procs | set(_ray_cluster_processes()) if self.with_cluster else procs

    def run(self) -> None:
        while not self.done.is_set():
            rss = pss = 0
            try:
                procs = self._processes()
            except psutil.NoSuchProcess:
                break
            for proc in procs:
                try:
                    info = proc.memory_full_info()
                    rss, pss = rss + info.rss, pss + info.pss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self.done.wait(self.interval)


def generate(out: Path, page_views: int, seed: int) -> dict:
    """Logs of about `page_views` rows: sessions sized from a small pilot of the same world."""
    pilot = generate_logs(out / "pilot", sessions=2_000, seed=seed)
    shutil.rmtree(out / "pilot")
    sessions = max(1, round(page_views * pilot.sessions / pilot.page_views))
    started = time.perf_counter()
    summary = generate_logs(out / "logs", sessions=sessions, seed=seed)
    return {
        "sessions": summary.sessions,
        "page_views": summary.page_views,
        "files": len(summary.files),
        "generate_s": round(time.perf_counter() - started, 2),
    }


def run_measured(cmd: list[str], env: dict, with_cluster: bool = False) -> dict:
    """Run `cmd` to completion, timing it and sampling its process tree's peak memory."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    memory = PeakMemory(proc.pid, with_cluster=with_cluster)
    memory.start()
    _, err = proc.communicate()
    seconds = time.perf_counter() - started
    memory.done.set()
    memory.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed ({proc.returncode}): {err[-3000:]}")
    return {
        "seconds": round(seconds, 3),
        "peak_rss_gib": round(memory.peak_rss / GIB, 3),
        "peak_pss_gib": round(memory.peak_pss / GIB, 3),
    }

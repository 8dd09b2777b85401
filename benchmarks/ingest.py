"""Ingest throughput and memory, side by side with a raw pyarrow scan of the same files.

For each size (default 2M and 6M page views): generate logs with the reference world, then time
(a) a raw `pyarrow.dataset` scan of every column of the page_views files and (b) `ecomrl logs
ingest` end to end as a subprocess: interpreter start, imports, Ray start, validation,
sessionising, writing three tables, MLflow logging, Ray shutdown. (b) runs twice: against a
fresh local Ray, as `ecomrl logs ingest` on a laptop, and against a Ray head already running on
loopback (RAY_ADDRESS), as a job on a cluster. The MLflow store is created beforehand, as a
team's store exists before its jobs run.

Peak memory is sampled over every process involved (the ingest process and its descendants, and
the Ray head's processes in cluster mode): the sum of RSS (counts shared object-store pages once
per process, so it overstates) and the sum of PSS (shares them out).

Targets (issue 2, on 2 cores): ingest >= 150k page views/s end to end; peak RSS < 4 GiB at both
sizes. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow.dataset as pads
from common import GIB, generate, run_measured

TARGET_ROWS_PER_S = 150_000
TARGET_RSS_GIB = 4.0


class RayHead:
    """`ray start --head` on loopback for the cluster mode; stopped on exit."""

    def __init__(self, port: int = 6390):
        self.address = f"127.0.0.1:{port}"
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
        self.ray = str(Path(sys.executable).parent / "ray")
        self.port = port

    def __enter__(self) -> RayHead:
        subprocess.run(
            [
                self.ray,
                "start",
                "--head",
                "--node-ip-address",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--include-dashboard=false",
                "--disable-usage-stats",
            ],
            env=self.env,
            check=True,
            capture_output=True,
        )
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run([self.ray, "stop", "--force"], env=self.env, capture_output=True)


def raw_scan(logs: Path) -> dict:
    started = time.perf_counter()
    rows = sum(
        b.num_rows for b in pads.dataset(logs / "page_views", partitioning="hive").to_batches()
    )
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": round(seconds, 3), "rows_per_s": round(rows / seconds)}


def ingest(logs: Path, out: Path, shards: int, head: RayHead | None = None) -> dict:
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{out.parent / 'mlruns.db'}",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    if head is not None:
        env.update(head.env, RAY_ADDRESS=head.address)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from pipeline import tracking\nwith tracking.run('create-store'): pass",
        ],
        env=env,
        check=True,
    )
    cmd = [
        str(Path(sys.executable).parent / "ecomrl"),
        "logs",
        "ingest",
        str(logs),
        "--out",
        str(out),
        "--shards",
        str(shards),
        "--overwrite",
        "--no-progress",
    ]
    measured = run_measured(cmd, env, with_cluster=head is not None)
    summary = json.loads((out / "ingest_summary.json").read_text())
    rows = summary["rows_read"]
    return {
        "rows": rows,
        "rows_accepted": summary["rows_accepted"],
        "rows_quarantined": summary["rows_quarantined"],
        "seconds": measured["seconds"],
        "rows_per_s": round(rows / measured["seconds"]),
        "ingest_function_seconds": summary["seconds"],
        "ray_start_seconds": summary["ray_start_seconds"],
        "peak_rss_gib": measured["peak_rss_gib"],
        "peak_pss_gib": measured["peak_pss_gib"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[2_000_000, 6_000_000], help="page views per run"
    )
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out/ingest"))
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    args = parser.parse_args()

    runs = []
    for size in args.sizes:
        work = args.workdir / f"pv{size}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        data = generate(work, size, args.seed)
        scan = raw_scan(work / "logs")
        local = ingest(work / "logs", work / "out-local", args.shards)
        with RayHead() as head:
            cluster = ingest(work / "logs", work / "out-cluster", args.shards, head)
        runs.append(
            {
                "target_page_views": size,
                "data": data,
                "raw_pyarrow_scan": scan,
                "ecomrl_ingest_local_ray": local,
                "ecomrl_ingest_running_cluster": cluster,
                "ingest_vs_raw_scan_time_ratio": {
                    "local_ray": round(local["seconds"] / scan["seconds"], 2),
                    "running_cluster": round(cluster["seconds"] / scan["seconds"], 2),
                },
                "meets_throughput_target": {
                    "local_ray": local["rows_per_s"] >= TARGET_ROWS_PER_S,
                    "running_cluster": cluster["rows_per_s"] >= TARGET_ROWS_PER_S,
                },
                "meets_memory_target": max(local["peak_rss_gib"], cluster["peak_rss_gib"])
                < TARGET_RSS_GIB,
            }
        )
        if not args.keep:
            shutil.rmtree(work)
    print(
        json.dumps(
            {
                "benchmark": "ingest",
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
                },
                "targets": {"ingest_rows_per_s": TARGET_ROWS_PER_S, "peak_rss_gib": TARGET_RSS_GIB},
                "runs": runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

"""Time and peak memory of `ecomrl simulator build` on 200k page views, then its fidelity.

Generates logs of about 200k page views with the reference world (both scenarios; the
simulator learns main search), ingests them, then runs `ecomrl simulator build` with the
default config as a subprocess (interpreter start, imports, Ray start, GAN-SD, the three
density baselines, behaviour cloning, MAIL on RLlib, checkpoint and MLflow logging) while
sampling the memory of its whole process tree (Ray workers included). Then runs
`ecomrl simulator evaluate` on the result: the KL table (paper, Table 1), R2P with the logged
policy replayed (Figure 4) and, unless --no-slices, one simulator per time slice (Figure 5).

Target (issue 3, 2 cores): build under 10 minutes and under 6 GiB peak RSS. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from pathlib import Path

import psutil
from common import GIB, generate, run_measured

from pipeline.config import IngestConfig
from pipeline.logs.ingest import ingest_logs

TARGET_SECONDS = 600
TARGET_RSS_GIB = 6.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--page-views", type=int, default=200_000)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out/simulator_build"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slices", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()

    work = args.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data = generate(work, args.page_views, args.seed)
    ingest_logs(work / "logs", work / "trajectories", IngestConfig(), progress=False)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlruns.db'}",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    ecomrl = str(Path(sys.executable).parent / "ecomrl")
    build = run_measured(
        [
            ecomrl,
            "simulator",
            "build",
            str(work / "trajectories"),
            "--out",
            str(work / "sim"),
            "--no-progress",
        ],
        env,
    )
    manifest = json.loads((work / "sim" / "manifest.json").read_text())
    evaluate = run_measured(
        [
            ecomrl,
            "simulator",
            "evaluate",
            str(work / "sim"),
            "--logs",
            str(work / "trajectories"),
            "--out",
            str(work / "report"),
            "--no-progress",
            "--slices" if args.slices else "--no-slices",
        ],
        env,
    )
    fidelity = json.loads((work / "report" / "fidelity.json").read_text())
    print(
        json.dumps(
            {
                "benchmark": "simulator_build",
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
                },
                "data": data,
                "build": build,
                "stage_seconds": {
                    k: round(v, 1) for k, v in manifest["metrics"].items() if "seconds" in k
                },
                "targets": {
                    "seconds": TARGET_SECONDS,
                    "peak_rss_gib": TARGET_RSS_GIB,
                    "seconds_over_target": round(build["seconds"] / TARGET_SECONDS, 3),
                    "rss_over_target": round(build["peak_rss_gib"] / TARGET_RSS_GIB, 3),
                    "pass": build["seconds"] < TARGET_SECONDS
                    and build["peak_rss_gib"] < TARGET_RSS_GIB,
                },
                "build_metrics": {
                    k: v for k, v in manifest["metrics"].items() if "seconds" not in k
                },
                "evaluate": evaluate,
                "fidelity": {k: fidelity[k] for k in ("kl", "r2p", "r2p_by_group")}
                | ({"r2p_by_slice": fidelity["r2p_by_slice"]} if args.slices else {}),
                "report": str(work / "report" / "report.md"),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

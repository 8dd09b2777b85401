"""The fidelity report: `report.md`, `fidelity.json` and PNG plots shaped like the paper's
Table 1 and Figures 3, 4 and 5, written by `ecomrl simulator evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt
import numpy as np

from pipeline.markdown import fmt as _fmt
from pipeline.markdown import table as _table
from pipeline.simulator.fidelity import TABLE1_ATTRIBUTES

# Paper, Table 1 (KL from virtual to real on Taobao), quoted next to ours for scale.
PAPER_TABLE1 = {
    "gan_sd": (0.00, 0.00, 0.01, 0.00),
    "gmm": (0.03, 0.03, 0.07, 0.32),
    "gan": (0.70, 0.11, 0.18, 0.90),
    "wgan": (0.68, 0.03, 0.28, 0.02),
}
NAMES = {
    "gan_sd": "GAN-SD",
    "gmm": "GMM",
    "gan": "GAN",
    "wgan": "WGAN",
    "logs": "logs",
    "mail": "MAIL",
    "bc": "BC",
    "simulator": "Virtual-Taobao",
}


def _bars(ax, series: dict[str, list[float]], title: str) -> None:
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        x = np.arange(len(values)) + i * width
        ax.bar(x, [np.nan if v is None else v for v in values], width, label=NAMES.get(name, name))
    ax.set_title(title)
    ax.set_xticks(np.arange(len(next(iter(series.values())))) + 0.4 - width / 2)
    ax.set_xticklabels(range(len(next(iter(series.values())))), fontsize=7)


def _figure(panels: dict[str, dict[str, list[float]]], ylabel: str, path: Path) -> None:
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for ax, (title, series) in zip(axes[0], panels.items(), strict=True):
        _bars(ax, series, title)
        ax.set_ylabel(ylabel)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _slices_figure(by_slice: dict[str, list[float | None]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    hours = np.arange(len(by_slice["logs"])) * 2 + 1
    for name, values in by_slice.items():
        ax.plot(hours, [np.nan if v is None else v for v in values], "o-", label=NAMES[name])
    ax.set_xticks(range(0, 25, 6), [f"{h:02d}:00" for h in range(0, 25, 6)])
    ax.set_ylabel("R2P")
    ax.set_title("R2P over the day, one simulator per slice")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(result: dict, out: Path, header: dict[str, str]) -> Path:
    """Write report.md, fidelity.json and the PNGs into `out`; returns report.md's path."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "fidelity.json").write_text(json.dumps(result, indent=2))
    _figure(
        {a: {m: d[a] for m, d in result["distributions"].items()} for a in TABLE1_ATTRIBUTES},
        "share of customers",
        out / "customer_distributions.png",
    )
    _figure(result["r2p_by_group"], "R2P", out / "r2p_by_group.png")
    lines = ["# Virtual-Taobao fidelity report", ""]
    lines += [f"- {k}: `{v}`" for k, v in header.items()]
    lines += ["", "## Customers: KL(generated || logs) (paper, Table 1)", ""]
    kl_rows = [
        [
            NAMES[m],
            *(_fmt(result["kl"][m][a]) for a in TABLE1_ATTRIBUTES),
            " / ".join(f"{v:.2f}" for v in PAPER_TABLE1[m]),
        ]
        for m in result["kl"]
    ]
    lines.append(_table(["model", *TABLE1_ATTRIBUTES, "paper (Taobao)"], kl_rows))
    lines += ["", "![customer distributions](customer_distributions.png)", ""]
    lines += ["## R2P with the logged engine policy replayed (paper, Figure 4)", ""]
    lines.append(
        _table(["source", "R2P"], [[NAMES[k], _fmt(v, 4)] for k, v in result["r2p"].items()])
    )
    lines += ["", "![R2P by customer group](r2p_by_group.png)", ""]
    for attribute, series in result["r2p_by_group"].items():
        names = list(series)
        rows = [
            [str(level), *(_fmt(series[n][level], 4) for n in names)]
            for level in range(len(series["logs"]))
        ]
        lines += [f"R2P by `{attribute}`:", "", _table(["group", *map(NAMES.get, names)], rows), ""]
    if "r2p_by_slice" in result:
        _slices_figure(result["r2p_by_slice"], out / "r2p_by_slice.png")
        by_slice = result["r2p_by_slice"]
        rows = [
            [
                f"{2 * k:02d}:00-{2 * k + 2:02d}:00",
                _fmt(by_slice["logs"][k], 4),
                _fmt(by_slice["simulator"][k], 4),
            ]
            for k in range(len(by_slice["logs"]))
        ]
        lines += ["## R2P over time, one simulator per two-hour slice (paper, Figure 5)", ""]
        lines += [_table(["slice", "logs", "Virtual-Taobao"], rows), ""]
        lines += ["![R2P by slice](r2p_by_slice.png)", ""]
    lines += [
        "The logged engine policy is replayed by drawing each page's action from the logged "
        "actions: exact for a logging policy that ignores the customer (a random A/B bucket, "
        "as in the paper), the action distribution only otherwise.",
        "",
    ]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return report

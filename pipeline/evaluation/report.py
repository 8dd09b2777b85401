"""The evaluation report: report.md, evaluation.json and PNG plots shaped like the paper's
"Reinforcement Learning in Virtual-Taobao" and "Experiments in the real environment":

- ANC (Figure 6): TRPO vs TRPO-ANC, R2P in the simulator and in the world, TT/TV of TRPO-ANC
  relative to TRPO;
- RL + simulator vs SL1 and SL2 on the logs (Figures 7, 8): R2P, TT, TV in the world;
- generalisation (Table 2): TRPO-ANC trained in the MAIL and in the BC simulator of day 0,
  R2P gain over the random (logging) policy in the world 0 days, 1 day, 1 week, 1 month later.

Policies are found by name: trpo, trpo_anc (the RL policy, trained in the MAIL simulator),
trpo_anc_bc (trained in the BC simulator), sl1, sl2; `random` is always scored. A section
whose policies are missing is left out. Each claim of the paper is checked against the numbers
and marked as holding or not: nothing here is tuned to make it hold.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from pipeline.evaluation.scoring import RANDOM, PolicyScore
from pipeline.markdown import fmt, table
from pipeline.simulator.config import Behaviour
from pipeline.stats import Estimate

TRPO, TRPO_ANC, TRPO_ANC_BC, SL1, SL2 = "trpo", "trpo_anc", "trpo_anc_bc", "sl1", "sl2"
# The paper's figures, quoted beside ours.
PAPER_R2P = {SL1: 0.096, SL2: 0.098, TRPO_ANC: 0.101}
PAPER_TABLE2 = {"BC": (21.65, 8.33, 1.04, -0.54), "MAIL": (18.56, 16.67, 8.34, 8.49)}
PAPER_ANC_SIM_R2P = {TRPO: 0.3, TRPO_ANC: 0.115}


def relative(a: Estimate, b: Estimate, z: float) -> Estimate:
    """a / b - 1 in percent, CI by the delta method treating a and b as independent."""
    ratio = a.value / b.value
    se_a, se_b = (a.ci_high - a.ci_low) / (2 * z), (b.ci_high - b.ci_low) / (2 * z)
    se = ratio * math.hypot(se_a / a.value, se_b / b.value)
    return Estimate(100 * (ratio - 1), 100 * (ratio - 1 - z * se), 100 * (ratio - 1 + z * se))


def _ci(e: Estimate, digits: int = 4) -> str:
    return f"{fmt(e.value, digits)} [{fmt(e.ci_low, digits)}, {fmt(e.ci_high, digits)}]"


def _yerr(estimates: list[Estimate]) -> list[list[float]]:
    """matplotlib's asymmetric error bars from CIs."""
    return [[e.value - e.ci_low for e in estimates], [e.ci_high - e.value for e in estimates]]


def _pct(e: Estimate) -> str:
    return f"{e.value:+.1f}% [{e.ci_low:+.1f}, {e.ci_high:+.1f}]"


def to_json(scores: dict[str, PolicyScore]) -> dict:
    return {
        name: {
            "world": {str(day): r.as_dict() for day, r in s.world.items()},
            "simulator": {
                str(b): {
                    "r2p": e.r2p.value,
                    "r2p_ci_low": e.r2p.ci_low,
                    "r2p_ci_high": e.r2p.ci_high,
                    "page_views": e.page_views,
                }
                for b, e in s.simulator.items()
            },
        }
        for name, s in scores.items()
    }


class _Report:
    def __init__(self, scores: dict[str, PolicyScore], z: float):
        self.s, self.z, self.lines, self.claims = scores, z, [], []
        self.figures = {"r2p_by_policy.png": _plot_policies(scores)}

    def has(self, *names: str) -> bool:
        return all(n in self.s for n in names)

    def world(self, name: str, day: int = 0):
        return self.s[name].world[day]

    def sim(self, name: str, behaviour: Behaviour = Behaviour.MAIL) -> Estimate:
        return self.s[name].simulator[behaviour].r2p

    def claim(self, text: str, holds: bool, numbers: str) -> None:
        self.claims.append({"claim": text, "holds": bool(holds), "numbers": numbers})

    def policies(self) -> None:
        rows = [
            [
                n,
                _ci(self.sim(n)),
                _ci(self.sim(n, Behaviour.BC)),
                _ci(self.world(n).r2p),
                _ci(self.world(n).tt, 0),
                _ci(self.world(n).tv, 0),
            ]
            for n in self.s
        ]
        header = ["policy", "R2P sim (MAIL)", "R2P sim (BC)", "R2P world", "TT world", "TV world"]
        self.lines += ["## Every policy, day 0 (95% CIs)", "", table(header, rows), ""]

    def anc(self) -> None:
        if not self.has(TRPO, TRPO_ANC):
            return
        a, b = self.world(TRPO_ANC), self.world(TRPO)
        rows = [
            [n, _ci(self.sim(n)), _ci(self.world(n).r2p), fmt(PAPER_ANC_SIM_R2P[n])]
            for n in (TRPO, TRPO_ANC)
        ]
        self.lines += [
            "## ANC: TRPO vs TRPO-ANC (paper: Figure 6)",
            "",
            table(["policy", "R2P simulator", "R2P world", "paper: R2P simulator"], rows),
            "",
            f"TRPO-ANC relative to TRPO in the world: TT {_pct(relative(a.tt, b.tt, self.z))}, "
            f"TV {_pct(relative(a.tv, b.tv, self.z))}, R2P "
            f"{_pct(relative(a.r2p, b.r2p, self.z))}.",
            "",
        ]
        self.claim(
            "TRPO-ANC above TRPO in the world",
            a.r2p.value > b.r2p.value,
            f"R2P {a.r2p.value:.4f} vs {b.r2p.value:.4f}",
        )
        self.claim(
            "TRPO-ANC below TRPO in the simulator",
            self.sim(TRPO_ANC).value < self.sim(TRPO).value,
            f"R2P {self.sim(TRPO_ANC).value:.4f} vs {self.sim(TRPO).value:.4f}",
        )

    def rl_vs_sl(self) -> None:
        if not self.has(TRPO_ANC, SL1, SL2):
            return
        rl = self.world(TRPO_ANC)
        rows = [
            [
                n,
                _ci(self.world(n).r2p),
                fmt(PAPER_R2P[n]),
                _ci(self.world(n).tt, 0),
                _ci(self.world(n).tv, 0),
            ]
            for n in (SL1, SL2, TRPO_ANC)
        ]
        gains = [
            [
                sl,
                _pct(relative(rl.r2p, self.world(sl).r2p, self.z)),
                _pct(relative(rl.tt, self.world(sl).tt, self.z)),
                _pct(relative(rl.tv, self.world(sl).tv, self.z)),
            ]
            for sl in (SL1, SL2)
        ]
        self.lines += [
            "## RL + simulator vs supervised on the logs (paper: Figures 7, 8)",
            "",
            table(["policy", "R2P world", "paper R2P", "TT", "TV"], rows),
            "",
            table(["RL (TRPO-ANC) relative to", "R2P", "TT", "TV"], gains),
            "",
        ]
        for sl in (SL1, SL2):
            other = self.world(sl).r2p.value
            self.claim(
                f"RL + simulator above {sl.upper()} in the world",
                rl.r2p.value > other,
                f"R2P {rl.r2p.value:.4f} vs {other:.4f}",
            )

    def generalisation(self) -> None:
        if not self.has(TRPO_ANC, TRPO_ANC_BC):
            return
        days = list(self.s[TRPO_ANC].world)
        gains = {
            label: [relative(self.world(n, d).r2p, self.world(RANDOM, d).r2p, self.z) for d in days]
            for label, n in (("BC", TRPO_ANC_BC), ("MAIL", TRPO_ANC))
        }
        rows = [[label, *(_pct(g) for g in row)] for label, row in gains.items()]
        paper = [
            [f"paper: {label}", *(f"{v:+.2f}%" for v in vals)]
            for label, vals in PAPER_TABLE2.items()
        ]
        header = ["simulator", *(f"day {d}" for d in days)]
        self.lines += [
            "## Generalisation: R2P gain over random in the world (paper: Table 2)",
            "",
            table(header, rows),
            "",
            "Paper (0 day, 1 day, 1 week, 1 month):",
            "",
            table(["", "0 day", "1 day", "1 week", "1 month"], paper),
            "",
        ]
        last = days[-1]
        mail, bc = gains["MAIL"][-1].value, gains["BC"][-1].value
        self.claim(
            f"MAIL's gain holds on day {last} where BC's vanishes",
            mail > 0 and mail > bc and gains["MAIL"][-1].ci_low > 0,
            f"MAIL {mail:+.1f}%, BC {bc:+.1f}%",
        )
        self._plot_generalisation(days, gains)

    def _plot_generalisation(self, days: list[int], gains: dict) -> None:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for label, row in gains.items():
            ax.errorbar(
                days,
                [g.value for g in row],
                yerr=_yerr(row),
                marker="o",
                capsize=3,
                label=f"trained in the {label} simulator",
            )
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(xlabel="days after the logs", ylabel="R2P gain over random (%)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        self.figures["generalisation.png"] = fig


def _plot_policies(scores: dict[str, PolicyScore]):
    names = list(scores)
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 3.5))
    for i, (label, get) in enumerate(
        (
            ("world", lambda s: s.world[0].r2p),
            ("simulator (MAIL)", lambda s: s.simulator[Behaviour.MAIL].r2p),
            ("simulator (BC)", lambda s: s.simulator[Behaviour.BC].r2p),
        )
    ):
        est = [get(scores[n]) for n in names]
        ax.bar(
            [j + 0.27 * i for j in range(len(names))],
            [e.value for e in est],
            0.27,
            yerr=_yerr(est),
            capsize=2,
            label=label,
        )
    ax.set_xticks([j + 0.27 for j in range(len(names))], names, fontsize=8)
    ax.set_ylabel("R2P, day 0")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_report(
    scores: dict[str, PolicyScore], out: Path, header: dict, z: float
) -> tuple[Path, dict]:
    """report.md, evaluation.json and the plots in `out`; returns report.md's path and the
    result ({"policies": per policy scores, "claims": the paper's claims checked})."""
    report = _Report(scores, z)
    report.policies()
    report.anc()
    report.rl_vs_sl()
    report.generalisation()
    intro = [
        "# Deployment evaluation",
        "",
        *(f"- {k}: `{v}`" for k, v in header.items()),
        "",
        "World = the reference world that wrote the logs, fresh customers; simulator = the "
        "learned Virtual-Taobao on the world's day-0 customers. Every policy meets the same "
        "customers.",
        "",
    ]
    claims = [
        f"- **{'holds' if c['holds'] else 'does not hold'}**: {c['claim']} ({c['numbers']})"
        for c in report.claims
    ]
    if claims:
        claims = ["## The paper's claims, checked", "", *claims, ""]
    (out / "report.md").write_text("\n".join([*intro, *claims, *report.lines]))
    result = {"policies": to_json(scores), "claims": report.claims}
    (out / "evaluation.json").write_text(json.dumps(result, indent=2))
    for name, fig in report.figures.items():
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
    return out / "report.md", result

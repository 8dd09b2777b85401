"""report.md and plots of `ecomrl rerank evaluate` (the result of `evaluation/rerank.py`)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from pipeline.markdown import fmt, table

# Issue targets next to the seed's figures.
BP_TARGET = 0.85
SEED_FIVE = ("reinforce", "reinforce_logged", "reinforce_logged_rate", "ppo", "ppo_mc")


def _home(run: dict) -> str:
    """The test size a run is judged at: its training size when it has one, else 30."""
    sizes = run["config"]["train_sizes"]
    home = str(sizes[0]) if sizes else "30"
    return home if home in run["by_size"] else next(iter(run["by_size"]))


def _gain(values: dict) -> str:
    return f"{values['gain']:+.1%} [{values['low']:+.1%}, {values['high']:+.1%}]"


def _evaluators(result: dict) -> list[str]:
    rows = [
        [
            kind,
            *(
                fmt(m[key])
                for key in ("click_auc", "pay_auc", "click_pair_accuracy", "pay_pair_accuracy")
            ),
        ]
        for kind, m in result["evaluators"].items()
    ]
    header = ["evaluator", "click AUC", "pay AUC", "click pair acc.", "pay pair acc."]
    return [
        "## Evaluators (held-out requests)",
        "Per-item AUC over shown positions; pair accuracy is the seed's list-level test: over "
        "pairs of lists with different label counts, the share the evaluator orders correctly. "
        "CAUSAL (no CNN) pays the generator.",
        table(header, rows),
    ]


def _runs(result: dict) -> list[str]:
    rows = []
    for name, run in result["runs"].items():
        home = _home(run)
        at = run["by_size"][home]
        c = run["config"]
        rows.append(
            [
                name,
                c["learner"],
                c["reward"],
                home,
                fmt(at["bp"]),
                fmt(at["bp_context"]),
                fmt(run["curves"][-1]["entropy"], 2),
                _gain(at["evaluator_pay"]),
                _gain(at["true_pay"]),
                _gain(at["true_gmv"]),
            ]
        )
    header = ["run", "learner", "reward", "test n", "BP", "BP (context)", "entropy",
              "evaluator purchases",
              "TRUE purchases", "TRUE GMV"]  # fmt: skip
    return [
        "## Every run: the evaluator's opinion and the truth",
        "BP: share of held-out requests (of the run's training size) where the causal evaluator, "
        "the generator's reward, scores the generated list above the logged order; BP (context): "
        "the same judged by the CNN+RNN evaluator, which the generator never optimised. Gains "
        "are generated / logged - 1 with a 95% CI clustered by request. TRUE = the world's "
        "purchase model, which no model saw.",
        table(header, rows),
    ]


def _generalisation(result: dict) -> list[str]:
    sizes = list(result["test_requests"])
    rows = [
        [name, str(run["config"]["train_sizes"]), *(fmt(run["by_size"][n]["bp"]) for n in sizes)]
        for name, run in result["runs"].items()
    ]
    header = [
        "run",
        "trained on n",
        *(f"BP at n={n} ({result['test_requests'][n]})" for n in sizes),
    ]
    return [
        "## Generalisation over candidate-set sizes (k = 17 picked from n)",
        table(header, rows),
    ]


def _rewards(result: dict) -> list[str]:
    rows = []
    for name, run in result["runs"].items():
        if run["config"]["learner"] != "ppo_mc" or run["config"]["train_sizes"] != [30]:
            continue
        at = run["by_size"][_home(run)]
        rows.append(
            [name, run["config"]["reward"]]
            + [
                f"{at[key]['generated']:.4g} ({at[key]['gain']:+.1%})"
                for key in ("evaluator_pay", "evaluator_gmv", "true_pay", "true_gmv")
            ]
        )
    header = ["run", "reward", "evaluator purchases", "evaluator GMV (quantile)",
              "TRUE purchases", "TRUE GMV"]  # fmt: skip
    return ["## PAY vs GMV vs PAY_GMV (PPO-MC, gain over the logged order)", table(header, rows)]


def _gail(result: dict) -> list[str]:
    lines = []
    for name, run in result["runs"].items():
        auc = [p["discriminator_auc"] for p in run["curves"] if "discriminator_auc" in p]
        if auc:
            lines.append(
                f"- {name}: discriminator AUC {auc[0]:.3f} at the first iteration, "
                f"{max(auc):.3f} at most, {auc[-1]:.3f} at the last ({len(auc)} iterations)"
            )
    if not lines:
        return []
    return [
        "## GAIL: can a discriminator tell generated lists from logged ones?",
        "AUC of generated (positive) vs logged lists, measured each iteration before the "
        "discriminator trains on that iteration's lists: 0.5 = indistinguishable.",
        "\n".join(lines),
    ]


def _claims(result: dict) -> list[str]:
    runs = result["runs"]
    lines = ["## Targets and the seed's claims"]

    def claim(text: str, holds: bool, numbers: str) -> None:
        lines.append(f"- {'HOLDS' if holds else 'DOES NOT HOLD'}: {text} ({numbers})")

    if "ppo_mc" in runs:
        bp = runs["ppo_mc"]["by_size"][_home(runs["ppo_mc"])]["bp"]
        claim(f"PPO-MC reaches BP >= {BP_TARGET}", bp >= BP_TARGET, f"BP {bp:.3f}")
    true = {n: r["by_size"][_home(r)]["true_pay"] for n, r in runs.items()}
    best = max(true, key=lambda n: true[n]["gain"])
    claim(
        "the best learner's TRUE expected purchases beat the logged order",
        true[best]["low"] > 0,
        f"{best}: {_gain(true[best])}",
    )
    five = [n for n in SEED_FIVE if n in runs]
    if len(five) > 1:
        bps = {n: runs[n]["by_size"][_home(runs[n])]["bp"] for n in five}
        top = max(bps, key=bps.get)
        claim("PPO-MC has the best BP of the seed's five learners", top == "ppo_mc",
              ", ".join(f"{n} {v:.3f}" for n, v in bps.items()))  # fmt: skip
    return lines


def _curves(result: dict, key: str, path: Path, ylabel: str) -> Path | None:
    series = {n: r["curves"] for n, r in result["runs"].items() if key in r["curves"][-1]}
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, curve in series.items():
        ax.plot([p["env_steps"] for p in curve], [p[key] for p in curve], label=name)
    ax.set_xlabel("env steps")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(result: dict, out: Path) -> Path:
    """report.md, evaluation.json and the PNG curves under `out`; returns the report path."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(result, indent=2))
    plots = [
        _curves(result, "entropy", out / "entropy.png", "policy entropy (nats)"),
        _curves(result, "bp", out / "bp.png", "BP on held-out requests"),
        _curves(result, "discriminator_auc", out / "discriminator_auc.png", "discriminator AUC"),
    ]
    sections = [
        ["# Re-ranking report"],
        _claims(result),
        _evaluators(result),
        _runs(result),
        _generalisation(result),
        _rewards(result),
        _gail(result),
        ["## Training curves", *(f"![{p.stem}]({p.name})" for p in plots if p is not None)],
    ]
    report = out / "report.md"
    report.write_text("\n\n".join("\n\n".join(s) for s in sections if s) + "\n")
    return report

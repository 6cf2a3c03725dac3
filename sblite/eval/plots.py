"""PNG plots for ``sblite eval`` (matplotlib, headless Agg backend).

- ``budget_vs_length.png``: each sample's budget against its solution tokens, with y = x and the ±50% band;
- ``by_level.png``: accuracy and mean solution tokens per level (or difficulty bucket);
- ``prefill_sweep.png`` (prefill mode): accuracy against mean tokens, one point per pre-filled budget, and
  mean length against the budget with y = x;
- ``plot_frontier`` (the demo and ``benchmarks/reproduce_cpu.py``): the accuracy-vs-tokens frontier of several
  evaluations — baselines as points, each trained model's pre-fill sweep as a curve.

Plots only draw what ``eval/metrics.py`` computed; they never compute a metric themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_eval(result: dict[str, Any], out: Path) -> list[Path]:
    """Write the plots that apply to ``result``; returns their paths."""
    written = [_by_level(result, out / "by_level.png")]
    recs = [r for r in result["records"] if r.get("budget")]
    if recs:
        written.append(_budget_vs_length(result, recs, out / "budget_vs_length.png"))
    if "by_prefill_budget" in result["summary"]:
        written.append(_sweep(result, out / "prefill_sweep.png"))
    return written


def _title(result: dict[str, Any]) -> str:
    return f"{result['model']} · {result['dataset']} · {result['mode']}"


def _budget_vs_length(result, recs, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=120)
    ok = [r for r in recs if r["correct"]]
    bad = [r for r in recs if not r["correct"]]
    ax.scatter(
        [r["budget"] for r in ok], [r["length"] for r in ok], s=14, alpha=0.7, c="tab:green", label="correct"
    )
    ax.scatter(
        [r["budget"] for r in bad],
        [r["length"] for r in bad],
        s=14,
        alpha=0.7,
        c="tab:red",
        marker="x",
        label="wrong",
    )
    top = max(max(r["budget"] for r in recs), max(r["length"] for r in recs)) * 1.05
    xs = [0, top]
    ax.plot(xs, xs, "k--", lw=1, label="length = budget")
    ax.fill_between(xs, [0.5 * x for x in xs], [1.5 * x for x in xs], color="grey", alpha=0.15, label="±50%")
    s = result["summary"]["overall"]
    if s.get("slope") is not None:
        ax.plot(
            xs,
            [s["intercept"] + s["slope"] * x for x in xs],
            color="tab:blue",
            lw=1.2,
            label=f"fit: slope {s['slope']:.2f}, R² {s['r2']:.2f}",
        )
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("budget (tokens)")
    ax.set_ylabel("actual solution length (tokens)")
    ax.set_title(f"Budget vs length\n{_title(result)}", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _by_level(result, path: Path) -> Path:
    plt = _plt()
    groups = result["summary"]["by_level"]
    names = list(groups)
    acc = [100 * (groups[n]["accuracy"] or 0) for n in names]
    tok = [groups[n]["mean_tokens"] or 0 for n in names]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 4), dpi=120)
    a1.bar(names, acc, color="tab:green")
    a1.set_ylabel("accuracy (%)")
    a1.set_ylim(0, 100)
    a1.set_title("accuracy per level")
    a2.bar(names, tok, color="tab:blue")
    a2.set_ylabel("mean solution tokens")
    a2.set_title("length per level")
    for ax in (a1, a2):
        ax.set_xlabel("level / difficulty bucket")
        ax.tick_params(axis="x", rotation=30)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(_title(result), fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _sweep(result, path: Path) -> Path:
    plt = _plt()
    sweep = result["summary"]["by_prefill_budget"]
    budgets = [int(b) for b in sweep]
    acc = [100 * (sweep[str(b)]["accuracy"] or 0) for b in budgets]
    tok = [sweep[str(b)]["mean_tokens"] or 0 for b in budgets]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=120)
    a1.plot(tok, acc, "o-", color="tab:purple")
    for b, x, y in zip(budgets, tok, acc, strict=True):
        a1.annotate(str(b), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    a1.set_xlabel("mean solution tokens")
    a1.set_ylabel("accuracy (%)")
    a1.set_ylim(0, 105)
    a1.set_title("accuracy vs tokens (labels: pre-filled budget)")
    a2.plot(budgets, tok, "o-", color="tab:blue", label="mean length")
    a2.plot(budgets, budgets, "k--", lw=1, label="length = budget")
    a2.set_xlabel("pre-filled budget (tokens)")
    a2.set_ylabel("mean solution tokens")
    a2.set_title("does the model obey the budget?")
    a2.legend(fontsize=8)
    for ax in (a1, a2):
        ax.grid(alpha=0.3)
    fig.suptitle(_title(result), fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_frontier(points: dict[str, dict[str, Any]], sweeps: dict[str, dict[str, Any]], path: Path, title: str) -> Path:
    """Accuracy against mean generated tokens (budget tag included, the compression measure): each of
    ``points`` (an ``overall`` summary: a baseline, or a model in self mode) is a marker, each of ``sweeps``
    (a prefill-mode ``summary``) a curve through its pre-filled budgets, labelled with the budget."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 4.8), dpi=120)
    n = len(points) + len(sweeps)
    colors = iter(plt.cm.tab20.colors if n > 10 else plt.cm.tab10.colors)
    for label, o in points.items():
        ax.plot([o["mean_generated_tokens"] or 0], [100 * (o["accuracy"] or 0)], "s", ms=7, label=label,
                color=next(colors))  # fmt: skip
    for label, summary in sweeps.items():
        sweep = summary["by_prefill_budget"]
        budgets = sorted(sweep, key=int)
        xs = [sweep[b]["mean_generated_tokens"] or 0 for b in budgets]
        ys = [100 * (sweep[b]["accuracy"] or 0) for b in budgets]
        style = "o--" if "guard" in label else "o-"  # a budget-guarded sweep (sblite.generate.guard)
        ax.plot(xs, ys, style, label=f"{label} (pre-filled budget)", color=next(colors))
        for b, x, y in zip(budgets, xs, ys, strict=True):
            ax.annotate(b, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("mean generated tokens per answer")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path

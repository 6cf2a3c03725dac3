"""Several seeds of ``reproduce_cpu.py`` side by side: each trained row's figures per seed, their mean and range.

    python benchmarks/reproduce_seeds.py benchmarks/results/reproduce_cpu.json \
        benchmarks/results/reproduce_cpu_seed1.json benchmarks/results/reproduce_cpu_seed2.json

The inputs must be one configuration: every argument but ``seed``, ``rows``, ``work``, ``out``, ``held_out``
and ``held_out_questions`` equal, or the script names the one that differs and stops. A row appears for the
seeds whose file has it (``--rows`` may have trained a subset). Nothing is re-run: the figures are the files'.
Results: benchmarks/results/reproduce_seeds.{json,md} (``--out``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_json  # noqa: E402

#: arguments that may differ between the seeds of one configuration
FREE = {"seed", "rows", "work", "out", "held_out", "held_out_questions"}
#: (label, where in a file's row: "self" = arith-test self mode, "sweep" = the pre-fill sweep's overall, key)
METRICS = [
    ("accuracy", "self", "accuracy"),
    ("own budget ±50%", "self", "adherence_50"),
    ("ρ(budget, level)", "self", "spearman_budget_level"),
    ("compression", "self", "compression"),
    ("pre-fill slope", "sweep", "slope"),
    ("pre-fill R²", "sweep", "r2"),
    ("pre-fill ±50%", "sweep", "adherence_50"),
]


def check_same_config(files: dict[str, dict]) -> None:
    """Refuse files that are not seeds of one configuration, naming the first argument that differs."""
    (first, a), *rest = files.items()
    for name, b in rest:
        for key in sorted(set(a["args"]) | set(b["args"])):
            if key not in FREE and a["args"].get(key) != b["args"].get(key):
                raise SystemExit(f"{name}: --{key.replace('_', '-')}={b['args'].get(key)!r} but {first} has "
                                 f"{a['args'].get(key)!r}; only {', '.join(sorted(FREE))} may differ")  # fmt: skip


def per_seed(files: dict[str, dict]) -> dict[str, dict[int, dict]]:
    """``{row: {seed: {label: value, "sweep tokens": {budget: mean solution tokens}}}}`` for every trained row."""
    out: dict[str, dict[int, dict]] = {}
    for data in files.values():
        seed = data["args"]["seed"]
        for row, sweep in data["prefill_sweeps"].items():
            self_mode = data["table"]["arith-test"][row]
            src = {"self": self_mode, "sweep": sweep["overall"]}
            figures = {label: src[where].get(key) for label, where, key in METRICS}
            figures["sweep tokens"] = {b: s["mean_tokens"] for b, s in sweep["by_prefill_budget"].items()}
            out.setdefault(row, {})[seed] = figures
    return out


def summarize(values: list[float | None]) -> dict[str, float | None]:
    """Mean, min and max of the values present (None where a seed lacks the figure)."""
    xs = [v for v in values if v is not None]
    if not xs:
        return {"mean": None, "min": None, "max": None, "n": 0}
    return {"mean": statistics.fmean(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def _pct(label: str) -> bool:
    return label in ("accuracy", "own budget ±50%", "compression", "pre-fill ±50%")


def _fmt(label: str, x: float | None) -> str:
    if x is None:
        return "—"
    return f"{100 * x:.0f}%" if _pct(label) else f"{x:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path, help="reproduce_cpu.py result JSONs, one per seed")
    ap.add_argument("--out", default=str(RESULTS / "reproduce_seeds"))
    args = ap.parse_args()
    files = {str(p): json.loads(p.read_text(encoding="utf-8")) for p in args.files}
    check_same_config(files)
    seeds = [d["args"]["seed"] for d in files.values()]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"two files share a seed ({seeds}): give each seed once")
    rows = per_seed(files)
    summary = {row: {label: summarize([by[s][label] for s in by]) for label, _, _ in METRICS}
               for row, by in rows.items()}  # fmt: skip
    out = Path(args.out)
    write_json(out.with_suffix(".json"), {
        "benchmark": "reproduce_seeds",
        "inputs": {name: {"seed": d["args"]["seed"], "command": d["command"]} for name, d in files.items()},
        "per_seed": rows,
        "summary": summary,
    })  # fmt: skip

    budgets = sorted({b for by in rows.values() for f in by.values() for b in f["sweep tokens"]}, key=int)
    md = ["# The CPU reproduction over seeds", "",
          "Inputs (one configuration, `reproduce_cpu.py`):", "",
          *[f"- seed {d['args']['seed']}: `{name}` (`{d['command']}`)" for name, d in files.items()], "",
          "## Per seed", "",
          "| row | seed | " + " | ".join(label for label, _, _ in METRICS) + " | "
          + " | ".join(f"pre-fill {b}" for b in budgets) + " |",
          "| --- | ---: |" + " ---: |" * (len(METRICS) + len(budgets))]  # fmt: skip
    for row, by in rows.items():
        for seed in sorted(by):
            f = by[seed]
            md.append(f"| {row} | {seed} | " + " | ".join(_fmt(label, f[label]) for label, _, _ in METRICS) + " | "
                      + " | ".join("—" if f["sweep tokens"].get(b) is None else f"{f['sweep tokens'][b]:.1f}"
                                   for b in budgets) + " |")  # fmt: skip
    md += ["", "Pre-fill columns: mean solution tokens at that pre-filled budget.", "",
           "## Mean (min – max) over the seeds each row has", "",
           "| row | seeds | " + " | ".join(label for label, _, _ in METRICS) + " |",
           "| --- | ---: |" + " ---: |" * len(METRICS)]  # fmt: skip
    for row, s in summary.items():
        cells = [f"{_fmt(label, v['mean'])} ({_fmt(label, v['min'])} – {_fmt(label, v['max'])})"
                 for label, v in ((label, s[label]) for label, _, _ in METRICS)]  # fmt: skip
        md.append(f"| {row} | {len(rows[row])} | " + " | ".join(cells) + " |")
    out.with_suffix(".md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print("\n".join(md))


if __name__ == "__main__":
    main()

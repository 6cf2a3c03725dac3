"""``report.json`` of ``sblite prepare``: counts, per-level and per-difficulty statistics, provenance; its table.

``build_report`` states ``read == kept + rejected`` (and checks it), per-level pass rate and budget
quantiles, rejects by reason, and ``prepare_provenance`` records what made the data (input sha256,
tokenizer, model, sampling settings, versions, arguments). ``render_report`` is the rich table
``sblite prepare`` prints.

This module only describes data it is given: it must not read datasets, label, or write files (``prepare``
writes ``report.json``), and imports rich only inside ``render_report``.
"""

from __future__ import annotations

import datetime as dt
import platform
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sblite.data.fields import FieldMap, Reject, Row
from sblite.data.labels import Label
from sblite.data.readers import Source
from sblite.provenance import package_versions

if TYPE_CHECKING:
    from sblite.data.prepare import PrepareOptions

BUDGET_MEASURE = "protocol.count_solution_tokens of the tokenised completion (tokens after </budget>)"


def _quantiles(values: list[int]) -> dict[str, float | None]:
    if not values:
        return {"p10": None, "p50": None, "p90": None}
    v = sorted(values)

    def q(p: float) -> float:  # linear interpolation, as numpy's default
        pos = (len(v) - 1) * p
        lo = int(pos)
        hi = min(lo + 1, len(v) - 1)
        return round(v[lo] + (v[hi] - v[lo]) * (pos - lo), 1)

    return {"p10": q(0.1), "p50": q(0.5), "p90": q(0.9)}


def _stats(rows: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any]) -> list[dict[str, Any]]:
    groups: dict[Any, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    out = []
    for g in sorted(groups, key=lambda x: (x is None, str(x) if not isinstance(x, int) else f"{x:04d}")):
        rs = groups[g]
        budgets = [r["b_max"] for r in rs if r["b_max"] is not None]
        rates = [r["pass_rate"] for r in rs if "pass_rate" in r]
        out.append(
            {
                "group": g,
                "count": len(rs),
                "labelled": len(budgets),
                "pass_rate": round(sum(rates) / len(rates), 4) if rates else None,
                "difficulty_mean": round(sum(r["difficulty"] for r in rs) / len(rs), 4),
                "budget": _quantiles(budgets),
            }
        )
    return out


def _difficulty_bucket(d: float) -> str:
    lo = min(int(d * 5), 4) / 5
    return f"{lo:.1f}-{lo + 0.2:.1f}"


def _versions() -> dict[str, str | None]:
    pkgs = ("sblite", "transformers", "datasets", "math-verify", "torch", "tokenizers")
    return {"python": platform.python_version(), **dict.fromkeys(pkgs), **package_versions(pkgs)}


def prepare_provenance(
    opts: PrepareOptions,
    *,
    source: Source,
    fields: FieldMap,
    input_sha: str | None,
    tokenizer: str | None,
    engine: str | None,
    cache_files: list[Path],
) -> dict[str, Any]:
    """What made this prepared dataset; sampling settings are None in reference mode."""
    sampled = opts.labels == "sample"
    return {
        "source": source.describe(),
        "fields": fields.describe(),
        "input_sha256": input_sha,
        "labels": opts.labels,
        "tokenizer": tokenizer,
        "model": opts.model,
        "engine": engine,
        "k": opts.k if sampled else None,
        "temperature": opts.temperature if sampled else None,
        "top_p": opts.top_p if sampled else None,
        "max_new_tokens": opts.max_new_tokens if sampled else None,
        "instruction_in_user": opts.instruction_in_user if sampled else None,
        "styles": list(opts.styles) if sampled else None,
        "targets": opts.targets if sampled else None,
        "sample_caches": [str(f) for f in cache_files] or None,
        "seed": opts.seed,
        "limit": opts.limit,
        "sample_cache": str(cache_files[0]) if cache_files else None,
        "budget_measure": BUDGET_MEASURE,
        "versions": _versions(),
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "options": {k: v for k, v in asdict(opts).items() if k != "command"},
        "command": opts.command,
    }


def build_report(
    *,
    read: int,
    rows: list[Row],
    rejects: list[Reject],
    labels: dict[str, Label],
    out_rows: list[dict[str, Any]],
    n_sft: int,
    n_grpo: int,
    provenance: dict[str, Any],
    stating_questions: int = 0,
) -> dict[str, Any]:
    """``report.json``: ``out_rows`` are the GRPO rows written, each with its ``difficulty_source``;
    ``stating_questions`` the rows kept beyond them as self rows only (``--stating-questions``)."""
    reject_counts = Counter(rj.reason for rj in rejects)
    report = {
        "counts": {
            "read": read,
            "kept": len(rows) + stating_questions,
            "stating_questions": stating_questions,
            "rejected": len(rejects),
            "sft": n_sft,
            "sft_questions": sum(1 for r in rows if labels[r.id].completions),
            "grpo": n_grpo,
            "no_correct_response": sum(1 for r in out_rows if r["b_max"] is None),
            "rejects_by_reason": dict(sorted(reject_counts.items())),
        },
        "by_level": _stats(out_rows, lambda r: r["level"]),
        "by_difficulty": _stats(out_rows, lambda r: _difficulty_bucket(r["difficulty"])),
        "difficulty_sources": dict(Counter(r["difficulty_source"] for r in out_rows)),
        "provenance": provenance,
    }
    assert report["counts"]["read"] == report["counts"]["kept"] + report["counts"]["rejected"]
    return report


def render_report(report: dict[str, Any]) -> Any:
    """The report as a rich renderable: rows per level with pass rate and budget quantiles, rejects by reason."""
    from rich.console import Group
    from rich.table import Table

    counts = report["counts"]
    prov = report["provenance"]

    def fmt(v: Any) -> str:
        return "—" if v is None else (f"{v:.0f}" if isinstance(v, float) and v.is_integer() else str(v))

    title = (
        f"sblite prepare: {prov['source']['spec']} ({prov['labels']} labels, tokenizer {prov['tokenizer']})"
    )
    levels = Table(title=title, title_justify="left")
    for col in ("level", "rows", "labelled", "pass", "diff", "budget p10", "p50", "p90"):
        levels.add_column(col, justify="right", no_wrap=True)
    groups = report["by_level"]
    if len(groups) == 1 and groups[0]["group"] is None:  # no levels: show difficulty buckets instead
        levels.columns[0].header = "difficulty"
        groups = report["by_difficulty"]
    for g in groups:
        pr = g["pass_rate"]
        levels.add_row(
            fmt(g["group"]) if g["group"] is not None else "none",
            str(g["count"]),
            str(g["labelled"]),
            "—" if pr is None else f"{pr:.0%}",
            f"{g['difficulty_mean']:.2f}",
            fmt(g["budget"]["p10"]),
            fmt(g["budget"]["p50"]),
            fmt(g["budget"]["p90"]),
        )
    summary = Table(show_header=True, title="counts", title_justify="left")
    for col in ("read", "kept", "rejected", "sft", "grpo", "no correct response"):
        summary.add_column(col, justify="right")
    summary.add_row(
        *(str(counts[c]) for c in ("read", "kept", "rejected", "sft", "grpo", "no_correct_response"))
    )
    parts: list[Any] = [levels, summary]
    if counts["rejects_by_reason"]:
        rej = Table(title="rejects by reason", title_justify="left")
        rej.add_column("reason")
        rej.add_column("rows", justify="right")
        for reason, n in counts["rejects_by_reason"].items():
            rej.add_row(reason, str(n))
        parts.append(rej)
    if "renderings" in report:
        r = report["renderings"]
        lengths = ", ".join(f"{v} {n:g}" for v, n in r["mean_budget"].items())
        skipped = f"; {r['skipped']} rows had no re-renderable solution (report.json: renderings)" if r["skipped"] else ""
        own = r.get("self") or []
        kind = f"SFT rows ({', '.join(own)} as self rows, the rest pre-filled)" if own else "pre-filled SFT rows"
        parts.append(f"renderings: {r['rows']} {kind} from {r['questions']} questions "
                     f"(mean budget {lengths}){skipped}")  # fmt: skip
        if "stating_questions" in r:
            st = r["stating_questions"]
            parts.append(f"stating questions: {st['questions']} of {st['asked']} asked, {st['rows']} self rows "
                         f"({', '.join(own)}) with no sampled answer or GRPO row")
    return Group(*parts)

"""The prepared dataset ``sblite prepare`` writes and ``sblite train`` / ``sblite eval`` read: one layout.

    DIR/sft.jsonl      one budget-SFT target per line: question, completion, budget, level, …
    DIR/grpo.jsonl     one GRPO prompt per line: question, gold answer, b_max, level, …
    DIR/rejects.jsonl  every input record that was not used, with file:line and the reason
    DIR/report.json    counts, budget statistics, settings, versions and input hash

This module owns the layout (the file names above: no other module spells them) and reading it back:
each line is JSON or the load stops at ``file:line``; ``b_max`` goes through ``protocol.parse_b_max`` (the
one budget-cap rule). Nothing here tokenizes, loads a model, or writes (``sblite.data.prepare`` writes).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sblite import protocol
from sblite.provenance import sha256_file

SFT_FILE, GRPO_FILE, REJECTS_FILE, REPORT_FILE = "sft.jsonl", "grpo.jsonl", "rejects.jsonl", "report.json"
OUTPUT_FILES = (SFT_FILE, GRPO_FILE, REJECTS_FILE, REPORT_FILE)


class PreparedDataError(ValueError):
    """A prepared directory or line that cannot be read; the message names file:line and the fix."""


@dataclass
class PreparedData:
    """A ``sblite prepare`` output directory, read into memory."""

    path: Path
    sft: list[dict[str, Any]]
    grpo: list[dict[str, Any]]
    report_sha256: str | None


def is_prepared(path: str | Path) -> bool:
    """True for a directory that looks like a ``sblite prepare`` output."""
    root = Path(path)
    return root.is_dir() and (root / GRPO_FILE).is_file() and (root / SFT_FILE).is_file()


def _iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every non-blank line; a line that is not JSON stops at ``file:line``."""
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise PreparedDataError(
                    f"{path}:{lineno}: not JSON ({err.msg}); re-run `sblite prepare`"
                ) from None
            yield lineno, obj


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every non-blank line of a prepared JSONL file; ``b_max`` parsed by ``protocol.parse_b_max``."""
    path = Path(path)
    rows = []
    for lineno, row in _iter_jsonl(path):
        if "b_max" in row:
            try:
                row["b_max"] = protocol.parse_b_max(row["b_max"])
            except ValueError as err:
                raise PreparedDataError(
                    f"{path}:{lineno}: field b_max: {err}; fix the line or re-run `sblite prepare`"
                ) from None
        rows.append(row)
    return rows


def read_questions(path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(rows, rejects)`` from a prepared directory's ``grpo.jsonl`` (what ``sblite eval`` asks).

    A line without ``question`` or ``answer`` is a reject in ``prepare``'s rejects.jsonl shape (line, id,
    field, reason, detail), never dropped unseen. ``b_max`` is left as written: asking a question needs
    no budget cap. Raises ``PreparedDataError`` when the directory has no ``grpo.jsonl`` or a line is not JSON.
    """
    grpo = Path(path) / GRPO_FILE
    if not grpo.is_file():
        raise PreparedDataError(f"a directory must be a `sblite prepare` output (no {GRPO_FILE})")
    rows, rejects = [], []
    for lineno, row in _iter_jsonl(grpo):
        missing = next((k for k in ("question", "answer") if row.get(k) in (None, "")), None)
        if missing:
            rejects.append({"line": lineno, "id": row.get("id"), "field": missing, "reason": "missing_field",
                            "detail": f"{grpo}:{lineno}: no {missing!r}"})  # fmt: skip
            continue
        rows.append(row)
    return rows, rejects


def load_prepared(path: str | Path) -> PreparedData:
    """Read ``sft.jsonl``/``grpo.jsonl`` (and hash ``report.json``) from a prepared directory.

    ``b_max`` is read by ``protocol.parse_b_max`` (a float, ``inf`` for no cap); a value that is not a budget
    stops the load with its file and line."""
    root = Path(path)
    if not root.is_dir():
        raise PreparedDataError(f"--data {root}: not a directory; run `sblite prepare --out {root}` first")
    files = {name: root / name for name in (SFT_FILE, GRPO_FILE)}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise PreparedDataError(
            f"--data {root}: missing {', '.join(missing)}; is it a `sblite prepare` output?"
        )
    report = root / REPORT_FILE
    sha = sha256_file(report) if report.is_file() else None
    return PreparedData(root, read_jsonl(files[SFT_FILE]), read_jsonl(files[GRPO_FILE]), sha)


def check_renderings(
    data: PreparedData, renderings: list[str], self_renderings: list[str], stating_questions: int = 0
) -> None:
    """``PreparedDataError`` when a recipe that names ``data.renderings`` trains on a prepared directory whose
    rendered rows differ from them, or from ``data.self_renderings`` (which of them are self rows), or that has
    ``stating`` rows where ``data.stating_questions`` is 0 or none where it is not: the recipe's setting would not
    be honoured. A recipe without renderings trains on whatever the directory has.

    >>> d = PreparedData(Path("p"), [{"rendering": "short", "prefilled": True}], [], None)
    >>> check_renderings(d, ["short"], [])
    >>> check_renderings(d, ["short"], ["short"])
    Traceback (most recent call last):
    ...
    sblite.data.prepared.PreparedDataError: p/sft.jsonl: its short rows are pre-filled, but data.self_renderings \
makes short a self row; re-run `sblite prepare --recipe … --force` so the data matches the recipe
    """
    if not renderings:
        return
    found: dict[str, bool] = {}
    stating = 0
    for row in data.sft:
        if "rendering" in row:
            found[row["rendering"]] = bool(row.get("prefilled"))
        stating += bool(row.get("stating"))
    fix = "re-run `sblite prepare --recipe … --force` so the data matches the recipe"
    if bool(stating) != bool(stating_questions):
        raise PreparedDataError(f"{data.path / SFT_FILE}: {stating} stating-question rows, but data.stating_questions "
                                f"is {stating_questions}; {fix}")
    if set(found) != set(renderings):
        raise PreparedDataError(
            f"{data.path / SFT_FILE}: rendered rows {sorted(found) or 'none'}, but data.renderings is "
            f"{renderings}; {fix}"
        )
    for v, prefilled in found.items():
        if prefilled == (v in self_renderings):
            now, want = ("pre-filled", "a self row") if prefilled else ("self rows", "pre-filled")
            raise PreparedDataError(
                f"{data.path / SFT_FILE}: its {v} rows are {now}, but data.self_renderings makes {v} {want}; {fix}"
            )

"""What a record means: map its fields, normalise its gold answer, and validate it into a ``Row`` or ``Reject``.

``resolve_fields`` picks the question, answer, solution, level and id columns of a source (explicit
``--*-field`` options win, then the known dataset's map, then common column names); ``Validator`` turns each
``RawRecord`` of ``sblite.data.readers`` into a ``Row`` (gold answer normalised, duplicates rejected) or a
``Reject`` with its 1-based line/record number, the field at fault and a short reason code (``REASONS``).
A file whose answers are GSM8K-style (``#### N``) is validated as GSM8K: see ``gsm8k_style``.

This module owns field mapping and validation only: it must not open files or reach the hub (that is
``readers``), never drops a record silently, and imports nothing heavier than ``sblite.protocol``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from sblite.data.readers import RawRecord, Source, SourceError
from sblite.protocol import extract_boxed, parse_gold

#: Short, stable reject codes (they are counted in report.json and tested).
REASONS = (
    "bad_json",
    "not_an_object",
    "non_utf8",
    "missing_field",
    "empty_field",
    "bad_type",
    "unparsable_answer",
    "duplicate",
    "prompt_too_long",
)


@dataclass(frozen=True)
class FieldMap:
    """Which record keys hold the question, gold answer, reference solution, level and id."""

    question: str | tuple[str, ...]  # a tuple is joined with a space (SVAMP: Body + Question)
    answer: str
    solution: str | None = None
    level: str | None = None
    id: str | None = None
    gold_style: str = (
        "auto"  # gsm8k: needs '#### N'; math: answer field, else last \boxed{}; auto: parse_gold
    )

    def describe(self) -> dict[str, Any]:
        q = list(self.question) if isinstance(self.question, tuple) else self.question
        return {
            "question": q,
            "answer": self.answer,
            "solution": self.solution,
            "level": self.level,
            "id": self.id,
            "gold_style": self.gold_style,
        }


KIND_FIELDS = {
    "gsm8k": FieldMap(question="question", answer="answer", solution="answer", gold_style="gsm8k"),
    "math": FieldMap(
        question="problem",
        answer="answer",
        solution="solution",
        level="level",
        id="unique_id",
        gold_style="math",
    ),
    "svamp": FieldMap(question=("Body", "Question"), answer="Answer", id="ID"),
}

QUESTION_CANDIDATES = ("question", "problem", "prompt", "query", "input", "Question", "Problem")
ANSWER_CANDIDATES = ("answer", "final_answer", "Answer", "gold", "target", "expected_answer")
SOLUTION_CANDIDATES = ("solution", "rationale", "explanation", "reasoning")
LEVEL_CANDIDATES = ("level", "Level", "difficulty_level")
ID_CANDIDATES = ("id", "unique_id", "ID", "idx", "uid")


@dataclass
class Row:
    """A validated question. ``solution`` is the reference solution text when the source has one."""

    id: str
    line: int
    question: str
    answer: str
    solution: str | None
    level: int | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Reject:
    line: int
    reason: str
    detail: str
    raw: str
    field: str | None = None
    id: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"line": self.line}
        if self.id is not None:
            out["id"] = self.id
        out.update(field=self.field, reason=self.reason, detail=self.detail, raw=self.raw)
        return out


# ------------------------------------------------------------------------------------------- field mapping


def resolve_fields(
    source: Source,
    columns: set[str],
    *,
    question_field: str | None = None,
    answer_field: str | None = None,
    solution_field: str | None = None,
    level_field: str | None = None,
    id_field: str | None = None,
) -> FieldMap:
    """The field map for ``source`` given the union of keys its records have; explicit options win.

    Raises ``SourceError`` when a required column is in no record at all (a wrong --question-field, a file
    of another dataset): per-row absences are rejects, a column absent everywhere is a usage error.

    A file whose answer column is GSM8K-style (``gsm8k_style``) gets ``gold_style="gsm8k"``, as the named
    ``gsm8k`` sources have: its rows without ``#### N`` are rejects, not golds that can never be matched.
    """
    base = KIND_FIELDS.get(source.kind)
    if base is None or not _has_question(base.question, columns):
        q_auto: str | tuple[str, ...] | None = next((c for c in QUESTION_CANDIDATES if c in columns), None)
        if q_auto == "Question" and "Body" in columns:
            q_auto = ("Body", "Question")
        base = FieldMap(
            question=q_auto or "question",
            answer=next((c for c in ANSWER_CANDIDATES if c in columns), "answer"),
            solution=next((c for c in SOLUTION_CANDIDATES if c in columns), None),
            level=next((c for c in LEVEL_CANDIDATES if c in columns), None),
            id=next((c for c in ID_CANDIDATES if c in columns), None),
        )
        if base.solution is not None:  # with a solution column an empty answer falls back to its \boxed{}
            base = replace(base, gold_style="math")
    fm = FieldMap(
        question=question_field or base.question,
        answer=answer_field or base.answer,
        solution=solution_field or (base.solution if (base.solution in columns) else None),
        level=level_field or (base.level if base.level in columns else None),
        id=id_field or (base.id if base.id in columns else None),
        gold_style=base.gold_style if not answer_field else "auto",
    )
    if fm.gold_style != "gsm8k" and source.kind != "math" and gsm8k_style(columns, fm.answer):
        fm = replace(fm, gold_style="gsm8k")
    shown = ", ".join(sorted(columns)[:20]) or "none"
    for opt, name in (
        ("--question-field", fm.question),
        ("--answer-field", fm.answer),
        ("--solution-field", fm.solution if solution_field else None),
        ("--level-field", fm.level if level_field else None),
        ("--id-field", fm.id if id_field else None),
    ):
        if name is None:
            continue
        names = name if isinstance(name, tuple) else (name,)
        missing = [n for n in names if n not in columns]
        if missing:
            raise SourceError(
                f"column {missing[0]!r} not found in {source.spec} (columns: {shown}); choose one with {opt}"
            )
    return fm


def gsm8k_style(columns: set[str], answer: str) -> bool:
    """Whether ``answer`` is a GSM8K-style column: half or more of its non-empty text values hold ``####``.

    The rule looks at the whole file (``collect_columns`` counts), not row by row: in such a file a row
    without ``#### N`` is a mistake whose whole worked text would otherwise become the gold, so it is
    rejected (``unparsable_answer``), as in the named ``gsm8k`` sources. With fewer ``####`` answers the file
    is mixed and every row is read by ``parse_gold`` (``####``, else the last ``\\boxed{}``, else the text).
    ``columns`` that are a plain set (no counts) are never GSM8K-style.
    """
    counts = getattr(columns, "text_counts", {}).get(answer)
    if not counts:
        return False
    n_text, n_marked = counts
    return n_marked > 0 and 2 * n_marked >= n_text


def _has_question(q: str | tuple[str, ...], columns: set[str]) -> bool:
    return all(n in columns for n in (q if isinstance(q, tuple) else (q,)))


# ------------------------------------------------------------------------------------------- validation

_LEVEL_RE = re.compile(r"^\s*(?:level\s*)?(\d+)\s*$", re.IGNORECASE)
_WS_RE = re.compile(r"\s+")


def parse_level(value: Any) -> int | None:
    """``3`` / ``"Level 3"`` / ``"3"`` → 3; anything else (``"Level ?"``, None) → None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        m = _LEVEL_RE.match(value)
        return int(m.group(1)) if m else None
    return None


def normalise_gold(value: Any, style: str = "auto", solution: str | None = None) -> str | None:
    """The normalised gold answer, or None when there is none to verify against.

    - ``gsm8k``: the text after ``####`` (commas dropped); a GSM8K answer without ``####`` is unparsable.
    - ``math``: the ``answer`` field when present, else the last ``\\boxed{}`` of the solution.
    - ``auto``: ``protocol.parse_gold`` (``####``, else last ``\\boxed{}``, else the text; numbers as text).
    A one-element list (OlympiadBench ``final_answer``) is unwrapped; longer lists are joined with ", ".
    """
    if isinstance(value, list):
        items = [normalise_gold(v, "auto") for v in value]
        if not items or any(i is None for i in items):
            return None
        return ", ".join(i for i in items if i is not None)
    if style == "gsm8k":
        if not isinstance(value, str) or "####" not in value:
            return None
        return parse_gold(value)
    if style == "math" and (value is None or (isinstance(value, str) and not value.strip())):
        return extract_boxed(solution) if solution else None
    if value is None or isinstance(value, dict):
        return None
    gold = parse_gold(value)
    if gold is None:
        return None
    gold = gold.strip()
    if gold.startswith("$") and gold.endswith("$") and len(gold) > 2:
        gold = gold.strip("$").strip()
    return gold or None


def question_key(question: str) -> str:
    """Duplicate detection key: whitespace-collapsed, case-folded question text."""
    return _WS_RE.sub(" ", question).strip().casefold()


def _reject(rec: RawRecord, reason: str, detail: str, field_name: str | None, rid: str | None) -> Reject:
    return Reject(rec.line, reason, detail, rec.raw, field=field_name, id=rid)


def _question_names(fm: FieldMap) -> tuple[str, ...]:
    return fm.question if isinstance(fm.question, tuple) else (fm.question,)


def _read_question(rec: RawRecord, fm: FieldMap, rid: str | None) -> str | Reject:
    """The question text (parts joined with a space), or why the record has none."""
    obj = rec.obj
    parts = []
    for name in _question_names(fm):
        if name not in obj:
            return _reject(rec, "missing_field", f"no {name!r} key", name, rid)
        val = obj[name]
        if val is None:
            return _reject(rec, "empty_field", f"{name!r} is null", name, rid)
        if not isinstance(val, str):
            return _reject(rec, "bad_type", f"{name!r} is a {type(val).__name__}, not text", name, rid)
        if not val.strip():
            return _reject(rec, "empty_field", f"{name!r} is empty", name, rid)
        parts.append(val.strip())
    return " ".join(parts)


def _read_gold(rec: RawRecord, fm: FieldMap, solution: str | None, rid: str | None) -> str | Reject:
    """The normalised gold answer, or why the record has none (``math`` style falls back to ``\\boxed{}``)."""
    obj = rec.obj
    if fm.answer not in obj and not (fm.gold_style == "math" and solution):
        return _reject(rec, "missing_field", f"no {fm.answer!r} key", fm.answer, rid)
    raw_answer = obj.get(fm.answer)
    if raw_answer is None and fm.gold_style != "math":
        return _reject(rec, "empty_field", f"{fm.answer!r} is null", fm.answer, rid)
    if isinstance(raw_answer, str) and not raw_answer.strip() and fm.gold_style != "math":
        return _reject(rec, "empty_field", f"{fm.answer!r} is empty", fm.answer, rid)
    gold = normalise_gold(raw_answer, fm.gold_style, solution)
    if gold is not None:
        return gold
    if raw_answer is None or (isinstance(raw_answer, str) and not raw_answer.strip()):
        detail = f"{fm.answer!r} is empty and no \\boxed{{}} in the solution"
        return _reject(rec, "empty_field", detail, fm.answer, rid)
    what = (
        "no '#### N' line, which this file's answers use (end the answer with '#### N')"
        if fm.gold_style == "gsm8k"
        else "no answer could be read"
    )
    return _reject(rec, "unparsable_answer", f"{fm.answer!r}: {what}", fm.answer, rid)


@dataclass
class Validator:
    """Turns ``RawRecord``s into ``Row``s or ``Reject``s with one field map; remembers ids and questions to
    reject duplicates (the first occurrence is kept)."""

    source: Source
    fields: FieldMap
    seen_questions: dict[str, int] = field(default_factory=dict)
    seen_ids: dict[str, int] = field(default_factory=dict)

    def __call__(self, rec: RawRecord) -> Row | Reject:
        if rec.error is not None:
            reason, detail = rec.error
            return Reject(rec.line, reason, detail, rec.raw)
        obj = rec.obj
        if not isinstance(obj, dict):
            return Reject(
                rec.line, "not_an_object", f"record is a JSON {type(obj).__name__}, not an object", rec.raw
            )
        fm = self.fields
        rid = None
        if fm.id is not None and obj.get(fm.id) not in (None, ""):
            rid = str(obj[fm.id])
        question = _read_question(rec, fm, rid)
        if isinstance(question, Reject):
            return question
        solution = None
        if fm.solution is not None:
            sol = obj.get(fm.solution)
            solution = sol.strip() if isinstance(sol, str) and sol.strip() else None
        gold = _read_gold(rec, fm, solution, rid)
        if isinstance(gold, Reject):
            return gold
        raw_answer = obj.get(fm.answer)
        if solution is None and isinstance(raw_answer, str) and raw_answer.strip() != gold:
            solution = raw_answer.strip()  # GSM8K-style: the answer field is a worked solution
        level = parse_level(obj.get(fm.level)) if fm.level else None
        if rid is None:
            rid = f"{self.source.name}-{rec.line}"
        duplicate = self._duplicate(rec, question, rid)
        if duplicate is not None:
            return duplicate
        self.seen_questions[question_key(question)] = rec.line
        self.seen_ids[rid] = rec.line
        return Row(id=rid, line=rec.line, question=question, answer=gold, solution=solution, level=level)

    def _duplicate(self, rec: RawRecord, question: str, rid: str) -> Reject | None:
        """A ``duplicate`` reject when the question or the id was seen before, else None."""
        key = question_key(question)
        if key in self.seen_questions:
            detail = f"same question as line {self.seen_questions[key]}"
            return _reject(rec, "duplicate", detail, _question_names(self.fields)[-1], rid)
        if rid in self.seen_ids:
            detail = f"id {rid!r} already used at line {self.seen_ids[rid]}"
            return _reject(rec, "duplicate", detail, self.fields.id, rid)
        return None


class Columns(set):
    """The keys the records of a source have (a ``set[str]``) and, per key, ``text_counts[key] =
    (records with non-empty text there, those of them containing '####')``, for ``gsm8k_style``."""

    def __init__(self, names: Iterable[str] = (), text_counts: dict[str, tuple[int, int]] | None = None):
        super().__init__(names)
        self.text_counts = text_counts or {}


def collect_columns(records: list[RawRecord]) -> Columns:
    """The union of the records' keys, with the counts ``resolve_fields`` uses to spot GSM8K-style answers."""
    cols: set[str] = set()
    counts: dict[str, list[int]] = {}
    for r in records:
        if isinstance(r.obj, dict):
            for k, v in r.obj.items():
                cols.add(str(k))
                if isinstance(v, str) and v.strip():
                    c = counts.setdefault(str(k), [0, 0])
                    c[0] += 1
                    c[1] += "####" in v
    return Columns(cols, {k: (n, m) for k, (n, m) in counts.items()})

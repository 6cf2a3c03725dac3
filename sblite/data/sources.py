"""Dataset sources for ``sblite prepare``: resolve a name or file, read raw records, map fields, validate rows.

A source is a known name (``gsm8k``, ``gsm8k-test``, ``math``, ``math500``, ``svamp``), a local file
(``.jsonl``, ``.json``, ``.parquet``, ``.csv``) or ``hf:owner/name[:split]`` loaded with
``datasets.load_dataset``. Known names resolve to files under a data directory (``--data-dir``, else
``$SBLITE_DATA``, else a ``../shared/data`` next to the working directory or the repository) and to the hub
otherwise.

Reading never drops a record silently: each input record becomes either a ``Row`` (validated, gold answer
normalised) or a ``Reject`` with its 1-based line/record number, the field at fault and a short reason code
(``REASONS``). Problems with the source as a whole (unknown name, unreadable file, a column no record has)
raise ``SourceError`` with one line saying what to fix; the CLI turns that into exit code 2.

Whole-file problems a new user meets first are named as such rather than surfacing later as a missing
column: a file that is not UTF-8 (with line, byte offset, the offending byte and an ``iconv`` command; in
JSONL a few stray bytes are per-line ``non_utf8`` rejects, but when at least half the lines are not UTF-8
the file is in another encoding and reading stops), an empty file (0 bytes, blank lines only, a CSV header
without rows, ``[]``), and a file where no record could be read at all. A file whose answers are GSM8K-style
(``#### N``) is validated as GSM8K: see ``gsm8k_style``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

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

FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
RAW_PREVIEW_CHARS = 300


class SourceError(Exception):
    """A problem with the source as a whole; the message is one line that says what to fix."""


@dataclass(frozen=True)
class KnownSource:
    """A dataset sblite knows by name: where its local copy lives and how its fields map."""

    name: str
    rel_path: str  # under the data directory
    hub: tuple[str, str | None, str]  # (path, config, split) for datasets.load_dataset
    kind: str  # field-mapping family: gsm8k | math | svamp


KNOWN_SOURCES: dict[str, KnownSource] = {
    "gsm8k": KnownSource("gsm8k", "gsm8k/train.jsonl", ("openai/gsm8k", "main", "train"), "gsm8k"),
    "gsm8k-test": KnownSource("gsm8k-test", "gsm8k/test.jsonl", ("openai/gsm8k", "main", "test"), "gsm8k"),
    # MATH-12k train = prm800k's train split (all 12,500 MATH problems less MATH-500).
    "math": KnownSource(
        "math", "math/math_train12k.jsonl", ("zzy1123/MATH_train_test_split", None, "train"), "math"
    ),
    "math500": KnownSource(
        "math500", "math/math500_test.jsonl", ("HuggingFaceH4/MATH-500", None, "test"), "math"
    ),
    "svamp": KnownSource("svamp", "svamp/SVAMP.json", ("ChilleD/SVAMP", None, "train"), "svamp"),
}
#: Datasets shipped in this repository (``data/``): the graded arithmetic problems of ``synthetic.py``.
BUNDLED_DATA = Path(__file__).resolve().parents[2] / "data"
BUNDLED_SOURCES: dict[str, str] = {"arith": "arith/train.jsonl", "arith-test": "arith/test.jsonl"}


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
class RawRecord:
    """One input record before validation: its 1-based number, raw text preview, and the parsed object or
    the reason it could not be parsed."""

    line: int
    raw: str
    obj: Any = None
    error: tuple[str, str] | None = None  # (reason, detail)


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


@dataclass
class Source:
    """A resolved source: what to read and how, plus provenance."""

    spec: str  # what the user asked for
    name: str  # short label written into every row's "source"
    path: Path | None  # local file, or None for the hub
    hub: tuple[str, str | None, str] | None = None
    kind: str = "auto"

    def describe(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "name": self.name,
            "path": str(self.path) if self.path else None,
            "hub": list(self.hub) if self.hub else None,
            "kind": self.kind,
        }


# ------------------------------------------------------------------------------------------- resolution


def default_data_dirs() -> list[Path]:
    """Where known names are looked up when neither --data-dir nor $SBLITE_DATA is set."""
    repo = Path(__file__).resolve().parents[2]
    return [Path.cwd() / ".." / "shared" / "data", repo.parent / "shared" / "data"]


def resolve_source(spec: str, data_dir: str | os.PathLike | None = None) -> Source:
    """Turn ``--dataset`` into a ``Source``; raises ``SourceError`` for an unknown name or missing file."""
    if spec.startswith("hf:"):
        body = spec[3:]
        repo, _, split = body.partition(":")
        if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", repo or ""):
            raise SourceError(f"--dataset {spec!r}: expected hf:owner/name[:split]")
        return Source(spec=spec, name=repo.rsplit("/", 1)[-1], path=None, hub=(repo, None, split or "train"))
    if spec in BUNDLED_SOURCES:
        path = BUNDLED_DATA / BUNDLED_SOURCES[spec]
        if not path.is_file():
            raise SourceError(f"--dataset {spec}: {path} is missing; regenerate it: python -m sblite.data.synthetic")
        return Source(spec=spec, name=spec, path=path.resolve())
    if spec in KNOWN_SOURCES:
        known = KNOWN_SOURCES[spec]
        explicit = data_dir if data_dir is not None else os.environ.get("SBLITE_DATA") or None
        if explicit:
            path = Path(explicit) / known.rel_path
            if not path.is_file():
                raise SourceError(f"--dataset {spec}: {path} not found (check --data-dir / $SBLITE_DATA)")
            return Source(spec=spec, name=spec, path=path.resolve(), kind=known.kind)
        for base in default_data_dirs():
            path = base / known.rel_path
            if path.is_file():
                return Source(spec=spec, name=spec, path=path.resolve(), kind=known.kind)
        return Source(spec=spec, name=spec, path=None, hub=known.hub, kind=known.kind)
    path = Path(spec)
    if path.suffix.lower() in FILE_SUFFIXES or path.exists():
        if not path.is_file():
            raise SourceError(f"--dataset {spec}: no such file")
        if path.suffix.lower() not in FILE_SUFFIXES:
            raise SourceError(f"--dataset {spec}: unsupported file type; use .jsonl, .json, .parquet or .csv")
        if not os.access(path, os.R_OK):
            raise SourceError(f"--dataset {spec}: file is not readable (check its permissions)")
        return Source(spec=spec, name=path.stem, path=path.resolve())
    raise SourceError(
        f"--dataset {spec!r}: unknown dataset; use one of {', '.join([*BUNDLED_SOURCES, *KNOWN_SOURCES])}, "
        "a .jsonl/.json/.parquet/.csv file, or hf:owner/name[:split]"
    )


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------- reading


def _preview(text: str) -> str:
    return text if len(text) <= RAW_PREVIEW_CHARS else text[:RAW_PREVIEW_CHARS] + "…"


def _reencode_hint(path: Path, data: bytes, offset: int) -> str:
    """How to turn ``path`` into UTF-8, guessing the encoding from its first bytes and the byte at fault."""
    bad = data[offset]
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        enc, what = "utf-16", "it is UTF-16"
    elif bad == 0:  # UTF-16 without a byte-order mark: ASCII text with a NUL beside every byte
        enc, what = ("utf-16le" if offset % 2 else "utf-16be"), "it looks like UTF-16"
    elif 0x80 <= bad <= 0x9F:
        enc, what = "cp1252", "if it is Windows-1252"
    else:
        enc, what = "latin1", "if it is Latin-1"
    out = path.with_name(f"{path.stem}.utf8{path.suffix}")
    return f"{what}, re-encode it: iconv -f {enc} -t utf-8 {path} > {out}"


def _not_utf8_message(path: Path, data: bytes, offset: int, extent: str = "") -> str:
    """``PATH:LINE: not UTF-8: byte 0xE9 at offset N (byte C of line LINE); <how to re-encode>``.

    ``LINE`` is the line of the file as an editor counts it (in a CSV the header is line 1). A NUL byte is
    valid UTF-8 but never part of a text data file: it is reported the same way (the file is UTF-16)."""
    line = data.count(b"\n", 0, offset) + 1
    column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return (
        f"{path}:{line}: not UTF-8{extent}: byte 0x{data[offset]:02X} at offset {offset} (byte {column} of "
        f"line {line}); {_reencode_hint(path, data, offset)}"
    )


def _check_not_utf16(path: Path, data: bytes) -> None:
    """``SourceError`` for a UTF-16 file (a UTF-16 byte-order mark, or NUL bytes): read line by line it would
    give one bad record per line, or none."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SourceError(_not_utf8_message(path, data, 0))
    nul = data.find(b"\x00")
    if nul >= 0:
        raise SourceError(_not_utf8_message(path, data, nul))


def _decode_utf8(path: Path) -> str:
    """The whole file as text (a leading BOM dropped); ``SourceError`` naming line and byte if not UTF-8."""
    data = path.read_bytes()
    _check_not_utf16(path, data)
    try:
        return data.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as err:
        raise SourceError(_not_utf8_message(path, data, err.start)) from None


def _read_jsonl(path: Path) -> Iterator[RawRecord]:
    """One record per non-blank line; bytes that are not UTF-8 and lines that are not JSON become errors.

    A few lines that are not UTF-8 are ``non_utf8`` rejects; when at least half the records are, the file is
    in another encoding and ``SourceError`` says so (line, byte, ``iconv`` command) instead of rejecting it
    all.
    """
    data = path.read_bytes()
    _check_not_utf16(path, data)
    records: list[RawRecord] = []
    first_bad: int | None = None  # file offset of the first byte that is not UTF-8
    pos = 0
    for lineno, raw_bytes in enumerate(data.splitlines(keepends=True), start=1):
        start, pos = pos, pos + len(raw_bytes)
        try:
            text = raw_bytes.decode("utf-8")
        except UnicodeDecodeError as err:
            first_bad = start + err.start if first_bad is None else first_bad
            raw = raw_bytes.decode("utf-8", errors="replace").rstrip("\r\n")
            detail = (
                f"invalid UTF-8 byte 0x{raw_bytes[err.start]:02X} at byte {err.start} of the line; "
                + _reencode_hint(path, data, start + err.start)
            )
            records.append(RawRecord(lineno, _preview(raw), error=("non_utf8", detail)))
            continue
        if lineno == 1:
            text = text.lstrip("\ufeff")
        if not text.strip():
            continue  # blank lines are layout, not records
        stripped = text.rstrip("\r\n")
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError as err:
            records.append(
                RawRecord(lineno, _preview(stripped), error=("bad_json", f"{err.msg} at column {err.colno}"))
            )
            continue
        records.append(RawRecord(lineno, _preview(stripped), obj=obj))
    n_bad = sum(1 for r in records if r.error is not None and r.error[0] == "non_utf8")
    if first_bad is not None and 2 * n_bad >= len(records):
        raise SourceError(
            _not_utf8_message(path, data, first_bad, f" ({n_bad} of {len(records)} non-blank lines)")
        )
    yield from records


def _read_json(path: Path) -> Iterator[RawRecord]:
    """A JSON array of objects (SVAMP); a file of JSON lines saved as .json is read as JSONL."""
    text = _decode_utf8(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        yield from _read_jsonl(path)
        return
    if isinstance(data, list) and not data:
        raise SourceError(f"{path}: empty JSON array (no records); {_empty_fix(path)}")
    if isinstance(data, dict):
        # {"data": [...]} or {"train": [...]}: take the single list value
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise SourceError(f"{path}: expected a JSON array of records (or one object holding one array)")
        data = lists[0]
    if not isinstance(data, list):
        raise SourceError(f"{path}: expected a JSON array of records")
    for i, obj in enumerate(data, start=1):
        yield RawRecord(i, _preview(json.dumps(obj, ensure_ascii=False, default=str)), obj=obj)


def _read_csv(path: Path) -> Iterator[RawRecord]:
    """Record numbers count data rows (the header is not a record)."""
    text = _decode_utf8(path)
    if not text.strip():
        raise SourceError(_empty_message(path))
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        raise SourceError(
            f"{path}: empty CSV (no header row); put the column names on line 1: question,answer"
        )
    n = 0
    for n, rec in enumerate(reader, start=1):
        extra = rec.pop(None, None)  # type: ignore[call-overload]
        raw = _preview(json.dumps(rec, ensure_ascii=False))
        if extra:
            yield RawRecord(n, raw, error=("bad_type", f"row has {len(extra)} more cells than the header"))
            continue
        yield RawRecord(n, raw, obj={k: v for k, v in rec.items()})
    if n == 0:
        raise SourceError(
            f"{path}: the CSV has a header row ({', '.join(reader.fieldnames)}) but no data rows; "
            "add one row per question under it"
        )


def _table_records(rows: Iterable[dict[str, Any]]) -> Iterator[RawRecord]:
    for i, rec in enumerate(rows, start=1):
        rec = {k: _plain(v) for k, v in rec.items()}
        yield RawRecord(i, _preview(json.dumps(rec, ensure_ascii=False, default=str)), obj=rec)


def _plain(value: Any) -> Any:
    """numpy scalars/arrays from parquet/arrow → plain Python values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _read_parquet(path: Path) -> Iterator[RawRecord]:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except Exception as err:  # noqa: BLE001 - pyarrow raises many types for a bad file
        raise SourceError(
            f"{path}: cannot read parquet ({type(err).__name__}: {str(err).splitlines()[0]})"
        ) from None
    yield from _table_records(table.to_pylist())


def _read_hub(source: Source) -> Iterator[RawRecord]:
    assert source.hub is not None
    repo, config, split = source.hub
    try:
        import datasets

        ds = datasets.load_dataset(repo, config, split=split)
    except Exception as err:  # noqa: BLE001 - offline / missing repo / bad split all end the run the same way
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = (
            " (offline? pass --data-dir or set SBLITE_DATA to a local copy)" if source.kind != "auto" else ""
        )
        raise SourceError(
            f"cannot load {repo}{':' + split if split else ''} from the hub: {msg[:200]}{hint}"
        ) from None
    yield from _table_records(ds)


def _empty_fix(path: Path) -> str:
    """What an empty ``path`` should hold instead, in its own format."""
    if path.suffix.lower() == ".csv":
        return "give it a header row and one question per row, e.g. question,answer then What is 2 + 2?,4"
    record = '{"question": "What is 2 + 2?", "answer": "4"}'
    if path.suffix.lower() == ".parquet":
        return "give it one row per question, with question and answer columns"
    if path.suffix.lower() == ".json":
        return f"give it a JSON array of records, e.g. [{record}]"
    return f"give it one JSON record per line, e.g. {record}"


def _empty_message(path: Path) -> str:
    """``PATH: the file is empty (0 bytes)`` or ``… only blank lines``, with what to put in it."""
    size = path.stat().st_size
    if size == 0:
        what = "the file is empty (0 bytes)"
    elif path.suffix.lower() == ".parquet":
        what = "the table has no rows"
    else:
        what = f"no records, only blank lines ({size} bytes)"
    return f"{path}: {what}; {_empty_fix(path)}"


def _no_usable_record(where: str, records: list[RawRecord]) -> str:
    """The one-line error for a source none of whose records is a JSON object, naming the first problem."""
    first = records[0]
    if first.error is not None:
        reason, detail = first.error
    else:
        reason, detail = "not_an_object", f"record is a JSON {type(first.obj).__name__}, not an object"
    return (
        f"{where}:{first.line}: none of its {len(records)} records could be read (first: {reason}: {detail}); "
        'each record must be a JSON object, e.g. {"question": "What is 2 + 2?", "answer": "4"}'
    )


def read_records(source: Source) -> Iterator[RawRecord]:
    """Every record of ``source`` in order, parse failures included (as ``RawRecord.error``).

    Raises ``SourceError`` for a source with no records (an empty file, blank lines only) and for one where
    no record is a JSON object (every line bad JSON, a file in another encoding): reported as what they are,
    not as a column that is missing.
    """
    if source.path is None:
        records = list(_read_hub(source))
        where = source.spec
    else:
        records = _read_file(source.path)
        where = str(source.path)
    if not records:
        if source.path is None:
            raise SourceError(f"{source.spec}: the split has no records")
        raise SourceError(_empty_message(source.path))
    if not any(isinstance(r.obj, dict) for r in records):
        raise SourceError(_no_usable_record(where, records))
    yield from records


def _read_file(path: Path) -> list[RawRecord]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            return list(_read_jsonl(path))
        if suffix == ".json":
            return list(_read_json(path))
        if suffix == ".csv":
            return list(_read_csv(path))
        if suffix == ".parquet":
            return list(_read_parquet(path))
        raise SourceError(f"{path}: unsupported file type")  # resolve_source admits only the suffixes above
    except OSError as err:
        raise SourceError(f"{path}: cannot read ({err.strerror or err})") from None


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
        # question
        q_names = fm.question if isinstance(fm.question, tuple) else (fm.question,)
        parts = []
        for name in q_names:
            if name not in obj:
                return Reject(rec.line, "missing_field", f"no {name!r} key", rec.raw, field=name, id=rid)
            val = obj[name]
            if val is None:
                return Reject(rec.line, "empty_field", f"{name!r} is null", rec.raw, field=name, id=rid)
            if not isinstance(val, str):
                return Reject(
                    rec.line,
                    "bad_type",
                    f"{name!r} is a {type(val).__name__}, not text",
                    rec.raw,
                    field=name,
                    id=rid,
                )
            if not val.strip():
                return Reject(rec.line, "empty_field", f"{name!r} is empty", rec.raw, field=name, id=rid)
            parts.append(val.strip())
        question = " ".join(parts)
        # solution (optional)
        solution = None
        if fm.solution is not None:
            sol = obj.get(fm.solution)
            solution = sol.strip() if isinstance(sol, str) and sol.strip() else None
        # answer
        if fm.answer not in obj and not (fm.gold_style == "math" and solution):
            return Reject(
                rec.line, "missing_field", f"no {fm.answer!r} key", rec.raw, field=fm.answer, id=rid
            )
        raw_answer = obj.get(fm.answer)
        if raw_answer is None and fm.gold_style != "math":
            return Reject(rec.line, "empty_field", f"{fm.answer!r} is null", rec.raw, field=fm.answer, id=rid)
        if isinstance(raw_answer, str) and not raw_answer.strip() and fm.gold_style != "math":
            return Reject(
                rec.line, "empty_field", f"{fm.answer!r} is empty", rec.raw, field=fm.answer, id=rid
            )
        gold = normalise_gold(raw_answer, fm.gold_style, solution)
        if gold is None:
            if raw_answer is None or (isinstance(raw_answer, str) and not raw_answer.strip()):
                return Reject(
                    rec.line,
                    "empty_field",
                    f"{fm.answer!r} is empty and no \\boxed{{}} in the solution",
                    rec.raw,
                    field=fm.answer,
                    id=rid,
                )
            what = (
                "no '#### N' line, which this file's answers use (end the answer with '#### N')"
                if fm.gold_style == "gsm8k"
                else "no answer could be read"
            )
            return Reject(
                rec.line, "unparsable_answer", f"{fm.answer!r}: {what}", rec.raw, field=fm.answer, id=rid
            )
        if solution is None and isinstance(raw_answer, str) and raw_answer.strip() != gold:
            solution = raw_answer.strip()  # GSM8K-style: the answer field is a worked solution
        level = parse_level(obj.get(fm.level)) if fm.level else None
        # duplicates
        if rid is None:
            rid = f"{self.source.name}-{rec.line}"
        key = question_key(question)
        if key in self.seen_questions:
            return Reject(
                rec.line,
                "duplicate",
                f"same question as line {self.seen_questions[key]}",
                rec.raw,
                field=q_names[-1],
                id=rid,
            )
        if rid in self.seen_ids:
            return Reject(
                rec.line,
                "duplicate",
                f"id {rid!r} already used at line {self.seen_ids[rid]}",
                rec.raw,
                field=fm.id,
                id=rid,
            )
        self.seen_questions[key] = rec.line
        self.seen_ids[rid] = rec.line
        return Row(id=rid, line=rec.line, question=question, answer=gold, solution=solution, level=level)


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

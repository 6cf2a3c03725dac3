"""Where a dataset comes from and how its records are read: ``resolve_source`` then ``read_records``.

A source is a bundled name (``arith``, ``arith-test``), a known name (``gsm8k``, ``gsm8k-test``, ``math``,
``math500``, ``svamp``), a local file (``.jsonl``, ``.json``, ``.parquet``, ``.csv``) or
``hf:owner/name[:split]`` loaded with ``datasets.load_dataset``. Known names resolve to files under a data
directory (``--data-dir``, else ``$SBLITE_DATA``, else a ``../shared/data`` next to the working directory or
the repository) and to the hub otherwise.

This module owns resolution and reading only: each input record becomes a ``RawRecord`` (its 1-based
line/record number, a raw preview, and the parsed object or why it could not be parsed). It must not map
fields, validate rows or normalise answers (``sblite.data.fields`` does), and it must not import the model
stack; ``pyarrow`` and ``datasets`` load inside the functions that read parquet and the hub.

Problems with the source as a whole raise ``SourceError`` with one line saying what to fix (the CLI exits 2
with it). Whole-file problems a new user meets first are named as such rather than surfacing later as a
missing column: a file that is not UTF-8 (with line, byte offset, the offending byte and an ``iconv``
command; in JSONL a few stray bytes are per-line ``non_utf8`` records, but when at least half the lines are
not UTF-8 the file is in another encoding and reading stops), an empty file (0 bytes, blank lines only, a
CSV header without rows, ``[]``), and a file where no record could be read at all.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass
class RawRecord:
    """One input record before validation: its 1-based number, raw text preview, and the parsed object or
    the reason it could not be parsed."""

    line: int
    raw: str
    obj: Any = None
    error: tuple[str, str] | None = None  # (reason, detail)


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
            raise SourceError(
                f"--dataset {spec}: {path} is missing; regenerate it: python -m sblite.data.synthetic"
            )
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

"""Dataset sources: name/file resolution, field mapping, gold normalisation and per-row rejects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sblite.data.sources import (
    Row,
    SourceError,
    Validator,
    collect_columns,
    normalise_gold,
    parse_level,
    read_records,
    resolve_fields,
    resolve_source,
)

FIX = Path(__file__).parent / "fixtures"


def _validate(spec: str, **kw):
    src = resolve_source(spec)
    recs = list(read_records(src))
    fields = resolve_fields(src, collect_columns(recs), **kw)
    v = Validator(src, fields)
    return recs, [v(r) for r in recs]


@pytest.mark.parametrize(
    ("value", "style", "solution", "expected"),
    [
        ("Natalia sold 48/2 = 24.\n#### 72", "gsm8k", None, "72"),
        ("#### 1,000", "gsm8k", None, "1000"),
        ("72", "gsm8k", None, None),  # a GSM8K answer must have '#### N'
        ("\\frac{3}{4}", "math", None, "\\frac{3}{4}"),
        ("", "math", "so $\\boxed{9}$", "9"),
        (None, "math", "no box here", None),
        (51.0, "auto", None, "51"),
        (4.5, "auto", None, "4.5"),
        (True, "auto", None, None),
        ("$x+1$", "auto", None, "x+1"),
        (["2"], "auto", None, "2"),
        (["1", "3"], "auto", None, "1, 3"),
        ({"a": 1}, "auto", None, None),
        (float("nan"), "auto", None, None),
    ],
)
def test_normalise_gold(value, style, solution, expected):
    assert normalise_gold(value, style, solution) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3), ("Level 4", 4), ("2", 2), ("Level ?", None), (None, None), (True, None), (2.0, 2)],
)
def test_parse_level(value, expected):
    assert parse_level(value) == expected


def test_mixed_file_every_record_is_accounted_for():
    recs, results = _validate(str(FIX / "mixed.jsonl"))
    by_line = {r.line: r for r in results}
    assert 8 not in by_line  # the blank line is layout, not a record
    assert len(results) == 13
    rows = {r.line: r for r in results if isinstance(r, Row)}
    assert sorted(rows) == [1, 12, 13]
    assert rows[1].answer == "4" and rows[12].answer == "4.5" and rows[12].level == 2
    assert rows[13].answer == "42"
    assert rows[1].solution == "2 + 2 = 4\n#### 4"  # a GSM8K-style answer doubles as the solution
    reasons = {r.line: (r.reason, r.field) for r in results if not isinstance(r, Row)}
    assert reasons == {
        2: ("bad_json", None),
        3: ("missing_field", "question"),
        4: ("empty_field", "question"),
        5: ("unparsable_answer", "answer"),
        6: ("duplicate", "question"),
        7: ("non_utf8", None),
        9: ("not_an_object", None),
        10: ("bad_type", "question"),
        11: ("empty_field", "answer"),
        14: ("missing_field", "answer"),
    }
    rej7 = by_line[7]
    assert "caf" in rej7.raw and rej7.detail.startswith("invalid UTF-8")


def test_math_style_fields_and_levels(tmp_path):
    _, results = _validate(str(FIX / "math_mini.jsonl"))
    assert all(isinstance(r, Row) for r in results)
    assert [r.level for r in results] == [1, 2, 3, 5, None]
    assert results[4].answer == "9"  # empty answer field: the last \boxed{} of the solution
    assert results[0].id == "m/1"  # unique_id is picked up as the id


def test_csv_with_field_autodetection():
    _, results = _validate(str(FIX / "mini.csv"))
    assert [getattr(r, "answer", None) for r in results[:2]] == ["11", "6"]
    assert results[0].solution == "5 + 6 = 11."
    assert results[2].reason == "empty_field" and results[2].line == 3


def test_parquet_and_json_array(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"problem": ["1+1?", "2+2?"], "answer": ["2", "4"], "level": [1, 2]}), tmp_path / "d.parquet"
    )
    _, results = _validate(str(tmp_path / "d.parquet"))
    assert [(r.answer, r.level) for r in results] == [("2", 1), ("4", 2)]
    (tmp_path / "svamp.json").write_text(
        json.dumps(
            [
                {
                    "ID": "a-1",
                    "Body": "Ann has 3 pens.",
                    "Question": "She buys 2 more; how many now?",
                    "Answer": 5.0,
                },
            ]
        )
    )
    _, results = _validate(str(tmp_path / "svamp.json"))
    assert results[0].question == "Ann has 3 pens. She buys 2 more; how many now?"
    assert results[0].answer == "5" and results[0].id == "a-1"


def test_explicit_fields_and_missing_column():
    _, results = _validate(str(FIX / "mini.csv"), question_field="prompt", answer_field="target")
    assert results[0].question == "What is 5 + 6?"
    with pytest.raises(SourceError, match="column 'nope' not found.*--question-field"):
        _validate(str(FIX / "mini.csv"), question_field="nope")


def test_resolve_known_names(tmp_path, monkeypatch):
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "train.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n')
    src = resolve_source("gsm8k", tmp_path)
    assert src.path == (tmp_path / "gsm8k" / "train.jsonl").resolve() and src.kind == "gsm8k"
    monkeypatch.setenv("SBLITE_DATA", str(tmp_path))
    assert resolve_source("gsm8k").path == src.path
    with pytest.raises(SourceError, match="not found"):
        resolve_source("math", tmp_path)
    monkeypatch.delenv("SBLITE_DATA")
    monkeypatch.setattr("sblite.data.sources.default_data_dirs", lambda: [tmp_path / "nowhere"])
    hub = resolve_source("gsm8k")
    assert hub.path is None and hub.hub == ("openai/gsm8k", "main", "train")


@pytest.mark.parametrize("spec", ["gsm9k", "nothing.txt", "hf:", "hf:bad name"])
def test_resolve_errors(spec, tmp_path):
    with pytest.raises(SourceError):
        resolve_source(spec)


def test_hf_spec_parsing():
    src = resolve_source("hf:owner/name:test")
    assert src.hub == ("owner/name", None, "test") and src.name == "name"
    assert resolve_source("hf:owner/name").hub == ("owner/name", None, "train")


def test_shared_data_sources_resolve(shared_data):
    for name in ("gsm8k", "gsm8k-test", "math", "math500", "svamp"):
        assert resolve_source(name, shared_data).path.is_file()

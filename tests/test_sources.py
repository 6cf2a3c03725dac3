"""Dataset sources: name/file resolution, field mapping, gold normalisation and per-row rejects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sblite.data.fields import Row, Validator, collect_columns, normalise_gold, parse_level, resolve_fields
from sblite.data.readers import SourceError, read_records, resolve_source

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


def test_load_rows_accounts_for_every_record_read():
    from sblite.data.rows import load_rows

    full = load_rows(str(FIX / "mixed.jsonl"))
    assert (full.read, len(full.rows), len(full.rejects)) == (13, 3, 10)
    assert [r.line for r in full.rows] == [1, 12, 13] and full.fields.question == "question"
    # --limit (prepare) counts records read, kept or not; max_rows (eval --limit) counts rows kept
    first5 = load_rows(str(FIX / "mixed.jsonl"), limit=5)
    assert (first5.read, len(first5.rows), len(first5.rejects)) == (5, 1, 4)
    two = load_rows(str(FIX / "mixed.jsonl"), max_rows=2)
    assert (two.read, [r.line for r in two.rows], len(two.rejects)) == (11, [1, 12], 9)  # line 8 is blank
    with pytest.raises(SourceError, match="column 'nope' not found"):
        load_rows(str(FIX / "mixed.jsonl"), question_field="nope")


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
    monkeypatch.setattr("sblite.data.readers.default_data_dirs", lambda: [tmp_path / "nowhere"])
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


# ------------------------------------------------------------------- input files, tried as a new user would

LATIN1_ROWS = [
    {"question": "Combien font 2 + 2 ? Réponse en chiffres.", "answer": "4"},
    {"question": "Et 3 + 3, café compris ?", "answer": "6"},
]


def _write_latin1(path: Path) -> Path:
    """``LATIN1_ROWS`` as a user's spreadsheet export would save them: Latin-1, not UTF-8."""
    if path.suffix == ".jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in LATIN1_ROWS)
    elif path.suffix == ".json":
        text = json.dumps(LATIN1_ROWS, ensure_ascii=False)
    else:
        text = "question,answer\n" + "".join(f'"{r["question"]}",{r["answer"]}\n' for r in LATIN1_ROWS)
    path.write_bytes(text.encode("latin1"))
    return path


@pytest.mark.parametrize(("name", "line"), [("fr.jsonl", 1), ("fr.json", 1), ("fr.csv", 2)])
def test_latin1_file_is_named_not_utf8_with_line_byte_and_fix(tmp_path, name, line):
    path = _write_latin1(tmp_path / name)
    offset = path.read_bytes().index(b"\xe9")
    with pytest.raises(SourceError) as info:
        _validate(str(path))
    msg = str(info.value)
    assert msg.startswith(f"{path}:{line}: not UTF-8"), msg
    assert f"byte 0xE9 at offset {offset}" in msg
    assert f"iconv -f latin1 -t utf-8 {path} > {tmp_path / ('fr.utf8' + path.suffix)}" in msg
    assert "column" not in msg.split(";")[0] and "\n" not in msg


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [
        ("utf-16", r"win\.jsonl:1: not UTF-8: byte 0xFF at offset 0 .*iconv -f utf-16 -t utf-8"),
        ("utf-16-le", r"win\.jsonl:1: not UTF-8: byte 0x00 at offset 1 .*iconv -f utf-16le -t utf-8"),
    ],
    ids=["with-bom", "no-bom"],
)
def test_utf16_jsonl_is_named_utf16(tmp_path, encoding, expected):
    """What PowerShell's ``>`` writes; without a byte-order mark it is valid UTF-8 full of NUL bytes."""
    path = tmp_path / "win.jsonl"
    path.write_bytes("".join(json.dumps(r) + "\n" for r in LATIN1_ROWS).encode(encoding))
    with pytest.raises(SourceError, match=expected):
        _validate(str(path))


def test_a_few_stray_bytes_in_jsonl_stay_per_line_rejects(tmp_path):
    path = tmp_path / "few.jsonl"
    lines = [json.dumps({"question": f"What is {i} + 1?", "answer": str(i + 1)}).encode() for i in range(3)]
    lines.insert(1, '{"question": "Et café ?", "answer": "1"}'.encode("latin1"))
    path.write_bytes(b"\n".join(lines) + b"\n")
    _, results = _validate(str(path))
    rejects = [r for r in results if not isinstance(r, Row)]
    assert len(results) == 4 and [(r.line, r.reason) for r in rejects] == [(2, "non_utf8")]
    assert rejects[0].detail.startswith("invalid UTF-8 byte 0xE9") and "iconv -f latin1" in rejects[0].detail


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("e.jsonl", b"", "the file is empty (0 bytes); give it one JSON record per line"),
        ("e.jsonl", b"\n  \n\r\n", "no records, only blank lines (6 bytes)"),
        ("e.json", b"", "the file is empty (0 bytes); give it a JSON array of records"),
        ("e.json", b" [ ] ", "empty JSON array (no records)"),
        ("e.csv", b"", "the file is empty (0 bytes); give it a header row"),
        ("e.csv", b"\n \n", "no records, only blank lines"),
        ("e.csv", b"question,answer\n", "has a header row (question, answer) but no data rows"),
    ],
)
def test_empty_file_is_named_empty(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(SourceError) as info:
        _validate(str(path))
    assert str(info.value).startswith(f"{path}: ") and expected in str(info.value), str(info.value)
    assert "not found" not in str(info.value)


def test_parquet_without_rows_is_named_empty(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "none.parquet"
    pq.write_table(
        pa.table({"question": pa.array([], pa.string()), "answer": pa.array([], pa.string())}), path
    )
    with pytest.raises(
        SourceError, match=r"none\.parquet: the table has no rows; give it one row per question"
    ):
        _validate(str(path))


def test_file_with_no_readable_record_names_the_first_problem(tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text("question: What is 2 + 2?\nanswer: 4\n")
    with pytest.raises(
        SourceError, match=r"notes\.jsonl:1: none of its 2 records could be read \(first: bad_json"
    ):
        _validate(str(path))


def _gsm_style(tmp_path: Path, n_marked: int, plain: list[str]) -> Path:
    path = tmp_path / "word.jsonl"
    rows = [
        {
            "question": f"Tom has {i} apples and buys 1. How many?",
            "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}",
        }
        for i in range(n_marked)
    ]
    rows += [{"question": f"Plain question {j}?", "answer": a} for j, a in enumerate(plain)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_gsm8k_style_file_rejects_a_row_without_hashes(tmp_path):
    path = _gsm_style(tmp_path, 3, ["She has 5 apples and eats 2, so 3 are left."])
    _, results = _validate(str(path))
    assert [r.answer for r in results[:3]] == ["1", "2", "3"]
    bad = results[3]
    assert not isinstance(bad, Row)
    assert (bad.line, bad.reason, bad.field) == (4, "unparsable_answer", "answer")
    assert "no '#### N' line" in bad.detail


def test_mixed_file_with_few_hashes_is_read_row_by_row(tmp_path):
    path = _gsm_style(
        tmp_path, 1, ["7", "\\boxed{9}", "x + 1"]
    )  # 1 of 4 answers uses '####': not GSM8K-style
    _, results = _validate(str(path))
    assert [r.answer for r in results] == ["1", "7", "9", "x + 1"]


def test_gsm8k_style_reject_reaches_prepare_report(tmp_path, tiny_tokenizer):
    from sblite.data.prepare import PrepareOptions, run_prepare

    path = _gsm_style(tmp_path, 3, ["She has 5 apples and eats 2, so 3 are left."])
    out = tmp_path / "o"
    run_prepare(PrepareOptions(dataset=str(path), out=str(out)), tokenizer=tiny_tokenizer)
    report = json.loads((out / "report.json").read_text())
    counts = report["counts"]
    assert (counts["read"], counts["kept"], counts["rejected"]) == (4, 3, 1)
    assert counts["rejects_by_reason"] == {"unparsable_answer": 1}
    assert report["provenance"]["fields"]["gold_style"] == "gsm8k"
    (reject,) = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert (reject["line"], reject["reason"], reject["field"]) == (4, "unparsable_answer", "answer")


@pytest.mark.parametrize("command", ["prepare", "eval"])
def test_cli_shows_one_red_line_and_exit_2_for_bad_input_files(tmp_path, command):
    from typer.testing import CliRunner

    from sblite.cli import app

    cases = {"fr.jsonl": "not UTF-8", "empty.jsonl": "the file is empty (0 bytes)"}
    _write_latin1(tmp_path / "fr.jsonl")
    (tmp_path / "empty.jsonl").write_bytes(b"")
    for name, expected in cases.items():
        args = [command, "--dataset", str(tmp_path / name), "--out", str(tmp_path / f"out-{command}-{name}")]
        args += ["--tokenizer", "/no/such/tok"] if command == "prepare" else ["--model", "/no/such/model"]
        result = CliRunner().invoke(app, args)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2, result.output
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.output
        assert "Traceback" not in result.output

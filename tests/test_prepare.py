"""``sblite prepare``: output contract, budgets, every input row accounted for, errors, sampling and resume."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sblite.cli import app
from sblite.data.prepare import PrepareError, PrepareOptions, run_prepare
from sblite.data.prepared import read_jsonl
from sblite.generate.batch import Generation
from sblite.protocol import (
    BRIEF_SYSTEM_PROMPT,
    count_solution_tokens,
    encode_completion,
    extract_boxed,
    parse_completion,
)

FIX = Path(__file__).parent / "fixtures"
runner = CliRunner()
SFT_KEYS = {"id", "source", "question", "answer", "completion", "b_max", "level", "difficulty"}
GRPO_KEYS = {"id", "source", "question", "answer", "b_max", "level", "difficulty"}


def _check_budgets(rows, tok):
    for r in rows:
        p = parse_completion(r["completion"])
        assert p.ok, r["completion"]
        assert p.budget == r["b_max"]
        ids = encode_completion(tok, r["completion"])  # the ids SFT trains on
        assert count_solution_tokens(ids, tok) == r["b_max"]  # the measure training and eval use
        assert extract_boxed(p.solution) is not None


def test_reference_mode_contract(tmp_path, tiny_tokenizer):
    res = run_prepare(
        PrepareOptions(dataset=str(FIX / "arith.jsonl"), out=str(tmp_path / "o")), tokenizer=tiny_tokenizer
    )
    sft, grpo = read_jsonl(tmp_path / "o" / "sft.jsonl"), read_jsonl(tmp_path / "o" / "grpo.jsonl")
    assert len(sft) == len(grpo) == 40 and res.sft == 40
    assert all(set(r) == SFT_KEYS for r in sft) and all(set(r) == GRPO_KEYS for r in grpo)
    _check_budgets(sft, tiny_tokenizer)
    first = sft[0]
    assert "<<" not in first["completion"]  # GSM8K calculator annotations are dropped
    assert first["completion"].endswith(f"The answer is \\boxed{{{first['answer']}}}.</solution>")
    assert all(r["level"] is None and 0.0 <= r["difficulty"] <= 1.0 for r in grpo)
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["counts"]["read"] == report["counts"]["kept"] + report["counts"]["rejected"] == 40
    prov = report["provenance"]
    assert prov["labels"] == "reference" and len(prov["input_sha256"]) == 64
    assert prov["versions"]["transformers"] and "math-verify" in prov["versions"]
    assert not list((tmp_path / "o").glob(".*.tmp"))  # atomic writes leave no temp files


def test_math_levels_and_difficulty(tmp_path, tiny_tokenizer):
    run_prepare(
        PrepareOptions(dataset=str(FIX / "math_mini.jsonl"), out=str(tmp_path)), tokenizer=tiny_tokenizer
    )
    rows = read_jsonl(tmp_path / "sft.jsonl")
    _check_budgets(rows, tiny_tokenizer)
    assert [r["level"] for r in rows] == [1, 2, 3, 5, None]
    assert [r["difficulty"] for r in rows[:4]] == [0.0, 0.25, 0.5, 1.0]
    assert rows[4]["answer"] == "9" and rows[4]["difficulty"] == 0.5
    by_level = json.loads((tmp_path / "report.json").read_text())["by_level"]
    assert [g["group"] for g in by_level] == [1, 2, 3, 5, None]
    assert all(g["budget"]["p50"] is not None for g in by_level)


def test_mixed_file_fully_accounted_for_via_cli(tmp_path, tiny_model_dir):
    out = tmp_path / "o"
    r = runner.invoke(
        app,
        [
            "prepare",
            "--dataset",
            str(FIX / "mixed.jsonl"),
            "--tokenizer",
            str(tiny_model_dir),
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    kept = read_jsonl(out / "grpo.jsonl")
    rejects = read_jsonl(out / "rejects.jsonl")
    report = json.loads((out / "report.json").read_text())
    c = report["counts"]
    assert c["read"] == c["kept"] + c["rejected"] == 13 and c["kept"] == len(kept) == 3
    record_lines = [
        i for i, line in enumerate((FIX / "mixed.jsonl").read_bytes().split(b"\n"), 1) if line.strip()
    ]
    kept_lines = [int(k["id"].rsplit("-", 1)[1]) for k in kept]
    assert sorted(kept_lines + [rj["line"] for rj in rejects]) == record_lines  # each record exactly once
    assert all({"line", "field", "reason", "detail", "raw"} <= set(rj) for rj in rejects)
    assert c["rejects_by_reason"] == {
        "bad_json": 1,
        "bad_type": 1,
        "duplicate": 1,
        "empty_field": 2,
        "missing_field": 2,
        "non_utf8": 1,
        "not_an_object": 1,
        "unparsable_answer": 1,
    }
    assert "rejects by reason" in r.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "gsm9k"], "unknown dataset"),
        (["--dataset", "missing.jsonl"], "no such file"),
        (["--dataset", str(FIX / "mini.csv"), "--question-field", "nope"], "column 'nope' not found"),
        (["--dataset", str(FIX / "arith.jsonl"), "--labels", "guess"], "choose reference or sample"),
        (
            ["--dataset", str(FIX / "arith.jsonl"), "--tokenizer", "/no/such/tokenizer"],
            "cannot load tokenizer",
        ),
        (["--dataset", str(FIX / "arith.jsonl"), "--labels", "sample"], "needs --model"),
        (["--dataset", "hf:someone/nothing-here"], "cannot load someone/nothing-here"),
    ],
)
def test_cli_errors_are_one_line_exit_2(tmp_path, tiny_model_dir, args, message):
    extra = [] if "--tokenizer" in args else ["--tokenizer", str(tiny_model_dir)]
    r = runner.invoke(app, ["prepare", *args, *extra, "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "o" / "report.json").exists()


def test_refuses_non_empty_out_without_force(tmp_path, tiny_tokenizer):
    (tmp_path / "keep.txt").write_text("mine")
    opts = PrepareOptions(dataset=str(FIX / "math_mini.jsonl"), out=str(tmp_path))
    with pytest.raises(PrepareError, match="--force"):
        run_prepare(opts, tokenizer=tiny_tokenizer)
    opts.force = True
    run_prepare(opts, tokenizer=tiny_tokenizer)
    assert (tmp_path / "report.json").is_file()


# ------------------------------------------------------------------------------------------- sample mode


def _stub_generate(responses):
    """A generator double: question text → its k (text, finish_reason) responses."""
    calls = []

    def generate(prompts, seed):
        calls.append(len(prompts))
        out = []
        for p in prompts:
            q = next(q for q in responses if q in p)
            out.append([Generation(t, (), len(t.split()), f) for t, f in responses[q]])
        return out

    generate.calls = calls
    return generate


def test_sample_mode_labels_with_stub_generator(tmp_path, tiny_tokenizer):
    responses = {
        "What is 4 + 9?": [
            ("4 + 9 = 13. So \\boxed{13}", "stop"),
            ("It is 13", "stop"),  # no \boxed: appended
            ("\\boxed{12}", "stop"),
            ("4 + 9 = 13 ... 13 13 13 13 13", "length"),
        ],
        "What is 3 + 6?": [("\\boxed{8}", "stop")] * 4,
        "What is 2 + 2?": [("\\boxed{} so 4", "stop")] * 4,  # an empty \boxed{} gets the answer appended
    }
    src = tmp_path / "two.jsonl"
    src.write_text(
        "".join(
            json.dumps({"question": q, "answer": "#### " + a}) + "\n"
            for q, a in (("What is 4 + 9?", "13"), ("What is 3 + 6?", "9"), ("What is 2 + 2?", "4"))
        )
    )
    gen = _stub_generate(responses)
    run_prepare(
        PrepareOptions(dataset=str(src), out=str(tmp_path / "o"), labels="sample", k=4),
        generate=gen,
        tokenizer=tiny_tokenizer,
    )
    sft = read_jsonl(tmp_path / "o" / "sft.jsonl")
    grpo = read_jsonl(tmp_path / "o" / "grpo.jsonl")
    assert [r["id"] for r in sft] == ["two-1", "two-3"] and len(grpo) == 3
    assert sft[1]["completion"].endswith("\\boxed{} so 4 The answer is \\boxed{4}.</solution>")
    row = sft[0]
    assert row["pass_rate"] == 0.5 and row["k"] == 4 and row["difficulty"] == 0.5
    assert row["lengths"][3] is None  # cut at max_new_tokens: length unknown, and never correct
    p = parse_completion(row["completion"])
    assert p.ok and p.solution == "It is 13 The answer is \\boxed{13}."  # shortest correct, boxed appended
    assert row["b_max"] == min(row["lengths"][:2]) == p.budget
    _check_budgets(sft, tiny_tokenizer)
    assert grpo[1]["b_max"] == math.inf and grpo[1]["pass_rate"] == 0.0 and grpo[1]["difficulty"] == 1.0
    written = (tmp_path / "o" / "grpo.jsonl").read_text().splitlines()
    assert json.loads(written[1])["b_max"] is None  # no correct response: written null, read as no cap
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["counts"]["no_correct_response"] == 1 and report["by_level"][0]["pass_rate"] == 0.5
    # a second run with the same arguments is served from the cache
    gen2 = _stub_generate(responses)
    run_prepare(
        PrepareOptions(dataset=str(src), out=str(tmp_path / "o"), labels="sample", k=4, force=True),
        generate=gen2,
        tokenizer=tiny_tokenizer,
    )
    assert gen2.calls == [] and read_jsonl(tmp_path / "o" / "sft.jsonl") == sft


def test_styles_and_all_targets_teach_several_budgets_per_question(tmp_path, tiny_tokenizer):
    """Two instructions × k samples, pooled; every distinct correct answer is an SFT row with its own budget."""
    plain = [("4 + 9 is 13 because four plus nine makes thirteen, \\boxed{13}", "stop"), ("\\boxed{12}", "stop")]
    brief = [("\\boxed{13}", "stop"), ("\\boxed{13}", "stop")]  # a duplicate is one target, not two
    calls = []

    def generate(prompts, seed):
        calls.append(len(prompts))
        out = []
        for p in prompts:
            if "What is 4 + 9?" not in p:
                out.append([Generation("\\boxed{0}", (), 2, "stop")] * 2)
                continue
            pairs = brief if BRIEF_SYSTEM_PROMPT in p else plain
            out.append([Generation(t, (), len(t.split()), f) for t, f in pairs])
        return out

    src = tmp_path / "q.jsonl"
    src.write_text(json.dumps({"question": "What is 4 + 9?", "answer": "13"}) + "\n"
                   + json.dumps({"question": "What is 1 + 1?", "answer": "2"}) + "\n")
    opts = PrepareOptions(dataset=str(src), out=str(tmp_path / "o"), labels="sample", k=2,
                          styles=("plain", "brief"), targets="all")
    run_prepare(opts, generate=generate, tokenizer=tiny_tokenizer)
    sft = read_jsonl(tmp_path / "o" / "sft.jsonl")
    assert len(calls) == 2  # one batch per style
    budgets = [parse_completion(r["completion"]).budget for r in sft]
    assert [r["id"] for r in sft] == ["q-1", "q-1"] and budgets == sorted(budgets) and budgets[0] < budgets[1]
    assert sft[0]["b_max"] == budgets[0] and sft[0]["k"] == 4 and sft[0]["pass_rate"] == 0.75
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["counts"]["sft"] == 2 and report["counts"]["sft_questions"] == 1
    assert report["provenance"]["styles"] == ["plain", "brief"] and len(report["provenance"]["sample_caches"]) == 2
    for r, b in zip(sft, budgets, strict=True):  # each row carries its own length, measured as training does
        assert count_solution_tokens(tiny_tokenizer.encode(r["completion"], add_special_tokens=False), tiny_tokenizer) == b
    # the default keeps one (the shortest) target per question, from the same cached samples
    calls.clear()
    opts.targets, opts.force = "shortest", True
    run_prepare(opts, generate=generate, tokenizer=tiny_tokenizer)
    one = read_jsonl(tmp_path / "o" / "sft.jsonl")
    assert calls == [] and len(one) == 1 and one[0]["completion"] == sft[0]["completion"]


@pytest.mark.parametrize(
    ("change", "message"), [({"styles": ("plain", "chatty")}, "--styles plain,chatty"), ({"targets": "best"}, "--targets")]
)
def test_bad_styles_or_targets_are_named(tmp_path, tiny_tokenizer, change, message):
    opts = PrepareOptions(dataset=str(FIX / "arith.jsonl"), out=str(tmp_path / "o"), labels="sample", **change)
    with pytest.raises(PrepareError, match=message):
        run_prepare(opts, generate=lambda p, s: [], tokenizer=tiny_tokenizer)


def _cached_ids(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["id"] for line in f if line.strip().endswith("}")]


def _prepare_cmd(out, *extra):
    return [
        sys.executable,
        "-m",
        "sblite.cli",
        "prepare",
        "--dataset",
        str(FIX / "arith.jsonl"),
        "--labels",
        "sample",
        "--model",
        "builtin:tiny-random",
        "-k",
        "2",
        "--max-new-tokens",
        "96",
        "--batch-size",
        "1",
        "--out",
        str(out),
        *extra,
    ]


@pytest.mark.slow
def test_sample_mode_end_to_end_resumes_after_kill(tmp_path, tiny_model_dir):
    """A real run on the tiny model, SIGKILLed after a few questions are cached, then restarted: the restart
    generates only what is missing and ends with the same files as an uninterrupted run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_prepare_cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    cached = 0
    while time.time() < deadline and proc.poll() is None:
        files = list((killed / ".cache").glob("samples-*.jsonl"))
        cached = len(_cached_ids(files[0])) if files else 0
        if cached >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "report.json").exists()
    cache_file = next((killed / ".cache").glob("samples-*.jsonl"))
    before = _cached_ids(cache_file)
    assert 3 <= len(before) < 40

    done = subprocess.run(_prepare_cmd(killed), env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    after = _cached_ids(cache_file)
    assert after[: len(before)] == before and len(after) == 40 and len(set(after)) == 40  # nothing redone

    fresh = tmp_path / "fresh"
    full = subprocess.run(_prepare_cmd(fresh), env=env, capture_output=True, text=True, timeout=120)
    assert full.returncode == 0, full.stderr[-2000:]
    for name in ("sft.jsonl", "grpo.jsonl", "rejects.jsonl"):
        assert (killed / name).read_text() == (fresh / name).read_text(), name
    report = json.loads((killed / "report.json").read_text())
    assert report["counts"]["grpo"] == 40 and report["provenance"]["engine"] == "hf-compact"
    rows = read_jsonl(killed / "grpo.jsonl")
    assert all(len(r["lengths"]) == 2 and r["k"] == 2 for r in rows)


def test_prepared_questions_reject_lines_without_question_or_answer(tmp_path):
    from sblite.data.prepared import PreparedDataError, read_questions

    (tmp_path / "grpo.jsonl").write_text(
        '{"id": "a", "question": "q", "answer": "1", "b_max": null}\n\n{"id": "b", "question": ""}\n'
    )
    rows, rejects = read_questions(tmp_path)
    assert [r["id"] for r in rows] == ["a"] and rows[0]["b_max"] is None  # asking needs no budget cap
    assert rejects == [{"line": 3, "id": "b", "field": "question", "reason": "missing_field",
                        "detail": f"{tmp_path / 'grpo.jsonl'}:3: no 'question'"}]  # fmt: skip
    (tmp_path / "grpo.jsonl").write_text('{"question": "q", "answer": "1"}\nnot json\n')
    with pytest.raises(PreparedDataError, match=r"grpo\.jsonl:2: not JSON"):
        read_questions(tmp_path)
    with pytest.raises(PreparedDataError, match=r"no grpo\.jsonl"):
        read_questions(tmp_path / "missing")


# ------------------------------------------------------------------------------------------- real data (CI)


def test_shared_gsm8k_and_math_reference(tmp_path, shared_data):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(shared_data / "tokenizers" / "qwen2")
    res = run_prepare(
        PrepareOptions(dataset="gsm8k", out=str(tmp_path / "g"), data_dir=str(shared_data), limit=200),
        tokenizer=tok,
    )
    assert res.report["counts"]["kept"] == 200 and res.sft == 200
    _check_budgets(read_jsonl(tmp_path / "g" / "sft.jsonl")[:20], tok)
    res = run_prepare(
        PrepareOptions(dataset="math500", out=str(tmp_path / "m"), data_dir=str(shared_data)), tokenizer=tok
    )
    med = {g["group"]: g["budget"]["p50"] for g in res.report["by_level"]}
    assert med[1] < med[3] < med[5]  # budgets grow with MATH level


def test_renderings_add_prefilled_rows_each_labelled_with_its_length(tmp_path, tiny_tokenizer):
    """``--renderings``: every worked solution said at each level becomes a pre-filled SFT row whose budget is
    its own length; a row whose solution cannot be re-rendered keeps its ordinary row and is counted."""
    bundled = (Path(__file__).resolve().parents[1] / "data" / "arith" / "train.jsonl").read_text().splitlines()
    odd = {"question": "What is 2 + 2?", "answer": "4", "solution": "Two and two make \\boxed{4}.", "id": "odd"}
    src = tmp_path / "q.jsonl"
    src.write_text("\n".join([*bundled[:3], json.dumps(odd)]) + "\n")
    levels = ("answer", "stated", "checked")
    result = run_prepare(PrepareOptions(dataset=str(src), out=str(tmp_path / "o"), renderings=levels),
                         tokenizer=tiny_tokenizer)  # fmt: skip
    sft = read_jsonl(tmp_path / "o" / "sft.jsonl")
    rendered = [r for r in sft if r.get("prefilled")]
    assert len(sft) == 4 + 3 * len(levels) == result.sft and len(rendered) == 3 * len(levels)
    assert [r["rendering"] for r in rendered] == list(levels) * 3 and "odd" not in {r["id"] for r in rendered}
    for r in rendered:
        budget = parse_completion(r["completion"]).budget
        ids = encode_completion(tiny_tokenizer, r["completion"])
        assert count_solution_tokens(ids, tiny_tokenizer) == budget
        assert parse_completion(r["completion"]).answer == r["answer"]
    per_question = [[parse_completion(r["completion"]).budget for r in rendered[i : i + 3]] for i in (0, 3, 6)]
    assert all(b == sorted(b) and b[0] < b[-1] for b in per_question)
    report = json.loads((tmp_path / "o" / "report.json").read_text())["renderings"]
    assert report["questions"] == 3 and report["rows"] == 9 and report["skipped"] == 1
    assert report["skipped_rows"][0]["id"] == "odd" and report["skipped_rows"][0]["line"] == 4


def test_self_renderings_train_their_budget_and_the_rest_stay_prefilled(tmp_path, tiny_tokenizer):
    """``--self-renderings``: those renderings are written as self rows (budget trained), in the same place and
    with the same completion as the pre-filled row they replace; the others stay pre-filled."""
    bundled = (Path(__file__).resolve().parents[1] / "data" / "arith" / "train.jsonl").read_text().splitlines()
    src = tmp_path / "q.jsonl"
    src.write_text("\n".join(bundled[:3]) + "\n")
    levels = ("short", "reference", "checked")

    def rendered(out: str, own: tuple[str, ...]) -> list[dict]:
        run_prepare(PrepareOptions(dataset=str(src), out=str(tmp_path / out), renderings=levels,
                                   self_renderings=own), tokenizer=tiny_tokenizer)  # fmt: skip
        return [r for r in read_jsonl(tmp_path / out / "sft.jsonl") if "rendering" in r]

    plain, own = rendered("all-prefilled", ()), rendered("own", ("reference",))
    assert [r["completion"] for r in own] == [r["completion"] for r in plain] and len(own) == 9
    assert all(r["prefilled"] for r in plain)
    assert [r["prefilled"] for r in own] == [r["rendering"] != "reference" for r in own] and not own[1]["prefilled"]
    assert json.loads((tmp_path / "own" / "report.json").read_text())["renderings"]["self"] == ["reference"]
    with pytest.raises(PrepareError, match="--self-renderings stated: not in --renderings short,reference,checked"):
        run_prepare(PrepareOptions(dataset=str(src), out=str(tmp_path / "bad"), renderings=levels,
                                   self_renderings=("stated",)), tokenizer=tiny_tokenizer)  # fmt: skip


def test_stating_questions_add_self_rows_of_the_records_after_the_limit(tmp_path, tiny_tokenizer):
    """``--stating-questions N``: the N records after the first ``--limit`` give their self renderings only, as
    self rows marked ``stating`` (no other row, no GRPO row); one that cannot be rendered is a reject, and every
    record read is kept or rejected."""
    bundled = (Path(__file__).resolve().parents[1] / "data" / "arith" / "train.jsonl").read_text().splitlines()
    odd = {"question": "What is 2 + 2?", "answer": "4", "solution": "Two and two make \\boxed{4}.", "id": "odd"}
    src = tmp_path / "q.jsonl"
    src.write_text("\n".join([*bundled[:2], "{not json", bundled[2], json.dumps(odd), *bundled[3:8]]) + "\n")
    opts = PrepareOptions(dataset=str(src), out=str(tmp_path / "o"), limit=3, renderings=("short", "reference"),
                          self_renderings=("reference",), stating_questions=4)  # fmt: skip
    result = run_prepare(opts, tokenizer=tiny_tokenizer)
    sft, grpo = read_jsonl(tmp_path / "o" / "sft.jsonl"), read_jsonl(tmp_path / "o" / "grpo.jsonl")
    first = [json.loads(line)["id"] for line in bundled[:2]]
    assert [r["id"] for r in grpo] == first  # the first --limit records (one of them the bad line)
    stating = [r for r in sft if r.get("stating")]
    after = [json.loads(line)["id"] for line in (bundled[2], *bundled[3:5])]  # 4 records: 3 rows and `odd`
    assert [r["id"] for r in stating] == after and len(sft) == 2 * 3 + 3 == result.sft
    assert all(not r["prefilled"] and r["rendering"] == "reference" for r in stating)
    for r in stating:
        assert count_solution_tokens(encode_completion(tiny_tokenizer, r["completion"]), tiny_tokenizer) == \
            parse_completion(r["completion"]).budget
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    counts = report["counts"]
    assert (counts["read"], counts["kept"], counts["rejected"], counts["stating_questions"]) == (7, 5, 2, 3)
    assert counts["rejects_by_reason"]["not_renderable"] == 1 and sum(counts["rejects_by_reason"].values()) == 2
    assert report["renderings"]["stating_questions"] == {"asked": 4, "questions": 3, "rows": 3}
    rejected = read_jsonl(tmp_path / "o" / "rejects.jsonl")
    assert [r["line"] for r in rejected] == [3, 5] and rejected[1]["id"] == "odd"
    with pytest.raises(PrepareError, match="set --limit and --self-renderings"):
        run_prepare(replace(opts, self_renderings=(), out=str(tmp_path / "p")), tokenizer=tiny_tokenizer)
    with pytest.raises(PrepareError, match="has 10 records, none after the first --limit 10"):
        run_prepare(replace(opts, limit=10, out=str(tmp_path / "q")), tokenizer=tiny_tokenizer)


def test_renderings_on_data_without_worked_solutions_is_one_clear_error(tmp_path, tiny_tokenizer):
    opts = PrepareOptions(dataset=str(FIX / "arith.jsonl"), out=str(tmp_path / "o"), renderings=("answer",))
    with pytest.raises(PrepareError, match="--renderings: no row of .* drop the option"):
        run_prepare(opts, tokenizer=tiny_tokenizer)
    opts = PrepareOptions(dataset=str(FIX / "arith.jsonl"), out=str(tmp_path / "p"), renderings=("chatty",))
    with pytest.raises(PrepareError, match="--renderings chatty: choose from answer, short, reference"):
        run_prepare(opts, tokenizer=tiny_tokenizer)

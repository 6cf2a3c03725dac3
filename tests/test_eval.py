"""`sblite eval` and `sblite generate` on the tiny model: outputs, modes, pre-fill, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sblite.cli import app
from sblite.eval.run import EvalError, load_questions, load_records
from sblite.generate.stream import Progress

runner = CliRunner()
QUESTIONS = [
    {"question": "What is 2 + 3?", "answer": "5", "level": 1},
    {"question": "What is 14 + 27?", "answer": "41", "level": 2},
    {"question": "Ann has 3 pens and buys 4 more. How many pens?", "answer": "7", "level": 1},
]


@pytest.fixture()
def questions(tmp_path) -> Path:
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    return path


def _eval(tiny_model_dir, questions, out, *extra):
    args = [
        "eval",
        "--model",
        str(tiny_model_dir),
        "--dataset",
        str(questions),
        "--out",
        str(out),
        "--max-new-tokens",
        "12",
        *extra,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("mode", ["self", "none"])
def test_eval_writes_results_report_and_plots(tiny_model_dir, questions, tmp_path, mode):
    res = _eval(tiny_model_dir, questions, tmp_path / mode, "--mode", mode)
    assert res["mode"] == mode and len(res["records"]) == 3
    rec = res["records"][0]
    assert {"qid", "budget", "length", "correct", "text"} <= set(rec)
    assert res["summary"]["overall"]["n"] == 3 and set(res["summary"]["by_level"]) == {"level 1", "level 2"}
    assert (tmp_path / mode / "report.md").read_text().startswith("# sblite eval")
    assert (tmp_path / mode / "by_level.png").stat().st_size > 1000


def test_prefill_sweep_with_baseline(tiny_model_dir, questions, tmp_path):
    base = _eval(tiny_model_dir, questions, tmp_path / "base", "--mode", "none")
    assert base["summary"]["overall"]["format_rate"] == 0.0
    res = _eval(
        tiny_model_dir,
        questions,
        tmp_path / "sweep",
        "--mode",
        "prefill",
        "--budgets",
        "8,16",
        "--max-new-tokens",  # room for the largest budget (a smaller limit is refused)
        "16",
        "--n-samples",
        "2",
        "--temperature",
        "1.0",
        "--baseline",
        str(tmp_path / "base" / "results.json"),
    )
    assert len(res["records"]) == 3 * 2 * 2
    assert {r["prefill_budget"] for r in res["records"]} == {8, 16}
    assert all(
        r["text"].startswith(f"<budget>{r['prefill_budget']}</budget><solution>") for r in res["records"]
    )
    assert list(res["summary"]["by_prefill_budget"]) == ["8", "16"]
    assert res["summary"]["overall"]["baseline_questions"] == 3
    assert (tmp_path / "sweep" / "prefill_sweep.png").is_file()
    assert (tmp_path / "sweep" / "budget_vs_length.png").is_file()
    assert "Pre-filled budget sweep" in (tmp_path / "sweep" / "report.md").read_text()
    # the frontier the demo and the reproduction draw: baselines as points, the sweep as a curve
    from sblite.eval.plots import plot_frontier

    png = plot_frontier({"base": base["summary"]["overall"]}, {"sweep": res["summary"]}, tmp_path / "f" / "frontier.png",
                        "frontier")  # fmt: skip
    assert png.stat().st_size > 1000


def test_eval_bad_inputs_fail_in_one_line(tiny_model_dir, questions, tmp_path):
    cases = [
        (["--mode", "bogus"], "choose self, prefill or none"),
        (["--mode", "prefill", "--budgets", "a,b"], "comma-separated whole numbers"),
        # a budget the answer cannot reach: every answer would be cut first
        (["--mode", "prefill", "--budgets", "8,64", "--max-new-tokens", "16"], "raise --max-new-tokens to at least 64"),
        (["--baseline", str(tmp_path / "missing.json")], "no such file"),
        (["--mode", "none", "--style", "chatty"], "--style 'chatty': choose plain or brief"),
    ]
    for extra, needle in cases:
        result = runner.invoke(
            app,
            [
                "eval",
                "--model",
                str(tiny_model_dir),
                "--dataset",
                str(questions),
                "--out",
                str(tmp_path / "x"),
                *extra,
            ],
        )
        assert result.exit_code == 2 and needle in result.output, result.output
    result = runner.invoke(
        app, ["eval", "--model", str(tiny_model_dir), "--dataset", "nope-set", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and "unknown dataset" in result.output


def test_load_questions_from_a_prepared_dir(tiny_prepared_dir):
    rows = load_questions(str(tiny_prepared_dir), limit=5)
    assert len(rows) == 5 and {"id", "question", "answer", "level", "difficulty"} <= set(rows[0])


def test_load_records_rejects_non_results(tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text("{}")
    with pytest.raises(EvalError, match="not an sblite results.json"):
        load_records(bad)


def test_generate_prefilled_budget_appears_verbatim(tiny_model_dir):
    result = runner.invoke(
        app,
        [
            "generate",
            "What is 2 + 3?",
            "--model",
            str(tiny_model_dir),
            "--budget",
            "37",
            "--max-new-tokens",
            "8",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    assert out["text"].startswith("<budget>37</budget><solution>")
    assert out["budget"] == 37 and out["prefilled"] and out["generated_tokens"] <= 8
    # solution tokens: the pre-fill's own tokens after </budget> plus the generated ones (one shared measure)
    from transformers import AutoTokenizer

    from sblite.protocol import count_solution_tokens

    tail = count_solution_tokens([], AutoTokenizer.from_pretrained(tiny_model_dir), forced_budget=37)
    assert tail >= 1 and out["solution_tokens"] == out["generated_tokens"] + tail


def test_generate_live_view_shows_the_budget(tiny_model_dir):
    result = runner.invoke(
        app,
        [
            "generate",
            "What is 2 + 3?",
            "--model",
            str(tiny_model_dir),
            "--budget",
            "5",
            "--max-new-tokens",
            "8",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "budget 5 tokens" in result.output and "pre-filled" in result.output


def test_generate_rejects_bad_budget(tiny_model_dir):
    result = runner.invoke(app, ["generate", "q", "--model", str(tiny_model_dir), "--budget", "0"])
    assert result.exit_code == 2 and "--budget 0" in result.output


def test_progress_eta_and_over_budget():
    p = Progress(budget=100, solution_tokens=40, generated=50, elapsed=5.0)
    assert p.rate == 10 and p.eta == pytest.approx(6.0) and not p.over_budget
    p.solution_tokens = 120
    assert p.over_budget and p.eta == 0
    assert Progress().eta is None and Progress().rate is None


def _chunks(pieces, interrupt_after=None):
    text = ""
    for i, piece in enumerate(pieces):
        if interrupt_after is not None and i == interrupt_after:
            raise KeyboardInterrupt
        text += piece
        yield [i], text


def test_track_finds_budget_then_counts_solution_tokens():
    import threading

    from sblite.generate.stream import track

    pieces = ["<bud", "get>12", "</budget>", "<solution>", "3+4", "=7 \\boxed{7}", "</solution>"]
    budgets_seen = []
    for state in track(_chunks(pieces), budget=None, stop_event=threading.Event()):
        budgets_seen.append(state.budget)  # a snapshot is updated in place: record what each step saw
    last = state
    assert last.done and not last.stopped and last.budget == 12
    assert last.solution_tokens == 4  # the 4 tokens after the one that completed </budget>
    assert last.to_json()["format_ok"] and last.to_json()["answer"] == "7"
    assert budgets_seen[:3] == [None, None, 12]  # unknown until </budget> is complete


def test_track_ctrl_c_keeps_the_partial_answer():
    import threading

    from sblite.generate.stream import track

    stop = threading.Event()
    pieces = ["<budget>30</budget>", "<solution>", "3+4", "=7"]
    states = list(track(_chunks(pieces, interrupt_after=3), budget=None, stop_event=stop))
    last = states[-1]
    assert stop.is_set() and last.stopped and last.done
    assert last.text == "<budget>30</budget><solution>3+4" and last.solution_tokens == 2
    assert last.to_json()["format_reason"] == "unclosed_solution"


@pytest.fixture(scope="module")
def tiny_gguf(tiny_model_dir, tmp_path_factory) -> Path:
    from sblite.export import export_gguf

    out = tmp_path_factory.mktemp("gguf")
    return Path(export_gguf(str(tiny_model_dir), str(out), quant="f32", verify=False).gguf)


@pytest.mark.parametrize("engine", ["llama.cpp", "transformers"])
def test_generate_and_eval_from_a_gguf(tiny_gguf, questions, tmp_path, monkeypatch, engine):
    from sblite.generate import llamacpp

    if engine == "llama.cpp" and not llamacpp.available():
        pytest.skip("llama-cpp-python is not installed")
    if engine == "transformers":
        monkeypatch.setattr(llamacpp, "available", lambda: False)
    result = runner.invoke(app, ["generate", "What is 2 + 3?", "--gguf", str(tiny_gguf), "--budget", "9",
                                 "--max-new-tokens", "6", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    assert out["model"].endswith(f"({engine})") and out["text"].startswith("<budget>9</budget><solution>")
    res = runner.invoke(app, ["eval", "--gguf", str(tiny_gguf), "--dataset", str(questions), "--out",
                              str(tmp_path / "e"), "--max-new-tokens", "6", "--mode", "prefill", "--budgets", "5"])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "e" / "results.json").read_text())
    assert data["model_spec"]["engine"] == engine and len(data["records"]) == 3


def test_eval_needs_exactly_one_model(questions, tmp_path):
    result = runner.invoke(app, ["eval", "--dataset", str(questions), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "exactly one of --model and --gguf" in result.output


def test_plain_mode_style_picks_the_instruction(tiny_tokenizer):
    """``--mode none --style brief`` is the terse-prompt baseline: same model, the brief instruction."""
    from sblite.eval.run import EvalOptions, _prompts
    from sblite.protocol import BRIEF_SYSTEM_PROMPT, PLAIN_SYSTEM_PROMPT

    rows = [{"question": "What is 2 + 2?"}]
    for style, wanted in (("plain", PLAIN_SYSTEM_PROMPT), ("brief", BRIEF_SYSTEM_PROMPT)):
        opts = EvalOptions(model="m", dataset="d", out="o", mode="none", style=style)
        [(_, budget, text)] = _prompts(tiny_tokenizer, rows, opts, instruction_in_user=True)
        assert budget is None and wanted in text and "<budget>" not in text

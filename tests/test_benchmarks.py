"""The benchmark scripts run end to end at toy size (no timing is asserted: figures live in their JSON), and
every result file they write records the exact command that made it."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if not p.name.startswith("_"))
#: Result files written before the scripts recorded their command; re-running the script drops one from here.
NO_COMMAND_YET = {"export.json", "prepare.json"}


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=600)


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # a dataclass in the script looks its module up there
    spec.loader.exec_module(module)
    return module


def test_write_json_records_the_real_argv_first(tmp_path, monkeypatch):
    common = _load("_common")
    monkeypatch.setattr(sys, "argv", [str(BENCH / "rewards.py"), "--n", "20", "--out", "/tmp/a b"])
    written = common.write_json(tmp_path / "r.json", {"benchmark": "x", "command": "hand-written"})
    on_disk = json.loads((tmp_path / "r.json").read_text())
    assert on_disk == written
    assert list(on_disk)[0] == "command"
    assert on_disk["command"] == "python benchmarks/rewards.py --n 20 --out '/tmp/a b'"
    assert common.command_line(["/elsewhere/x.py"]) == "python /elsewhere/x.py"


@pytest.mark.parametrize(("preload", "env"), [(None, {"OMP_NUM_THREADS": "2"}),
                                             ("/lib/libtcmalloc.so", {"OMP_NUM_THREADS": "2", "LD_PRELOAD": "/lib/libtcmalloc.so"})])
def test_write_json_records_the_malloc_a_timing_ran_under(tmp_path, monkeypatch, preload, env):
    common = _load("_common")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    if preload:
        monkeypatch.setenv("LD_PRELOAD", preload)
    else:
        monkeypatch.delenv("LD_PRELOAD", raising=False)
    assert common.write_json(tmp_path / "r.json", {})["command_env"] == env


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_benchmark_writes_its_result_through_write_json(script):
    tree = ast.parse(script.read_text(encoding="utf-8"))
    imported = any(
        isinstance(n, ast.ImportFrom)
        and n.module == "_common"
        and any(a.name == "write_json" for a in n.names)
        for n in ast.walk(tree)
    )
    called = any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "write_json"
        for n in ast.walk(tree)
    )
    assert imported and called, f"{script.name} must write its result JSON with _common.write_json"
    # A "command" key written by hand (a string, an f-string, a " ".join(...)); quoting another result
    # file's command (``old["command"]``) is fine.
    hand = [
        k.lineno
        for n in ast.walk(tree)
        if isinstance(n, ast.Dict)
        for k, v in zip(n.keys, n.values, strict=True)
        if isinstance(k, ast.Constant)
        and k.value == "command"
        and isinstance(v, ast.Constant | ast.JoinedStr | ast.Call)
    ]
    assert not hand, f"{script.name}:{hand}: a hand-made 'command' field; write_json records sys.argv"


def test_committed_results_record_their_command():
    missing = []
    for path in sorted((BENCH / "results").glob("*.json")):
        if path.name in NO_COMMAND_YET:
            continue
        command = json.loads(path.read_text(encoding="utf-8")).get("command")
        if not (isinstance(command, str) and command.startswith("python benchmarks/")):
            missing.append(path.name)
    assert not missing, f"result files without their command: {missing}"


def test_rewards_sampled_section_scores_a_small_sample_file(tmp_path, shared_data):
    pytest.importorskip("trl")
    pytest.importorskip("math_verify")
    from transformers import AutoTokenizer

    rewards = _load("rewards")
    rows = [
        {"source": "gsm8k-test", "id": "a", "style": "brief", "gold": "18", "b_max": 40,
         "text": "She sells 16 - 3 - 4 = 9 eggs, 9 * 2 = \\boxed{18}.", "n_tokens": 20, "finish_reason": "stop"},
        {"source": "gsm8k-test", "id": "b", "style": "plain", "gold": "3", "b_max": None,
         "text": "It takes 2 + 1 = 3 bolts.", "n_tokens": 12, "finish_reason": "stop"},
        {"source": "math500", "id": "c", "style": "plain", "gold": "\\frac{1}{2}", "b_max": None,
         "text": "So the answer is \\boxed{0.5", "n_tokens": 128, "finish_reason": "length"},
    ]  # fmt: skip
    path = tmp_path / "samples.json"
    path.write_text(json.dumps({"command": "python benchmarks/rewards.py --resample", "rows": rows}))
    tok = AutoTokenizer.from_pretrained(str(shared_data / "tokenizers" / "qwen2"))
    sec = rewards.sampled_section(tok, path, repeats=1)
    assert sec["n_completions"] == 3 and sec["samples_made_by"].endswith("--resample")
    assert set(sec["ratio_trl_time_over_sblite_time"]) == {"cold", "warm"}
    assert sec["by_kind"] == {"boxed:stopped": 1, "no_boxed:stopped": 1, "boxed:truncated": 1}
    assert sec["accuracy"]["sblite"] == pytest.approx(1 / 3, abs=1e-3)
    assert len(sec["disagreements"]) == sec["n_disagreements"]


@pytest.mark.slow
def test_train_overhead_benchmark_runs(tmp_path, shared_data):
    """Its prompts are GSM8K test questions from ../shared (not shaped by sblite's author): skipped without."""
    out = tmp_path / "o.json"
    proc = _run([str(BENCH / "train_overhead.py"), "--steps", "3", "--rounds", "1", "--save-steps", "2",
                 "--prompts", "8", "--out", str(out)])  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["command"].startswith("python benchmarks/train_overhead.py --steps 3")
    ratios = result["ratio_sblite_over_bare"]
    assert ratios["whole_per_step"] > 0 and ratios["train_loop_per_step"] > 0
    assert result["steps_per_run"] == 3
    for side in ("bare", "sblite"):
        (run,) = result["runs"][side]
        assert run["steps"] == 3 and run["whole_s"] >= run["train_loop_s"] > 0
    assert "sblite / bare wall time per GRPO step" in proc.stdout


@pytest.mark.slow
def test_gpu_backends_benchmark_runs_at_toy_size(tmp_path):
    out = tmp_path / "g.json"
    proc = _run([str(BENCH / "gpu_backends.py"), "--toy", "--steps", "2", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["command"].startswith("python benchmarks/gpu_backends.py --toy")
    (row,) = result["rows"]
    assert row["backend"] == "hf" and "failed" not in row, row


@pytest.mark.slow
def test_gpu_backends_records_a_child_that_times_out_and_still_writes_its_json(tmp_path):
    out = tmp_path / "g.json"
    proc = _run([str(BENCH / "gpu_backends.py"), "--toy", "--steps", "2", "--child-timeout", "0.5", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["backend"] == "hf" and row["failed"].startswith("timed out after 0.5 s"), row


@pytest.mark.slow
def test_gpu_check_dry_run_runs_every_cpu_step(tmp_path):
    """The device script's CPU dry run: doctor, models, prepare, SFT → GRPO, merge, export, backends — each
    step exits 0 and its log is kept; the JSON records the command that made it."""
    out = tmp_path / "gc"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(BENCH / "gpu_check.sh"), "--dry-run", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    result = json.loads((out / "gpu_check.json").read_text())
    assert result["command"].startswith("python benchmarks/gpu_check.py --dry-run")
    steps = {r["step"]: r for r in result["steps"]}
    assert list(steps) == ["doctor", "models", "prepare", "train-16", "merge", "export", "backends"]
    assert all(r["rc"] == 0 and (out / f"{name}.log").is_file() for name, r in steps.items())
    assert list((out / "gguf").glob("*.gguf")) and (out / "run-16" / "grpo" / "adapter_config.json").is_file()


def test_reproduce_cpu_rows_trains_only_the_named_rows_and_refuses_a_grpo_row_without_its_sft():
    repro = _load("reproduce_cpu")

    def rows(selection: str, *extra: str) -> list[str]:
        args = repro.build_parser().parse_args(["--rows", selection, *extra])
        return [r.key for r in repro.rows_for(args)]

    assert rows("no-stating,ours") == ["ours", "no-stating"]  # table order, whatever order they were named in
    assert rows("ours,grpo") == ["ours", "grpo"]
    every = rows("all")
    assert every[:2] == ["paper", "ours"] and "no-stating" in every and "fixed-alpha" not in every
    assert rows("all", "--paper-ablations")[-2:] == ["no-penalty", "fixed-alpha"]
    assert "no-stating" not in rows("all", "--stating-rows", "0")  # no stating rows to ablate
    with pytest.raises(SystemExit, match="grpo start from ours; add it"):
        rows("grpo")
    with pytest.raises(SystemExit, match="unknown no-such"):
        rows("ours,no-such")
    with pytest.raises(SystemExit, match="unknown no-stating"):
        rows("no-stating", "--self-renderings", "")  # no self rows: the ablation does not exist


def test_reproduce_cpu_stating_questions_change_only_the_data_of_our_sft_and_go_with_the_stating_rows():
    """``--stating-questions`` (data.stating_questions) prepares our SFT's data with them; its ablation trains the
    same overrides on the data without them, and − stating rows (which they train as) loses them too."""
    repro = _load("reproduce_cpu")

    def rows(*argv: str) -> dict:
        return {r.key: r for r in repro.rows_for(repro.build_parser().parse_args(["--rows", "all", *argv]))}

    on = rows("--stating-questions", "96")
    assert on["ours"].data == "ours-stating" and on["no-stating-questions"].data == "ours-self"
    assert on["no-stating-questions"].overrides == on["ours"].overrides and on["no-stating"].data == "ours-self"
    assert {on[k].data for k in ("no-reading", "no-prompt", "grpo", "prefill-grpo")} == {"ours-stating"}
    off = rows("--stating-questions", "0")
    assert "no-stating-questions" not in off and off["ours"].data == "ours-self"


def test_reproduce_cpu_reading_prompt_reaches_every_row_with_reading_rows_and_can_be_turned_off():
    repro = _load("reproduce_cpu")

    def prompted(*argv: str) -> dict[str, bool]:
        rows = repro.rows_for(repro.build_parser().parse_args(["--rows", "all", *argv]))
        return {r.key: "sft.budget_reading_prompt=true" in r.overrides for r in rows}

    on, off = prompted(), prompted("--no-reading-prompt")
    assert {k for k, v in on.items() if v} == {"ours", "no-stating", "no-self", "no-renderings"}
    assert not any(off.values()) and "no-prompt" not in off  # nothing to ablate without it
    rows = {r.key: r for r in repro.rows_for(repro.build_parser().parse_args(["--rows", "ours,no-prompt"]))}
    assert [o for o in rows["ours"].overrides if o not in rows["no-prompt"].overrides] == [
        "sft.budget_reading_prompt=true"]  # the ablation drops that switch and nothing else


def test_reproduce_cpu_share_prompts_packs_every_sft_row_and_orders_budget_rows_by_question():
    """``--share-prompts`` (the default): packing (exact) on every SFT row, the question order only where the row has budget
    rows under group_by_length (the recipe refuses it elsewhere), nothing on GRPO rows; every row's recipe loads."""
    from sblite.recipes import load_recipe

    repro = _load("reproduce_cpu")
    args = repro.build_parser().parse_args(["--rows", "all"])
    added = {r.key: repro.share_prompts(args, r) for r in repro.rows_for(args)}
    assert {k for k, v in added.items() if "sft.pack_shared_prompts=true" in v} == {
        "paper", "ours", "no-stating", "no-self", "no-renderings", "no-reading", "no-prompt"}
    assert {k for k, v in added.items() if "sft.budget_rows_by_question=true" in v} == {
        "ours", "no-stating", "no-self", "no-renderings", "no-prompt"}
    for row in repro.rows_for(args):
        load_recipe("smollm2-135m", [*row.overrides, *added[row.key]])
    off = repro.build_parser().parse_args(["--rows", "all", "--no-share-prompts"])
    assert not any(repro.share_prompts(off, r) for r in repro.rows_for(off))


def _repro_result(path: Path, seed: int, rows: dict[str, tuple[float, float]], **args) -> Path:
    """A reproduce_cpu.py result file with what reproduce_seeds.py reads: per row (accuracy, pre-fill slope)."""
    table = {r: {"accuracy": acc, "adherence_50": 0.9, "spearman_budget_level": 0.7, "compression": 0.6}
             for r, (acc, _) in rows.items()}  # fmt: skip
    sweeps = {r: {"overall": {"slope": slope, "r2": 0.5, "adherence_50": 0.8},
                  "by_prefill_budget": {"8": {"mean_tokens": 9.0}, "128": {"mean_tokens": 100.0 * slope}}}
              for r, (_, slope) in rows.items()}  # fmt: skip
    data = {"command": f"python benchmarks/reproduce_cpu.py --seed {seed}",
            "args": {"seed": seed, "train_questions": 24, "work": f"/tmp/{seed}", **args},
            "table": {"arith-test": table}, "prefill_sweeps": sweeps}  # fmt: skip
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_reproduce_seeds_averages_each_row_over_the_seeds_that_have_it(tmp_path):
    a = _repro_result(tmp_path / "s0.json", 0, {"our SFT": (0.4, 0.2), "− stating": (0.6, 0.6)})
    b = _repro_result(tmp_path / "s1.json", 1, {"our SFT": (0.5, 0.8)})
    proc = _run([str(BENCH / "reproduce_seeds.py"), str(a), str(b), "--out", str(tmp_path / "seeds")])
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads((tmp_path / "seeds.json").read_text())
    ours = out["summary"]["our SFT"]
    assert ours["accuracy"]["mean"] == pytest.approx(0.45) and ours["pre-fill slope"]["min"] == 0.2
    assert ours["pre-fill slope"]["max"] == 0.8 and ours["pre-fill slope"]["n"] == 2
    assert out["summary"]["− stating"]["accuracy"] == {"mean": 0.6, "min": 0.6, "max": 0.6, "n": 1}
    assert out["per_seed"]["our SFT"]["1"]["sweep tokens"] == {"8": 9.0, "128": 80.0}
    assert "| our SFT | 1 | 50% |" in (tmp_path / "seeds.md").read_text()


def test_reproduce_seeds_refuses_files_of_different_configurations(tmp_path):
    a = _repro_result(tmp_path / "s0.json", 0, {"our SFT": (0.4, 0.2)})
    b = _repro_result(tmp_path / "s1.json", 1, {"our SFT": (0.5, 0.8)}, levels="answer,short")
    c = _repro_result(tmp_path / "s2.json", 0, {"our SFT": (0.5, 0.8)})
    proc = _run([str(BENCH / "reproduce_seeds.py"), str(a), str(b), "--out", str(tmp_path / "x")])
    assert proc.returncode != 0 and "--levels='answer,short'" in proc.stderr
    proc = _run([str(BENCH / "reproduce_seeds.py"), str(a), str(c), "--out", str(tmp_path / "x")])
    assert proc.returncode != 0 and "share a seed" in proc.stderr
    assert not (tmp_path / "x.json").exists()


def test_reproduce_cpu_trained_size_is_the_last_logged_step_with_tokens(tmp_path):
    lines = [{"stage": "sft", "step": 1, "num_tokens": 10.0}, {"stage": "sft", "step": 2, "num_tokens": 25.0},
             {"stage": "sft", "step": 2, "train_runtime": 3.0}]  # the closing summary has no num_tokens
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    assert _load("reproduce_cpu").trained_size(tmp_path) == {"steps": 2, "tokens": 25.0}

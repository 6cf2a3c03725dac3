"""`sblite train`: SFT → GRPO on the tiny model, run-dir contents, guards, kill-and-resume, 2 processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from sblite.cli import app
from sblite.data.prepared import PreparedDataError, check_renderings, load_prepared
from sblite.recipes import load_recipe
from sblite.train import TrainingError
from sblite.train.callbacks import ZERO_SIGNAL_PATIENCE, ZeroSignalGuard, format_log_line
from sblite.train.datasets import check_completion_length
from sblite.train.run import run_training

runner = CliRunner()


def _lora_b_norm(adapter_dir: Path) -> float:
    from safetensors.torch import load_file

    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    return sum(float(t.abs().sum()) for k, t in weights.items() if "lora_B" in k)


@pytest.mark.slow
def test_tiny_sft_then_grpo_writes_the_run_dir(tiny_prepared_dir, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["train", "-r", "tiny-cpu", "--data", str(tiny_prepared_dir), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    for stage in ("sft", "grpo"):
        adapter = out / stage
        assert (adapter / "adapter_config.json").is_file() and (adapter / "tokenizer_config.json").is_file()
        assert (adapter / "chat_template.jinja").is_file() or "chat_template" in (
            adapter / "tokenizer_config.json"
        ).read_text()
        assert (
            _lora_b_norm(adapter) > 0
        )  # LoRA B starts at zero: non-zero means SFT trained (GRPO inherits it)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in rows} == {"sft", "grpo"}
    grpo_rows = [r for r in rows if r["stage"] == "grpo" and "reward" in r]
    assert len(grpo_rows) == 4 and "completions/clipped_ratio" in grpo_rows[0]
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["backend"] == "hf" and prov["device"] == "cpu" and prov["data"]["report_sha256"]
    assert prov["reward"]["alpha_start"] == 6.0 and [s["stage"] for s in prov["stages"]] == ["sft", "grpo"]
    assert "name: tiny-cpu" in (out / "recipe.resolved.yaml").read_text()
    assert "grpo step 4" in result.output and "format_rate=" in result.output  # the compact per-step line
    # a random tiny model never produces the format: every reward is r_f, and the guard says so loudly
    assert "ZERO SIGNAL" in result.output and "frac_reward_zero_std" in result.output


def test_training_refuses_a_taken_run_dir(tiny_prepared_dir, tmp_path):
    (tmp_path / "run" / "sft").mkdir(parents=True)
    result = runner.invoke(
        app, ["train", "-r", "tiny-cpu", "--data", str(tiny_prepared_dir), "--out", str(tmp_path / "run")]
    )
    assert result.exit_code == 2 and "add --resume" in result.output


def test_training_needs_prepared_data(tmp_path):
    result = runner.invoke(app, ["train", "-r", "tiny-cpu", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "pass --data DIR" in result.output
    result = runner.invoke(
        app, ["train", "-r", "tiny-cpu", "--data", str(tmp_path), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 2 and "sft.jsonl" in result.output


def test_bad_jsonl_line_is_named(tmp_path):
    (tmp_path / "sft.jsonl").write_text('{"question": "q"}\nnot json\n')
    (tmp_path / "grpo.jsonl").write_text("")
    with pytest.raises(PreparedDataError, match=r"sft.jsonl:2: not JSON"):
        load_prepared(tmp_path)


@pytest.mark.parametrize(
    "recipe_sets, rows, refused",
    [
        ([], [("short", True)], None),  # no renderings in the recipe: the data's own rows train
        (["data.renderings=[short,reference]"], [("short", True), ("reference", True)], None),
        (["data.renderings=[short,reference]", "data.self_renderings=[reference]"],
         [("short", True), ("reference", False)], None),
        (["data.renderings=[short,reference]"], [("short", True)], r"rendered rows \['short'\], but data.renderings"),
        (["data.renderings=[short]"], [], "rendered rows none, but data.renderings is"),
        (["data.renderings=[short,reference]", "data.self_renderings=[reference]"],
         [("short", True), ("reference", True)], "its reference rows are pre-filled, but data.self_renderings"),
        (["data.renderings=[short]"], [("short", False)], "its short rows are self rows, but data.self_renderings"),
        (["data.renderings=[reference]", "data.self_renderings=[reference]"], [("reference", False, True)],
         "1 stating-question rows, but data.stating_questions is 0"),
        (["data.renderings=[reference]", "data.self_renderings=[reference]", "data.limit=1", "data.stating_questions=2",
          "sft.budget_stating_rows=2"],
         [("reference", False)], "0 stating-question rows, but data.stating_questions is 2"),
        (["data.renderings=[reference]", "data.self_renderings=[reference]", "data.limit=1", "data.stating_questions=2",
          "sft.budget_stating_rows=2"],
         [("reference", False), ("reference", False, True)], None),
    ],
)
def test_recipe_renderings_the_prepared_data_lacks_are_refused_before_training(tmp_path, recipe_sets, rows, refused):
    """A recipe's ``data.renderings``/``data.self_renderings`` are prepare settings: training on a directory
    prepared otherwise would not honour them, so ``run_training`` stops (before any model loads) with the fix."""
    sft = [{"question": "q", "answer": "1", "completion": "<budget>3</budget><solution>1</solution>",
            "rendering": v, "prefilled": p, **({"stating": True} if stating else {})}
           for v, p, *stating in rows]  # fmt: skip
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sft))
    (tmp_path / "d" / "grpo.jsonl").write_text("")
    cfg = load_recipe("tiny-cpu", [f"data.path={tmp_path / 'd'}", f"output_dir={tmp_path / 'run'}", *recipe_sets])
    if refused:
        with pytest.raises(TrainingError, match=refused):
            run_training(cfg)
        assert not (tmp_path / "run").exists()
    else:
        check_renderings(load_prepared(tmp_path / "d"), cfg.data.renderings, cfg.data.self_renderings,
                         cfg.data.stating_questions)


@pytest.mark.parametrize(
    "budgets, limit, refuse",
    [
        ([10, 20, 30], 64, False),
        ([100] * 6 + [10] * 4, 64, True),
        ([100] * 4 + [10] * 6, 64, False),
        ([], 8, False),
    ],
)
def test_max_completion_length_is_checked_against_budgets(budgets, limit, refuse):
    cfg = load_recipe("tiny-cpu", [f"grpo.max_completion_length={limit}"])
    rows = [{"b_max": b} for b in budgets] + [{"b_max": None}]
    if refuse:
        with pytest.raises(TrainingError, match="would truncate 60% .* set grpo.max_completion_length="):
            check_completion_length(rows, cfg)
    else:
        assert check_completion_length(rows, cfg)["max_completion_length"] == limit


def _state(step=1, main=True):
    return SimpleNamespace(global_step=step, is_world_process_zero=main)


@pytest.mark.parametrize("strict", [False, True])
def test_zero_signal_guard_fires_after_patience(strict):
    from rich.console import Console

    console = Console(record=True, width=200)
    guard = ZeroSignalGuard(console, strict=strict)
    control = SimpleNamespace(should_training_stop=False)
    for step in range(ZERO_SIGNAL_PATIENCE - 1):
        guard.on_log(None, _state(step), control, logs={"frac_reward_zero_std": 1.0})
    assert not guard.fired
    guard.on_log(None, _state(), control, logs={"frac_reward_zero_std": 0.2})  # streak broken
    for step in range(ZERO_SIGNAL_PATIENCE):
        guard.on_log(None, _state(step), control, logs={"frac_reward_zero_std": 0.97, "reward": 0.0})
    assert guard.fired == {"frac_reward_zero_std"}
    text = console.export_text()
    assert "ZERO SIGNAL" in text and "grpo.temperature" in text
    assert control.should_training_stop is strict and guard.stopped is strict


def test_format_log_line_shows_reward_parts():
    line = format_log_line(
        "grpo",
        7,
        {
            "loss": 0.01,
            "reward": 0.4,
            "completions/clipped_ratio": 0.25,
            "sblite/format_rate": 0.9,
            "rewards/selfbudgeter/mean": 0.4,
            "learning_rate": 1e-5,
        },
    )
    assert line.startswith("grpo step 7") and "clipped=0.25" in line and "format_rate=0.9" in line
    quiet = format_log_line("grpo", 7, {"sblite/reward_errors/selfbudgeter_reward": 0.0})
    loud = format_log_line("grpo", 7, {"sblite/reward_errors/selfbudgeter_reward": 3.0})
    assert "REWARD_ERRORS" not in quiet and "REWARD_ERRORS[selfbudgeter_reward]=3" in loud


def test_unknown_trl_args_are_rejected(tiny_prepared_dir, tmp_path):
    result = runner.invoke(
        app,
        [
            "train",
            "-r",
            "tiny-cpu",
            "--stage",
            "sft",
            "--data",
            str(tiny_prepared_dir),
            "--out",
            str(tmp_path / "r"),
            "--set",
            "sft.trl_args={not_a_field: 1}",
        ],
    )
    assert result.exit_code == 2 and "not_a_field" in result.output


def _train_cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sblite.cli",
        "train",
        "-r",
        "tiny-cpu",
        "--stage",
        "grpo",
        "--data",
        str(data),
        "--out",
        str(out),
        "--set",
        "grpo.max_steps=24",
        "--set",
        "grpo.save_steps=4",
        *extra,
    ]


@pytest.mark.slow
def test_sigkill_mid_grpo_then_resume_ends_at_the_same_step(tiny_prepared_dir, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        _train_cmd(tiny_prepared_dir, out),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    ckpts = out / "checkpoints" / "grpo"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if (ckpts / "checkpoint-8").is_dir():
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished (or died) before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "grpo" / "adapter_config.json").exists()
    killed_at = max(int(p.name.split("-")[1]) for p in ckpts.glob("checkpoint-*"))
    assert 8 <= killed_at < 24

    resumed = subprocess.run(
        _train_cmd(tiny_prepared_dir, out, "--resume"), env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    state = json.loads((ckpts / "checkpoint-24" / "trainer_state.json").read_text())
    assert state["global_step"] == 24
    steps = [
        json.loads(line)["step"]
        for line in (out / "metrics.jsonl").read_text().splitlines()
        if json.loads(line).get("stage") == "grpo" and "reward" in json.loads(line)
    ]
    assert steps == list(range(1, 25))  # no step lost, none logged twice
    from peft import PeftConfig

    assert PeftConfig.from_pretrained(str(out / "grpo")).r == 8


@pytest.mark.slow
def test_two_process_data_parallel_run(tiny_prepared_dir, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "sblite.cli",
        "train",
        "-r",
        "tiny-cpu",
        "--data",
        str(tiny_prepared_dir),
        "--out",
        str(out),
        "--num-processes",
        "2",
        "--set",
        "sft.max_steps=2",
        "--set",
        "grpo.max_steps=2",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "torch.distributed.run" in proc.stdout
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["world_size"] == 2
    assert (out / "grpo" / "adapter_model.safetensors").is_file()


def test_report_to_keeps_only_installed_reporters():
    from sblite.train.trl_args import available_reporters

    with pytest.warns(UserWarning, match="not installed"):
        assert available_reporters(["surely_not_a_reporter_pkg"]) == []
    assert available_reporters([]) == []


def test_resume_skips_a_checkpoint_torn_by_the_kill(tmp_path):
    from sblite.train.run import _last_checkpoint

    for step, complete in ((2, True), (4, True), (8, False)):
        ckpt = tmp_path / f"checkpoint-{step}"
        ckpt.mkdir()
        if complete:
            (ckpt / "trainer_state.json").write_text("{}")
    assert _last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    assert _last_checkpoint(tmp_path / "missing") is None


@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_grpo_prefill_fraction_forces_budgets_in_text_prompts(tiny_prepared_dir, tiny_tokenizer, fraction):
    """``grpo.prefill_fraction``: that share of prompts are rendered text ending in an open assistant turn
    ``<budget>N</budget><solution>`` (what reaches TRL's generate is checked in test_boundary.py)."""
    from sblite.protocol import render_prompt, split_prefill
    from sblite.train.datasets import build_grpo_dataset

    cfg = load_recipe("tiny-cpu", [f"grpo.prefill_fraction={fraction}", "grpo.prefill_range=[8,32]"])
    rows = load_prepared(tiny_prepared_dir).grpo
    ds, rejects = build_grpo_dataset(rows, cfg, tiny_tokenizer)
    assert rejects == [] and len(ds) == len(rows)
    forced = [ex for ex in ds if split_prefill(ex["prompt"])[1] is not None]
    assert len(forced) == {0.0: 0, 1.0: len(rows)}.get(fraction, len(forced))
    if fraction == 0.5:
        assert 0 < len(forced) < len(rows)
    again, _ = build_grpo_dataset(rows, cfg, tiny_tokenizer)
    assert list(again) == list(ds)  # seeded: a resumed run sees the same prompts
    for ex, row in zip(ds, rows, strict=True):
        head, budget = split_prefill(ex["prompt"])
        assert head == render_prompt(tiny_tokenizer, row["question"])
        assert budget is None or 8 <= budget <= 32


def test_long_grpo_prompts_are_rejects_on_disk_not_silent_drops(tiny_prepared_dir, tmp_path):
    from sblite.rundir import RunDir
    from sblite.train.datasets import build_grpo_dataset
    from sblite.train.run import write_rejects

    cfg = load_recipe("tiny-cpu")  # data.max_prompt_length=192
    from transformers import AutoTokenizer

    from sblite.models import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("builtin:tiny-random"))
    rows = load_prepared(tiny_prepared_dir).grpo
    rows = [*rows[:3], {**rows[3], "id": "long", "question": "why " * 200}]
    ds, rejects = build_grpo_dataset(rows, cfg, tok)
    assert len(ds) == 3 and [r["id"] for r in rejects] == ["long"]
    assert "data.max_prompt_length=192" in rejects[0]["reason"]
    path = write_rejects(RunDir(tmp_path), "grpo", rejects)
    write_rejects(RunDir(tmp_path), "grpo", rejects)  # a resumed run rewrites its own lines, never duplicates
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["long"]


@pytest.mark.parametrize("bad", ["0", "-4", "\"abc\"", "2.5", "true"])
def test_an_unreadable_b_max_stops_the_load_with_its_line(tmp_path, bad):
    (tmp_path / "sft.jsonl").write_text("")
    (tmp_path / "grpo.jsonl").write_text('{"question": "q", "answer": "1", "b_max": 5}\n'
                                         f'{{"question": "q", "answer": "1", "b_max": {bad}}}\n')
    with pytest.raises(PreparedDataError, match=r"grpo.jsonl:2: field b_max: b_max .* is not a positive whole"):
        load_prepared(tmp_path)


def test_recipe_settings_the_installed_trl_lacks_are_named_not_dropped(tiny_prepared_dir, tmp_path):
    """``trl_config`` maps recipe fields to TRL's; a field this TRL does not have is a loud warning naming
    it and the version, and an error under --strict."""
    import dataclasses

    from trl import GRPOConfig

    from sblite.backends import get_backend
    from sblite.train.trl_args import trl_config

    @dataclasses.dataclass
    class OldGRPOConfig(GRPOConfig):  # a TRL without `epsilon_high`
        pass

    fields = {f.name: f for f in dataclasses.fields(OldGRPOConfig)}
    del fields["epsilon_high"]
    OldGRPOConfig.__dataclass_fields__ = fields
    cfg = load_recipe("tiny-cpu")
    backend, _ = get_backend("hf")
    printed = []
    grpo = cfg.grpo.model_copy(update={"epsilon_high": 0.28, "num_generations": 4, "max_completion_length": 64})
    device = backend.trainer_kwargs(cfg.model)
    trl_config(OldGRPOConfig, grpo, output_dir=tmp_path, device=device, warn=printed.append)
    assert len(printed) == 1 and "epsilon_high" in printed[0] and "trl 1." in printed[0]
    with pytest.raises(TrainingError, match="--strict: OldGRPOConfig of trl .* epsilon_high"):
        trl_config(OldGRPOConfig, grpo, output_dir=tmp_path, device=device, strict=True)


def test_prefill_range_must_fit_the_completion_length():
    with pytest.raises(Exception, match="prefill_range"):
        load_recipe("tiny-cpu", ["grpo.prefill_range=[64,16]"])
    with pytest.raises(Exception, match="max_completion_length"):
        load_recipe("tiny-cpu", ["grpo.prefill_fraction=0.5", "grpo.prefill_range=[16,100000]"])


def test_both_backends_implement_the_backend_protocol():
    """``sblite.train`` talks to ``backends.base.Backend`` only; both engines must provide all of it, with
    the same ``load`` signature (the unsloth one is checked on the class: its constructor needs CUDA)."""
    import inspect

    from sblite.backends.base import Backend
    from sblite.backends.hf import HFBackend
    from sblite.backends.unsloth import UnslothBackend

    assert isinstance(HFBackend(), Backend)
    members = [m for m in vars(Backend) if not m.startswith("_")] + list(Backend.__annotations__)
    for cls in (HFBackend, UnslothBackend):
        missing = [m for m in members if not hasattr(cls, m)]
        assert not missing, f"{cls.__name__} lacks {missing}"
        assert inspect.signature(cls.load).parameters.keys() == inspect.signature(Backend.load).parameters.keys()


@pytest.mark.parametrize("k", [0, 2])
def test_sft_budget_reading_tokens_adds_one_short_row_per_sft_row(tiny_prepared_dir, tiny_tokenizer, k):
    """``sft.budget_reading_tokens``: after each full row, its prompt-less ``<budget>N</budget><solution>`` + the
    first k solution tokens, trained on those k only; 0 leaves the dataset as the paper's."""
    from sblite import protocol
    from sblite.train.datasets import build_sft_dataset

    cfg = load_recipe("tiny-cpu", [f"sft.budget_reading_tokens={k}"])
    rows = load_prepared(tiny_prepared_dir).sft
    ds = list(build_sft_dataset(rows, cfg, tiny_tokenizer))
    assert len(ds) == len(rows) * (2 if k else 1)
    if not k:
        return
    for row, reading in zip(rows, ds[1::2], strict=True):
        budget = protocol.parse_completion(row["completion"]).budget
        given = protocol.encode(tiny_tokenizer, protocol.prefill(budget))
        assert reading["input_ids"][: len(given)] == given and sum(reading["completion_mask"]) == k
        assert len(reading["input_ids"]) == len(given) + k


@pytest.mark.parametrize("m", [1, 3])
def test_sft_budget_stating_rows_add_m_rows_per_self_row_ending_after_the_budget(tiny_prepared_dir, tiny_tokenizer, m):
    """``sft.budget_stating_rows``: each self row (not pre-filled) gives m copies of its own ids cut after
    ``<budget>N</budget><solution>``, loss on those tags only, all with one shared ``length`` (for
    group_by_length); a pre-filled row gives none."""
    from sblite import protocol
    from sblite.train.datasets import LENGTH_COLUMN, build_sft_dataset

    rows = [{**r, "prefilled": i % 2 == 1} for i, r in enumerate(load_prepared(tiny_prepared_dir).sft)]
    ds = list(build_sft_dataset(rows, load_recipe("tiny-cpu", [f"sft.budget_stating_rows={m}"]), tiny_tokenizer))
    own = [r for r in rows if not r["prefilled"]]
    assert len(ds) == len(rows) + m * len(own)
    stating = [e for e in ds if tiny_tokenizer.decode(e["input_ids"]).endswith(protocol.SOLUTION_OPEN)]
    assert len(stating) == m * len(own) and len({e[LENGTH_COLUMN] for e in stating}) == 1
    # what `sblite eval --mode prefill` feeds for the row's budget, built the eval's way
    fed = [protocol.encode_prompt(tiny_tokenizer, protocol.render_prompt(
        tiny_tokenizer, r["question"], budget=protocol.parse_completion(r["completion"]).budget)) for r in own]
    assert sorted(e["input_ids"] for e in stating) == sorted(fed * m)
    for e in stating:
        start = e["completion_mask"].index(1)
        assert set(e["completion_mask"][start:]) == {1}
        assert tiny_tokenizer.decode(e["input_ids"][start:]).startswith(protocol.BUDGET_OPEN)


def test_a_stating_question_row_trains_only_its_budget_stating_rows(tiny_prepared_dir, tiny_tokenizer):
    """``data.stating_questions`` rows (marked ``stating``) give their m budget-stating rows and nothing else: no
    full row, no budget-reading row, no drawn reading rows; without stating rows they are refused."""
    from sblite import protocol
    from sblite.train.datasets import build_sft_dataset

    rows = [{**r, "prefilled": False} for r in load_prepared(tiny_prepared_dir).sft]
    cfg = load_recipe("tiny-cpu", ["sft.budget_stating_rows=2", "sft.budget_reading_tokens=2",
                                   "sft.budget_reading_samples=3"])  # fmt: skip
    plain = list(build_sft_dataset(rows, cfg, tiny_tokenizer))
    marked = [{**rows[0], "question": "A question only asked to state its budget?", "stating": True}]
    ds = list(build_sft_dataset(rows + marked, cfg, tiny_tokenizer))
    before = [e["input_ids"] for e in plain]
    added = [e["input_ids"] for e in ds if e["input_ids"] not in before]
    assert len(ds) == len(plain) + 2 and len(added) == 2 and added[0] == added[1]
    stated = tiny_tokenizer.decode(added[0])
    assert "only asked to state" in stated and stated.endswith(protocol.SOLUTION_OPEN)
    with pytest.raises(TrainingError, match="1 stating-question rows .* but sft.budget_stating_rows is 0"):
        build_sft_dataset(rows + marked, load_recipe("tiny-cpu"), tiny_tokenizer)


def test_budget_stating_rows_without_a_self_row_is_an_error_naming_the_fix(tiny_prepared_dir, tiny_tokenizer):
    from sblite.train.datasets import build_sft_dataset

    rows = [{**r, "prefilled": True} for r in load_prepared(tiny_prepared_dir).sft]
    with pytest.raises(TrainingError, match="every SFT row is pre-filled, so none states its own budget; set it to 0"):
        build_sft_dataset(rows, load_recipe("tiny-cpu", ["sft.budget_stating_rows=2"]), tiny_tokenizer)


@pytest.mark.parametrize(
    ("budgets", "drawn", "expected"),
    [
        # the nearest label in ratio: 10 vs 40 split at their geometric mean, 20
        ((10, 40), 19, 10),
        ((10, 40), 21, 40),
        ((10, 40), 5, 10),
        ((10, 40, 160), 70, 40),
        ((10, 40, 160), 90, 160),
    ],
)
def test_budget_reading_draws_pair_each_budget_with_the_label_nearest_in_ratio(budgets, drawn, expected, monkeypatch):
    import random

    from sblite.train.datasets import budget_reading_draws

    rows = [{"id": str(b), "question": "q", "completion": f"<budget>{b}</budget><solution>s{b}</solution>"}
            for b in budgets]  # fmt: skip
    monkeypatch.setattr(random.Random, "uniform", lambda self, lo, hi: __import__("math").log(drawn))
    [(n, completion, question)] = budget_reading_draws(rows, 1, seed=0)
    assert n == drawn and completion == f"<budget>{expected}</budget><solution>s{expected}</solution>"
    assert question == "q"


def test_a_question_labelled_at_one_length_gets_no_drawn_reading_rows():
    """Its draws would all read into its one answer at any budget: none are drawn, and they are counted."""
    from sblite.train.datasets import budget_reading_draws, undrawn_questions

    one = [{"question": "q1", "completion": f"<budget>12</budget><solution>s{i}</solution>"} for i in range(2)]
    two = [{"question": "q2", "completion": f"<budget>{b}</budget><solution>s</solution>"} for b in (10, 40)]
    assert {q for _, _, q in budget_reading_draws(one + two, 5, seed=0)} == {"q2"}
    assert undrawn_questions(one + two) == 1 and undrawn_questions([{**one[0], "stating": True}]) == 0


def test_budget_reading_draws_stay_in_each_questions_range_and_count_per_question():
    from sblite.train.datasets import budget_reading_draws

    rows = [{"question": q, "completion": f"<budget>{b}</budget><solution>{q}{b}</solution>"}
            for q, bs in (("a", (8, 100)), ("b", (20, 30))) for b in bs]  # fmt: skip
    draws = budget_reading_draws(rows, 40, seed=1)
    assert len(draws) == 80
    for q, lo, hi in (("a", 4, 150), ("b", 10, 45)):
        mine = [n for n, c, question in draws if question == q]
        assert all(f">{q}" in c for _, c, question in draws if question == q)
        assert len(mine) == 40 and lo <= min(mine) and max(mine) <= hi
        assert max(mine) - min(mine) > (hi - lo) / 3  # spread over the range, not stuck at the labels
    assert budget_reading_draws(rows, 40, seed=1) == draws  # seeded


def _two_lengths(rows: list[dict]) -> list[dict]:
    """``rows`` and each again at twice its budget: every question labelled at two lengths, so it gets draws."""
    from sblite import protocol

    return rows + [{**r, "completion": protocol.with_budget(r["completion"], 2 * protocol.parse_completion(
        r["completion"]).budget)} for r in rows]  # fmt: skip


def test_sft_budget_reading_samples_add_rows_at_drawn_budgets(tiny_prepared_dir, tiny_tokenizer):
    from sblite import protocol
    from sblite.train.datasets import build_sft_dataset

    rows = _two_lengths(load_prepared(tiny_prepared_dir).sft)
    cfg = load_recipe("tiny-cpu", ["sft.budget_reading_tokens=2", "sft.budget_reading_samples=3"])
    ds = list(build_sft_dataset(rows, cfg, tiny_tokenizer))
    questions = len({r["question"] for r in rows})
    assert len(ds) == 2 * len(rows) + 3 * questions
    extra = ds[2 * len(rows):]
    assert all(sum(e["completion_mask"]) == 2 for e in extra)
    stated = {protocol.parse_completion(r["completion"]).budget for r in rows}
    read = {int(tiny_tokenizer.decode(e["input_ids"]).split("<budget>")[1].split("</budget>")[0]) for e in extra}
    assert read - stated  # budgets no label states: the range between the labels


def test_budget_reading_prompt_gives_each_reading_row_its_own_questions_prompt(tiny_prepared_dir, tiny_tokenizer):
    """sft.budget_reading_prompt: the same reading rows (same budgets, same trained tokens), each now opening with
    the prompt of the question it was labelled or drawn for, as the pre-filled example's ids cut after K tokens."""
    from sblite import protocol
    from sblite.train.datasets import budget_reading_draws, build_sft_dataset

    rows = _two_lengths(load_prepared(tiny_prepared_dir).sft)
    k, base = 2, ["sft.budget_reading_tokens=2", "sft.budget_reading_samples=3"]
    cfg = load_recipe("tiny-cpu", [*base, "sft.budget_reading_prompt=true"])
    plain = list(build_sft_dataset(rows, load_recipe("tiny-cpu", base), tiny_tokenizer))
    prompted = list(build_sft_dataset(rows, cfg, tiny_tokenizer))
    labelled = [(r["question"], r["completion"]) for r in rows]
    drawn = [(q, protocol.with_budget(c, b)) for b, c, q in budget_reading_draws(rows, 3, seed=cfg.sft.seed)]
    reading = [prompted[2 * i + 1] for i in range(len(rows))] + prompted[2 * len(rows):]
    before = [plain[2 * i + 1] for i in range(len(rows))] + plain[2 * len(rows):]
    assert len(reading) == len(labelled) + len(drawn) == len(before)
    for row, old, (question, completion) in zip(reading, before, labelled + drawn, strict=True):
        ids, mask = protocol.encode_training_example(tiny_tokenizer, question, completion, prefilled=True,
                                                     instruction_in_user=cfg.model.instruction_in_user)  # fmt: skip
        end = mask.index(1) + k
        assert (row["input_ids"], row["completion_mask"]) == (ids[:end], mask[:end])
        trained = [t for t, m in zip(row["input_ids"], row["completion_mask"], strict=True) if m]
        assert trained == [t for t, m in zip(old["input_ids"], old["completion_mask"], strict=True) if m]
        assert row["input_ids"][-len(old["input_ids"]):] == old["input_ids"]  # the prompt-less row, prompt before it


def test_budget_reading_prompt_without_tokens_is_an_error_naming_the_fix():
    from sblite.recipes import RecipeError

    with pytest.raises(RecipeError, match="sft.budget_reading_tokens"):
        load_recipe("tiny-cpu", ["sft.budget_reading_prompt=true"])


def test_budget_reading_samples_without_tokens_is_an_error_naming_the_fix():
    from sblite.recipes import RecipeError

    with pytest.raises(RecipeError, match="sft.budget_reading_tokens"):
        load_recipe("tiny-cpu", ["sft.budget_reading_samples=4"])


@pytest.mark.parametrize(("overrides", "refused"), [
    (["sft.budget_reading_tokens=2", "sft.trl_args.remove_unused_columns=true",
      "sft.trl_args.train_sampling_strategy=group_by_length"], True),
    (["sft.budget_reading_tokens=2", "sft.trl_args.remove_unused_columns=true"], False),  # no sampler reads it
    (["sft.trl_args.remove_unused_columns=true", "sft.trl_args.train_sampling_strategy=group_by_length"], False),
])
def test_dropping_the_reading_rows_length_column_under_group_by_length_is_refused(overrides, refused):
    """The shared length column is what keeps group_by_length from sorting reading rows by digit count; a
    recipe that would drop it before the sampler is an error at load time, not a silent override."""
    from sblite.recipes import RecipeError

    if refused:
        with pytest.raises(RecipeError, match="remove_unused_columns"):
            load_recipe("tiny-cpu", overrides)
    else:
        assert load_recipe("tiny-cpu", overrides).sft.trl_args["remove_unused_columns"] is True


def test_budget_reading_epochs_needs_tokens_and_names_the_fix():
    from sblite.recipes import RecipeError

    with pytest.raises(RecipeError, match="sft.budget_reading_tokens"):
        load_recipe("tiny-cpu", ["sft.budget_reading_epochs=2"])


@pytest.mark.parametrize(("overrides", "refused"), [
    (["sft.budget_stating_length=own"], True),  # no stating rows to give a length
    (["sft.budget_stating_length=own", "sft.budget_stating_rows=2"], False),
    (["sft.budget_stating_length=reading"], False),
])
def test_a_stating_length_without_stating_rows_is_refused_naming_the_fix(overrides, refused):
    from sblite.recipes import RecipeError

    if refused:
        with pytest.raises(RecipeError, match="sft.budget_stating_rows is 0; set it"):
            load_recipe("tiny-cpu", overrides)
    else:
        assert load_recipe("tiny-cpu", overrides).sft.budget_stating_length == overrides[0].split("=")[1]


@pytest.mark.parametrize("length", ["reading", "own"])
def test_stating_rows_take_the_reading_rows_length_or_one_of_their_own(tiny_prepared_dir, tiny_tokenizer, length):
    """``sft.budget_stating_length`` sets the ``length`` column group_by_length reads: ``reading`` puts the
    stating rows under the reading rows' one shared length, ``own`` under a shared length of their own."""
    from sblite import protocol
    from sblite.train.datasets import LENGTH_COLUMN, build_sft_dataset

    cfg = load_recipe("tiny-cpu", ["sft.budget_reading_tokens=2", "sft.budget_stating_rows=2",
                                   f"sft.budget_stating_length={length}"])  # fmt: skip
    ds = list(build_sft_dataset(load_prepared(tiny_prepared_dir).sft, cfg, tiny_tokenizer))
    texts = [tiny_tokenizer.decode(e["input_ids"]) for e in ds]
    reading = {e[LENGTH_COLUMN] for e, t in zip(ds, texts, strict=True) if t.startswith(protocol.BUDGET_OPEN)}
    stating = {e[LENGTH_COLUMN] for e, t in zip(ds, texts, strict=True) if t.endswith(protocol.SOLUTION_OPEN)}
    assert len(reading) == 1 and len(stating) == 1
    longest = max(len(e["input_ids"]) for e, t in zip(ds, texts, strict=True) if t.endswith(protocol.SOLUTION_OPEN))
    assert stating == {longest}
    assert (reading == stating) == (length == "reading")


def test_budget_reading_epochs_split_the_rows_into_two_phases_and_lose_none(tiny_prepared_dir, tiny_tokenizer):
    """With ``sft.budget_reading_epochs`` the default build gives the full rows only and ``reading_phase=True``
    the reading rows only; together they are exactly the mixed dataset."""
    from sblite.train.datasets import build_sft_dataset

    rows = load_prepared(tiny_prepared_dir).sft
    switches = ["sft.budget_reading_tokens=2", "sft.budget_reading_samples=3"]
    mixed = list(build_sft_dataset(rows, load_recipe("tiny-cpu", switches), tiny_tokenizer))
    cfg = load_recipe("tiny-cpu", [*switches, "sft.budget_reading_epochs=1.5"])
    full = list(build_sft_dataset(rows, cfg, tiny_tokenizer))
    reading = list(build_sft_dataset(rows, cfg, tiny_tokenizer, reading_phase=True))
    assert len(full) == len(rows) and all(sum(e["completion_mask"]) > 2 for e in full)
    assert all(sum(e["completion_mask"]) == 2 for e in reading)
    key = lambda e: tuple(e["input_ids"])  # noqa: E731
    assert sorted(map(key, full + reading)) == sorted(map(key, mixed))
    off = load_recipe("tiny-cpu")
    assert build_sft_dataset(rows, off, tiny_tokenizer, reading_phase=True) is None


@pytest.mark.slow
def test_budget_reading_phase_runs_after_the_full_rows_on_the_same_adapter(tiny_prepared_dir, tmp_path, monkeypatch):
    """What the real SFTTrainers feed the model: the first trainer the full rows (prompt + long completions),
    then a second trainer only prompt-less budget-reading rows, K labelled tokens each, on the same adapter."""
    import trl

    seen: dict[int, list[tuple[list[int], int]]] = {}
    original = trl.SFTTrainer.compute_loss

    def spy(self, model, inputs, *args, **kwargs):
        for ids, labels in zip(inputs["input_ids"].tolist(), inputs["labels"].tolist(), strict=True):
            seen.setdefault(id(self), []).append((ids, sum(x != -100 for x in labels)))
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(trl.SFTTrainer, "compute_loss", spy)
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "-r", "tiny-cpu", "--data", str(tiny_prepared_dir), "--out", str(out),
                                 "--set", "stages=[sft]", "--set", "sft.budget_reading_tokens=2",
                                 "--set", "sft.budget_reading_epochs=2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "budget-reading phase" in result.output
    first, second = seen.values()  # two trainers, in order
    assert max(n for _, n in first) > 2  # full rows: whole completions are labelled
    assert {n for _, n in second} <= {2}  # padded rows of a batch count 2 each, never more
    assert max(len(ids) for ids, _ in second) < min(len(ids) for ids, _ in first)  # no prompt in phase two
    stages = {json.loads(line)["stage"] for line in (out / "metrics.jsonl").read_text().splitlines()}
    assert stages == {"sft", "sft-reading"} and _lora_b_norm(out / "sft") > 0


def _hook_first_decoder_layer(monkeypatch, hook, on_model=None) -> None:
    """Every model ``HFBackend.load`` gives the real trainers carries ``hook`` (a forward hook) on its first
    decoder layer; ``on_model(model)`` sees each loaded model."""
    from sblite.backends.hf import HFBackend

    load = HFBackend.load

    def spy(self, *args, **kwargs):
        model, tok = load(self, *args, **kwargs)
        if on_model:
            on_model(model)
        model.get_base_model().model.layers[0].register_forward_hook(hook)
        return model, tok

    monkeypatch.setattr(HFBackend, "load", spy)


@pytest.mark.slow
def test_bfloat16_recipe_trains_both_stages_on_cpu_in_bf16_with_float32_adapters(
    tiny_prepared_dir, tmp_path, monkeypatch
):
    """``model.dtype=bfloat16`` on CPU: the trainers get ``bf16=True`` and the base model computes in bf16 in
    both stages (seen by a hook on the real trainer's model), while the LoRA weights saved stay float32."""
    import torch
    from safetensors.torch import load_file

    seen: dict[str, set] = {"weights": set(), "activations": set()}
    _hook_first_decoder_layer(
        monkeypatch,
        lambda _m, _i, out: seen["activations"].add((out[0] if isinstance(out, tuple) else out).dtype),
        on_model=lambda model: seen["weights"].add(model.get_input_embeddings().weight.dtype),
    )
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "-r", "tiny-cpu", "--data", str(tiny_prepared_dir), "--out", str(out),
                                 "--set", "model.dtype=bfloat16"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert seen == {"weights": {torch.bfloat16}, "activations": {torch.bfloat16}}
    for stage in ("sft", "grpo"):
        weights = load_file(str(out / stage / "adapter_model.safetensors"))
        assert {t.dtype for t in weights.values()} == {torch.float32}
    assert _lora_b_norm(out / "grpo") > 0


@pytest.mark.slow
@pytest.mark.parametrize("checkpointing", [False, True])
def test_lora_use_gradient_checkpointing_reaches_both_real_trainers(tiny_prepared_dir, tmp_path, monkeypatch,
                                                                    checkpointing):  # fmt: skip
    """TRL's SFTConfig/GRPOConfig default ``gradient_checkpointing`` to True: the recipe's
    ``lora.use_gradient_checkpointing`` must decide it, seen on the decoder layers the real trainers run."""
    import torch

    seen: set[bool] = set()
    _hook_first_decoder_layer(
        monkeypatch,
        lambda m, _i, _o: seen.add(bool(m.gradient_checkpointing)) if m.training and torch.is_grad_enabled() else None,
    )
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "-r", "tiny-cpu", "--data", str(tiny_prepared_dir), "--out", str(out),
                                 "--set", f"lora.use_gradient_checkpointing={str(checkpointing).lower()}"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert seen == {checkpointing}

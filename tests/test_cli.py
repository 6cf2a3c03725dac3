"""The CLI: every command's --help, import hygiene, recipes, doctor and the dry run."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from sblite.cli import app

runner = CliRunner()
COMMANDS = sorted(c.name for c in app.registered_commands)


def test_expected_commands_exist():
    assert {"recipes", "doctor", "train", "demo", "prepare", "eval", "generate", "merge", "export"} <= set(COMMANDS)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_of_every_command(command):
    args = ["--help"] if command is None else [command, "--help"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


HEAVY = ("torch", "transformers", "trl", "peft", "unsloth", "datasets", "vllm", "llama_cpp")
LIGHT = {
    # every command's --help, through the real Typer app
    "cli --help": "from typer.testing import CliRunner; from sblite.cli import app; runner = CliRunner();"
    "names = [None] + [c.name for c in app.registered_commands];"
    "bad = [n for n in names if runner.invoke(app, [n, '--help'] if n else ['--help']).exit_code];"
    "assert not bad and len(names) >= 10, (bad, names)",
    "rewards": "import sblite.rewards; from sblite.rewards import REWARDS, SelfBudgeterReward",
    "generate engines": "import importlib; [importlib.import_module('sblite.generate.' + m) for m in "
    "('batch', 'hf', 'vllm', 'llamacpp', 'loading', 'stream')]",
    "recipes, options, plan": "import sblite.recipes, sblite.options, sblite.rundir, sblite.train.plan, "
    "sblite.data.prepared, sblite.export",
}


@pytest.mark.parametrize("what", list(LIGHT))
def test_light_entry_points_import_no_heavy_library(what):
    """``sblite --help`` and the library's light modules must work on any machine, instantly: torch & co.
    are imported inside the functions that use them (STYLE §4)."""
    code = f"import sys; {LIGHT[what]}; heavy = [m for m in {HEAVY!r} if m in sys.modules]; print(heavy);" \
        "sys.exit(1 if heavy else 0)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_recipes_lists_names_and_models():
    result = runner.invoke(app, ["recipes"])
    assert result.exit_code == 0
    for name in ("tiny-cpu", "smollm2-135m", "grpo-7b", "sft-1.5b"):
        assert name in result.output


def test_doctor_reports_backend_choice():
    result = runner.invoke(app, ["doctor"])
    assert "backend auto" in result.output and "torch" in result.output
    assert result.exit_code == 0, result.output  # this machine has a complete install


def test_dry_run_of_grpo_7b_shows_unsloth_settings():
    result = runner.invoke(app, ["train", "--recipe", "grpo-7b", "--dry-run"])
    assert result.exit_code == 0, result.output
    for needle in (
        "FastLanguageModel.from_pretrained",
        "'load_in_4bit': True",
        "'fast_inference': True",
        "DeepSeek-R1-Distill-Qwen-7B",
        "recipe is valid",
    ):
        assert needle in result.output


def test_dry_run_applies_overrides_and_stage():
    result = runner.invoke(
        app, ["train", "-r", "tiny-cpu", "--dry-run", "--set", "grpo.temperature=0.3", "--stage", "grpo"]
    )
    assert result.exit_code == 0, result.output
    assert "temperature: 0.3  # --set" in result.output and "stages: [grpo]  # --stage" in result.output


def test_misspelled_key_is_rejected_in_one_line(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("model:\n  name_or_path: builtin:tiny-random\ngrpo:\n  learning_rat: 1.0e-5\n")
    result = runner.invoke(app, ["train", "--recipe", str(path), "--dry-run"])
    assert result.exit_code == 2
    assert "unknown key 'grpo.learning_rat'" in result.output and "typo.yaml" in result.output
    assert "Traceback" not in result.output


def test_bad_stage_is_rejected():
    result = runner.invoke(app, ["train", "-r", "tiny-cpu", "--stage", "rl", "--dry-run"])
    assert result.exit_code == 2 and "--stage 'rl'" in result.output


def test_doctor_fails_when_math_verify_does_not_import(monkeypatch):
    monkeypatch.setitem(sys.modules, "math_verify", None)
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 1, result.output
    row = next(line for line in result.output.splitlines() if "math-verify" in line)
    assert "fail" in row and "Traceback" not in result.output


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--renderings", "short", "--self-renderings", "reference"],
         "data.self_renderings (--self-renderings) reference not in data.renderings (--renderings) ['short']"),
        (["--recipe", "smollm2-135m", "--self-renderings", "reference"],
         "data.self_renderings (--self-renderings) reference not in data.renderings (default) []"),
        (["--self-renderings", "chatty", "--renderings", "chatty"], "--renderings ['chatty']: unknown rendering"),
    ],
)
def test_a_cross_field_error_names_each_flag_it_involves(args, needle, tmp_path):
    """A check across two settings names where each value came from (a flag, the recipe, a default), not the
    first option of the section."""
    result = runner.invoke(app, ["prepare", "--dataset", "arith", "--out", str(tmp_path / "p"), "--dry-run", *args])
    assert result.exit_code != 0 and needle in " ".join(result.output.split()), result.output

"""Every recipe key is read by the command it configures.

For each shipped recipe, each key of each section is changed on its own (to another valid value) and what the
commands resolve from the recipe — ``sblite train``'s plan (TRL config kwargs, backend load and LoRA kwargs,
rewards, pre-fill draw, length check), ``sblite prepare`` / ``eval`` / ``export``'s resolved options — must
change. A key nothing reads fails here, so an ignored section cannot come back unnoticed.
"""

from __future__ import annotations

import copy
import typing
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sblite.cli import app
from sblite.config import Recipe, RecipeError
from sblite.options import EVAL, EXPORT, PREPARE, resolve
from sblite.recipes import load_recipe, load_recipe_dict
from sblite.rundir import RunDir
from sblite.train.plan import train_plan

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))
SECTIONS = ("model", "lora", "data", "sft", "grpo", "reward", "eval", "export")
#: keys that only act when another key has a value: tested with that one set
ENABLED_BY = {
    "model.max_lora_rank": {"model.fast_inference": True},
    "model.gpu_memory_utilization": {"model.fast_inference": True},
    "grpo.prefill_range": {"grpo.prefill_fraction": 0.5, "grpo.prefill_range": [8, 16]},
    "grpo.prefill_fraction": {"grpo.prefill_range": [8, 16]},
    "sft.budget_reading_samples": {"sft.budget_reading_tokens": 3},
    "sft.budget_reading_epochs": {"sft.budget_reading_tokens": 3},
    "sft.budget_reading_prompt": {"sft.budget_reading_tokens": 3},
    "sft.budget_stating_length": {"sft.budget_stating_rows": 2},
    "sft.budget_rows_by_question": {"sft.budget_reading_tokens": 3,
                                    "sft.trl_args": {"train_sampling_strategy": "group_by_length"}},
    "data.self_renderings": {"data.renderings": ["short", "reference"]},
    "data.stating_questions": {"data.renderings": ["reference"], "data.self_renderings": ["reference"],
                               "data.limit": 8, "sft.budget_stating_rows": 2},
}


@pytest.fixture(autouse=True)
def _every_reporter_installed(monkeypatch):
    """Which ``report_to`` packages are installed is this machine's business, not the recipe's."""
    monkeypatch.setattr("sblite.train.trl_args.available_reporters", lambda requested: list(requested))


def behaviour(cfg: Recipe) -> dict:
    return {
        "train": train_plan(cfg),
        "prepare": resolve(PREPARE, {}, cfg, None).values,
        "eval": resolve(EVAL, {}, cfg, None).values,
        "export": resolve(EXPORT, {}, cfg, None).values,
    }


def _candidates(value, annotation) -> list:
    """Other values of a field's type, most likely valid first."""
    return [c for c in _guesses(value, annotation) if c != value]


def _guesses(value, annotation) -> list:
    args = typing.get_args(annotation)
    literals = (
        [a for a in args if not isinstance(a, type)]
        if typing.get_origin(annotation) is typing.Literal
        else []
    )
    for a in args:  # Optional[Literal[...]] / Union members
        if typing.get_origin(a) is typing.Literal:
            literals += list(typing.get_args(a))
    if (
        literals
    ):  # also the other members of a union: list[str] | Literal["all-linear"], bool | Literal["unsloth"]
        others = [True, False] if bool in args else []
        others += [["q_proj"]] if any(typing.get_origin(a) is list for a in args) else []
        return [x for x in literals if x != value] + others
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value * 2, value + 1, max(1, value // 2), value - 1, 1, 2]
    if isinstance(value, float):
        return [value * 0.5, value * 1.5, value + 0.1, value - 0.1, 0.25, 0.9, 2.0]
    if isinstance(value, str):
        return [value + "-other", "other", "q8_0", "f32"]  # a free string, or one a validator checks
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(x, int) for x in value):
            return [type(value)(x // 2 or 1 for x in value), type(value)(value[:-1])]
        if value and all(isinstance(x, float) for x in value):
            return [type(value)(x * 0.5 for x in value)]
        return [[*value, "format"], [*value, "q_proj"], ["q_proj"], ["tensorboard"], ["reference"], value[:-1]]
    if isinstance(value, dict):
        return [{**value, "seed": 1234}]
    # None: guess from the annotation
    names = " ".join(str(a) for a in args) or str(annotation)
    return [x for t, x in (("list", [0.5]), ("int", 64), ("float", 0.5), ("str", "x-other")) if t in names]


def _enabled(raw: dict, section: str, key: str) -> dict:
    data = copy.deepcopy(raw)
    for dotted, v in ENABLED_BY.get(f"{section}.{key}", {}).items():
        s, k = dotted.split(".")
        data.setdefault(s, {})[k] = v
    return data


def _variant(raw: dict, section: str, key: str):
    """A validated recipe with ``section.key`` changed, or None when no candidate value is valid."""
    base = load_recipe_dict(raw)
    field = type(getattr(base, section)).model_fields[key]
    for candidate in _candidates(getattr(getattr(base, section), key), field.annotation):
        data = copy.deepcopy(raw)
        data.setdefault(section, {})[key] = candidate
        try:
            return load_recipe_dict(data), candidate
        except RecipeError:
            continue
    return None, None


def _cases():
    for path in RECIPES:
        cfg = load_recipe(str(path))
        for section in SECTIONS:
            if section == "sft" and "sft" not in cfg.stages:
                continue
            if section in ("grpo", "reward") and "grpo" not in cfg.stages:
                continue
            for key in type(getattr(cfg, section)).model_fields:
                yield pytest.param(path, section, key, id=f"{path.stem}:{section}.{key}")


@pytest.mark.parametrize("path,section,key", list(_cases()))
def test_changing_a_recipe_key_changes_what_a_command_resolves(path, section, key):
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw.setdefault("name", path.stem)
    enabled = _enabled(raw, section, key)
    before = behaviour(load_recipe_dict(enabled))
    changed, value = _variant(enabled, section, key)
    assert changed is not None, f"no valid alternative value for {section}.{key}; extend _candidates"
    assert behaviour(changed) != before, (
        f"{path.name}: {section}.{key}={value!r} changes nothing any command reads"
    )


def test_sections_of_stages_a_recipe_does_not_run_are_the_only_ones_skipped():
    """The skip rule above covers only stage sections; every shipped recipe has a section model for all."""
    assert set(SECTIONS) == set(Recipe.model_fields) - {"name", "description", "stages", "output_dir"}


# --------------------------------------------------------------------------- through the CLI

runner = CliRunner()


def _run_dir(tmp_path: Path, overrides: list[str]) -> Path:
    run = RunDir(tmp_path / "run")
    run.write_recipe(load_recipe("tiny-cpu", overrides))
    return run.root


def test_eval_reads_the_runs_eval_section_and_a_flag_overrides_it(tmp_path):
    run = _run_dir(
        tmp_path, ["eval.limit=3", "eval.max_new_tokens=48", "eval.mode=prefill", "eval.budgets=[8,16]"]
    )
    result = runner.invoke(
        app, ["eval", "--model", str(run), "--out", str(tmp_path / "e"), "--limit", "5", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    rows = {line.split(":")[0]: line for line in result.output.splitlines()}
    assert rows["limit"] == "limit: 5  # --limit"
    assert (
        rows["max_new_tokens"].startswith("max_new_tokens: 48  # ")
        and "recipe.resolved.yaml:" in rows["max_new_tokens"]
    )
    assert rows["mode"].startswith("mode: prefill  #") and rows["budgets"].startswith("budgets: [8, 16]  #")


def test_export_and_merge_read_the_runs_export_section(tmp_path):
    run = _run_dir(tmp_path, ["export.quant=q8_0", "export.merge_dtype=bf16", "export.ollama=true"])
    result = runner.invoke(app, ["export", str(run), "--gguf", "--out", str(tmp_path / "g"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert (
        "quant: q8_0  #" in result.output
        and "dtype: bf16  #" in result.output
        and "ollama: true  #" in result.output
    )
    assert "recipe.resolved.yaml:" in result.output
    flag = runner.invoke(
        app,
        [
            "export",
            str(run),
            "--gguf",
            "--out",
            str(tmp_path / "g"),
            "--quant",
            "f32",
            "--no-ollama",
            "--dry-run",
        ],
    )
    assert "quant: f32  # --quant" in flag.output and "ollama: false  # --ollama" in flag.output
    merged = runner.invoke(app, ["merge", str(run / "sft"), "--out", str(tmp_path / "m"), "--dry-run"])
    assert merged.exit_code == 0 and "dtype: bf16  #" in merged.output, merged.output


def test_prepare_reads_the_recipes_data_and_model_sections():
    result = runner.invoke(
        app, ["prepare", "--recipe", "smollm2-135m", "--dataset", "arith", "--out", "x", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "model: builtin:smollm2-135m  # recipes/smollm2-135m.yaml:" in result.output
    assert (
        "labels: sample  # recipes/smollm2-135m.yaml:" in result.output
        and "dataset: arith  # --dataset" in result.output
    )
    missing = runner.invoke(app, ["prepare", "--recipe", "smollm2-135m", "--out", "x", "--dry-run"])
    assert missing.exit_code == 2 and "data.source" in missing.output


def test_a_bad_flag_value_is_one_line_naming_the_flag():
    result = runner.invoke(
        app, ["eval", "--model", "builtin:tiny-random", "--out", "x", "--mode", "fast", "--dry-run"]
    )
    assert result.exit_code == 2 and "--mode 'fast': choose self, prefill or none" in result.output
    assert "Traceback" not in result.output

"""Typed recipes: every shipped recipe loads, unknown keys and broken constraints fail with a fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sblite.config import Recipe, RecipeError, RewardConfig
from sblite.recipes import apply_overrides, dump_recipe, list_recipes, load_recipe, load_recipe_dict

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
ALL_FILES = sorted(p for p in RECIPES.rglob("*") if p.suffix in (".yaml", ".yml"))
MINIMAL = {"name": "t", "model": {"name_or_path": "builtin:tiny-random"}}


def test_the_promised_recipes_ship():
    assert {"tiny-cpu", "smollm2-135m", "sft-1.5b", "grpo-1.5b", "sft-7b", "grpo-7b"} <= set(list_recipes())


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.stem)
def test_every_recipe_file_loads_and_opens_with_its_command(path):
    recipe = load_recipe(str(path))
    assert isinstance(recipe, Recipe) and recipe.name == path.stem
    first = path.read_text().splitlines()[0]
    assert first.startswith("# sblite train --recipe " + path.stem), first
    # the resolved dump is itself a valid recipe
    assert load_recipe_dict(yaml.safe_load(dump_recipe(recipe))) == recipe


def test_grpo_7b_is_a_4bit_unsloth_recipe():
    r = load_recipe("grpo-7b")
    assert r.model.backend == "unsloth" and r.model.load_in_4bit and r.model.fast_inference
    assert r.stages == ["sft", "grpo"] and r.grpo.loss_type in ("dr_grpo", "dapo")


def _write(tmp_path, data) -> str:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize(
    "section, key", [(None, "stagez"), ("model", "bakend"), ("grpo", "num_generation"), ("reward", "sc_min")]
)
def test_unknown_key_is_rejected_naming_key_and_file(tmp_path, section, key):
    data = {**MINIMAL, "model": dict(MINIMAL["model"])}
    if section is None:
        data[key] = 1
    else:
        data.setdefault(section, {})[key] = 1
    path = _write(tmp_path, data)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    dotted = key if section is None else f"{section}.{key}"
    assert f"unknown key '{dotted}'" in str(err.value) and path in str(err.value)
    line = 1 + next(i for i, t in enumerate(Path(path).read_text().splitlines()) if t.strip().startswith(f"{key}:"))
    assert f"{path}:{line}: unknown key" in str(err.value)  # the file's line of the misspelt key


def test_bad_value_points_at_its_line_and_an_override_at_none(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: r\nmodel:\n  name_or_path: m\ngrpo:\n  num_generations: 1\n")
    with pytest.raises(RecipeError, match=r"r\.yaml:5: grpo\.num_generations"):
        load_recipe(str(path))
    with pytest.raises(RecipeError, match=r"r\.yaml: unknown key 'grpo.epsilonn'"):
        load_recipe(str(path), ["grpo.num_generations=2", "grpo.epsilonn=0.1"])


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["reward.sC_min=0.2"], "accuracy dominance fails"),
        (["reward.r_b=-0.9"], "raise sC_min to at least 0.9"),
        (["grpo.num_generations=1"], "at least 2 completions"),
        (
            ["grpo.num_generations=3", "grpo.per_device_train_batch_size=4"],
            "not divisible by grpo.num_generations",
        ),
        (["grpo.max_completion_length=4096"], "exceeds model.max_seq_length"),
        (["reward.alpha_start=0.1", "reward.alpha_end=6"], "the tolerance must shrink"),
        (["reward.weights=[1, 2]"], "one per func"),
        (["sft.learning_rate=-1"], "sft.learning_rate"),
        (["data.renderings=[short]", "data.self_renderings=[reference]"], "add reference to data.renderings"),
        (["data.self_renderings=[chatty]"], "unknown rendering 'chatty'"),
        (["data.stating_questions=8", "data.limit=8"], "set both (e.g. data.limit=24, data.self_renderings=[reference])"),
        (["data.stating_questions=8", "data.renderings=[reference]", "data.self_renderings=[reference]"],
         "set both"),
        (["data.stating_questions=8", "data.renderings=[reference]", "data.self_renderings=[reference]",
          "data.limit=8"], "train only as budget-stating rows, but sft.budget_stating_rows is 0"),
    ],
)
def test_constraint_violations_say_how_to_fix(overrides, needle):
    with pytest.raises(RecipeError, match="tiny-cpu.yaml") as err:
        load_recipe("tiny-cpu", overrides)
    assert needle in str(err.value)


def test_batch_check_only_applies_when_grpo_runs():
    r = load_recipe("sft-1.5b")  # grpo defaults (8 generations) vs sft-only batch: not an error
    assert r.stages == ["sft"]


def test_overrides_parse_values_as_yaml():
    data = apply_overrides({}, ["grpo.learning_rate=5e-6", "grpo.use_vllm=true", "stages=[grpo]", "a.b.c=x"])
    assert data == {
        "grpo": {"learning_rate": 5e-6, "use_vllm": True},
        "stages": ["grpo"],
        "a": {"b": {"c": "x"}},
    }
    r = load_recipe("tiny-cpu", ["grpo.temperature=0.5", "lora.r=4"])
    assert r.grpo.temperature == 0.5 and r.lora.r == 4


@pytest.mark.parametrize("bad", ["noequals", "=3"])
def test_malformed_override(bad):
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        apply_overrides({}, [bad])


def test_override_into_a_scalar_is_rejected():
    with pytest.raises(RecipeError, match="is not a section"):
        apply_overrides({"name": "x"}, ["name.y=1"])


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nmodel:\n  name_or_path: [unclosed\n")
    with pytest.raises(RecipeError, match=r"broken.yaml:\d+: invalid YAML"):
        load_recipe(str(path))


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(RecipeError, match="known recipes: .*tiny-cpu"):
        load_recipe("nope")


def test_reward_defaults_match_method_md():
    c = RewardConfig()
    assert (c.r_f, c.r_b, c.sC_min, c.sC_max, c.sW_min, c.sW_max) == (-1.0, -0.5, 0.5, 1.0, -0.5, 0.0)
    assert (c.alpha_start, c.alpha_end, c.alpha_schedule) == (6.0, 0.1, "linear")
    assert c.sC_min + c.r_b >= c.sW_max

"""Batched generation on the tiny random model: shapes, finish reasons, determinism, engine agreement."""

from __future__ import annotations

import pytest

from sblite.generate.batch import Generation
from sblite.generate.hf import _finish, generate_batch, load_for_inference
from sblite.protocol import PLAIN_SYSTEM_PROMPT, render_prompt


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_for_inference(str(tiny_model_dir))


def _prompts(tok, n=3):
    qs = ["What is 2 + 3?", "Ann has 4 pens and gets 5 more. How many pens does Ann have now?", "7 * 8?"][:n]
    return [render_prompt(tok, q, system_prompt=PLAIN_SYSTEM_PROMPT) for q in qs]


def test_load_for_inference_left_pads(tiny):
    model, tok = tiny
    assert tok.padding_side == "left" and tok.pad_token_id is not None
    assert not model.training


def test_shapes_and_finish_reasons(tiny):
    model, tok = tiny
    out = generate_batch(
        model,
        tok,
        _prompts(tok),
        max_new_tokens=12,
        temperature=1.0,
        num_return_sequences=3,
        batch_size=2,
        seed=1,
    )
    assert len(out) == 3 and all(len(g) == 3 for g in out)
    for g in (x for gs in out for x in gs):
        assert isinstance(g, Generation)
        assert g.n_tokens == len(g.token_ids) <= 12
        assert g.finish_reason == ("length" if g.n_tokens == 12 else "stop")
        assert tok.eos_token_id not in g.token_ids
        assert g.text == tok.decode(list(g.token_ids), skip_special_tokens=True)


def test_same_seed_same_samples(tiny):
    model, tok = tiny
    kw = dict(max_new_tokens=10, temperature=1.0, num_return_sequences=2, batch_size=3)
    a = generate_batch(model, tok, _prompts(tok), seed=5, **kw)
    b = generate_batch(model, tok, _prompts(tok), seed=5, **kw)
    c = generate_batch(model, tok, _prompts(tok), seed=6, **kw)
    assert a == b
    assert a != c


def test_compact_engine_matches_generate_greedy(tiny):
    """The cache-compacting loop must decode exactly what transformers' generate decodes."""
    model, tok = tiny
    kw = dict(max_new_tokens=16, temperature=0.0, batch_size=3)
    hf = generate_batch(model, tok, _prompts(tok), engine="hf", **kw)
    ours = generate_batch(model, tok, _prompts(tok), engine="compact", **kw)
    assert [g[0].token_ids for g in hf] == [g[0].token_ids for g in ours]
    assert [g[0].finish_reason for g in hf] == [g[0].finish_reason for g in ours]


def test_stop_strings(tiny):
    model, tok = tiny
    prompts = _prompts(tok, 1)
    free = generate_batch(model, tok, prompts, max_new_tokens=16, temperature=1.0, seed=3)[0][0]
    ids = list(free.token_ids)
    for i in range(1, len(ids)):  # a character that first appears with token i
        before, upto = tok.decode(ids[:i]), tok.decode(ids[: i + 1])
        new = [c for c in upto[len(before) :] if c.strip() and c not in before]
        if upto.startswith(before) and new:
            break
    else:
        pytest.skip("no usable stop string in the sampled continuation")
    cut = generate_batch(
        model, tok, prompts, max_new_tokens=16, temperature=1.0, seed=3, stop_strings=[new[0]]
    )[0][0]
    assert cut.finish_reason == "stop" and cut.n_tokens == i + 1 and new[0] in cut.text


def test_finish_helper():
    assert _finish([5, 6, 2, 7], {2}, 0, 10) == ([5, 6], "stop")
    assert _finish([5, 6, 0, 0], {2}, 0, 4) == ([5, 6], "stop")  # padded after a stop string
    assert _finish([5, 6, 7, 8], {2}, 0, 4) == ([5, 6, 7, 8], "length")


def test_bad_arguments(tiny):
    model, tok = tiny
    with pytest.raises(ValueError):
        generate_batch(model, tok, ["x"], max_new_tokens=0, temperature=1.0)


# ------------------------------------------------------------------------ what --model names (no model loaded)


def _fake_run(root, stages, *, model=None):
    """A run directory as ``sblite train`` lays it out, with adapter configs but no weights."""
    import json

    import yaml

    root.mkdir(parents=True)
    (root / "recipe.resolved.yaml").write_text(
        yaml.safe_dump({"model": model or {"name_or_path": "base/model", "instruction_in_user": True}})
    )
    for s in stages:
        (root / s).mkdir()
        (root / s / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "from/adapter"}))
    return root


def test_run_dir_resolves_to_its_newest_finished_stage(tmp_path):
    from sblite.generate.loading import resolve_model_spec

    run = _fake_run(tmp_path / "run", ["sft", "grpo"])
    spec = resolve_model_spec(str(run))
    assert spec.adapter == str(run / "grpo") and spec.label == "run/grpo" and spec.run_dir == str(run)
    assert spec.base == "base/model" and spec.instruction_in_user
    assert resolve_model_spec(str(run), stage="sft").adapter == str(run / "sft")
    only_sft = _fake_run(tmp_path / "early", ["sft"])
    assert resolve_model_spec(str(only_sft)).adapter == str(only_sft / "sft")


def test_run_dir_without_the_stage_asked_for_is_a_clear_error(tmp_path):
    from sblite.generate.loading import resolve_model_spec

    run = _fake_run(tmp_path / "run", ["sft"])
    with pytest.raises(FileNotFoundError, match="no finished grpo stage"):
        resolve_model_spec(str(run), stage="grpo")
    with pytest.raises(FileNotFoundError, match="no finished grpo or sft stage"):
        resolve_model_spec(str(_fake_run(tmp_path / "empty", [])))


def test_adapter_dir_inside_and_outside_a_run(tmp_path):
    import shutil

    from sblite.generate.loading import resolve_model_spec

    run = _fake_run(tmp_path / "run", ["sft"])
    inside = resolve_model_spec(str(run / "sft"))
    assert inside.base == "base/model" and inside.run_dir == str(run) and inside.instruction_in_user
    loose = tmp_path / "loose"
    shutil.copytree(run / "sft", loose)
    free = resolve_model_spec(str(loose))
    assert free.base == "from/adapter" and free.run_dir is None and not free.instruction_in_user
    assert free.adapter == str(loose)
    plain = resolve_model_spec("builtin:tiny-random")
    assert plain.base == "builtin:tiny-random" and plain.adapter is None


def test_open_batch_engine_wants_exactly_one_source():
    from sblite.generate.batch import open_batch_engine

    with pytest.raises(ValueError, match="exactly one"):
        open_batch_engine()
    with pytest.raises(ValueError, match="exactly one"):
        open_batch_engine(model="m", gguf="f.gguf")

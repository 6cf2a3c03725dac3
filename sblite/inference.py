"""Load any model sblite can evaluate or chat with: a run directory, an adapter, a model dir, a name.

``sblite eval --model`` and ``sblite generate --model`` take the same specs:

- a RUN_DIR from ``sblite train``: its newest stage (``grpo/``, else ``sft/``) on top of the recipe's base
  model, with the prompt settings the run trained with (``instruction_in_user``, chat template);
- a LoRA adapter directory (``adapter_config.json``): its base model + the adapter;
- a full model directory, a ``builtin:`` name, or a hub id.

Adapters are merged into the base weights after loading (``merge_and_unload``): generation is then as fast
as the plain model's, and the numbers are the adapter's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class ModelSpec:
    """What to load, and how the model expects to be prompted."""

    base: str
    adapter: str | None = None
    instruction_in_user: bool = False
    chat_template: str | None = None
    label: str = ""
    run_dir: str | None = None


def _recipe_model(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "recipe.resolved.yaml"
    if not path.is_file():
        return {}
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("model", {})


def resolve_model_spec(spec: str, *, stage: str | None = None) -> ModelSpec:
    """Interpret ``--model``. ``stage`` picks ``sft`` or ``grpo`` inside a run directory (default: newest)."""
    path = Path(spec)
    if path.is_dir() and (path / "recipe.resolved.yaml").is_file():
        stages = [stage] if stage else ["grpo", "sft"]
        for s in stages:
            if (path / s / "adapter_config.json").is_file():
                model = _recipe_model(path)
                return ModelSpec(
                    base=model.get("adapter")
                    and _adapter_base(Path(model["adapter"]))
                    or model["name_or_path"],
                    adapter=str(path / s),
                    instruction_in_user=bool(model.get("instruction_in_user", False)),
                    chat_template=model.get("chat_template"),
                    label=f"{path.name}/{s}",
                    run_dir=str(path),
                )
        raise FileNotFoundError(f"{spec}: no finished {' or '.join(stages)} stage (no adapter_config.json)")
    if path.is_dir() and (path / "adapter_config.json").is_file():
        run = path.parent if (path.parent / "recipe.resolved.yaml").is_file() else None
        model = _recipe_model(run) if run else {}
        return ModelSpec(
            base=model.get("name_or_path") or _adapter_base(path),
            adapter=str(path),
            instruction_in_user=bool(model.get("instruction_in_user", False)),
            chat_template=model.get("chat_template"),
            label=path.name,
            run_dir=str(run) if run else None,
        )
    return ModelSpec(base=spec, label=path.name if path.is_dir() else spec)


def _adapter_base(adapter: Path) -> str:
    cfg = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise FileNotFoundError(f"{adapter}/adapter_config.json names no base model")
    return base


def load_model(spec: ModelSpec, *, dtype: str = "auto", device: str | None = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` in eval mode with left padding; an adapter is merged into the base."""
    from sblite.generation import load_for_inference

    model, tok = load_for_inference(spec.base, dtype=dtype, device=device, tokenizer=spec.adapter)
    if spec.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, spec.adapter).merge_and_unload()
        model.eval()
    if spec.chat_template:
        tok.chat_template = spec.chat_template
    return model, tok


@dataclass(frozen=True)
class GGUFSpec:
    """A GGUF file and how to prompt it: the tokenizer (for the chat template and token counts) comes from
    the merged model dir named in its provenance JSON when that still exists, else from the GGUF itself."""

    path: str
    tokenizer_source: tuple[str, str | None]  # (directory, gguf_file or None)
    instruction_in_user: bool = False
    label: str = ""


def resolve_gguf(path: str) -> GGUFSpec:
    p = Path(path)
    if not p.is_file() or p.suffix != ".gguf":
        raise FileNotFoundError(f"{path}: not a .gguf file")
    prov_path = p.with_name(p.name + ".provenance.json")
    prov = json.loads(prov_path.read_text(encoding="utf-8")) if prov_path.is_file() else {}
    recipe_model = ((prov.get("source") or {}).get("recipe") or {}).get("model") or {}
    model_dir = prov.get("model_dir")
    if model_dir and (Path(model_dir) / "tokenizer_config.json").is_file():
        source: tuple[str, str | None] = (str(model_dir), None)
    else:
        source = (str(p.parent), p.name)
    return GGUFSpec(str(p), source, bool(recipe_model.get("instruction_in_user", False)), p.name)


def load_gguf_tokenizer(spec: GGUFSpec):
    from transformers import AutoTokenizer

    directory, gguf_file = spec.tokenizer_source
    tok = AutoTokenizer.from_pretrained(directory, **({"gguf_file": gguf_file} if gguf_file else {}))
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_gguf_with_transformers(spec: GGUFSpec):
    """The GGUF's weights in transformers (dequantised): the fallback engine when llama.cpp is not installed."""
    import contextlib
    import io

    from transformers import AutoModelForCausalLM

    p = Path(spec.path)
    with contextlib.redirect_stderr(io.StringIO()):  # its de-quantisation bar is a bare tqdm on stderr
        model = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name)
    model.eval()
    return model

"""What ``--model`` and ``--gguf`` name, turned into a loaded model and the way it expects to be prompted.

``sblite eval --model`` and ``sblite generate --model`` take the same specs:

- a RUN_DIR from ``sblite train``: its newest stage (``grpo/``, else ``sft/``) on top of the recipe's base
  model, with the prompt settings the run trained with (``instruction_in_user``, chat template);
- a LoRA adapter directory (``adapter_config.json``): its base model + the adapter;
- a full model directory, a ``builtin:`` name, or a hub id.

``--gguf`` names a ``.gguf`` file; its tokenizer comes from the merged model dir its provenance names.

Adapters are merged into the base weights after loading (``merge_and_unload``): generation is then as fast
as the plain model's, and the numbers are the adapter's. The run directory's layout is ``sblite.rundir``'s;
decoding is the engines' (``hf``, ``llamacpp``): nothing here generates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sblite.rundir import ADAPTER_CONFIG, STAGES, RunDir


@dataclass(frozen=True)
class ModelSpec:
    """What to load, and how the model expects to be prompted."""

    base: str
    adapter: str | None = None
    instruction_in_user: bool = False
    chat_template: str | None = None
    label: str = ""
    run_dir: str | None = None


def _recipe_model(run: RunDir | None) -> dict[str, Any]:
    """The ``model`` section of the run's stored recipe ({} without a run or a recipe)."""
    return run.recipe_dict().get("model", {}) if run is not None else {}


def resolve_model_spec(spec: str, *, stage: str | None = None) -> ModelSpec:
    """Interpret ``--model``. ``stage`` picks ``sft`` or ``grpo`` inside a run directory (default: newest)."""
    path = Path(spec)
    if RunDir.is_run(path):
        run = RunDir(path)
        stages = [stage] if stage else None
        found = run.newest_stage(stages)
        if found is None:
            names = " or ".join(stages or reversed(STAGES))  # newest first, as searched
            raise FileNotFoundError(f"{spec}: no finished {names} stage (no {ADAPTER_CONFIG})")
        model = _recipe_model(run)
        return ModelSpec(
            base=model.get("adapter") and _adapter_base(Path(model["adapter"])) or model["name_or_path"],
            adapter=str(run.adapter(found)),
            instruction_in_user=bool(model.get("instruction_in_user", False)),
            chat_template=model.get("chat_template"),
            label=f"{path.name}/{found}",
            run_dir=str(run),
        )
    if path.is_dir() and (path / ADAPTER_CONFIG).is_file():
        owner = RunDir.of_adapter(path)
        model = _recipe_model(owner)
        return ModelSpec(
            base=model.get("name_or_path") or _adapter_base(path),
            adapter=str(path),
            instruction_in_user=bool(model.get("instruction_in_user", False)),
            chat_template=model.get("chat_template"),
            label=path.name,
            run_dir=str(owner) if owner else None,
        )
    return ModelSpec(base=spec, label=path.name if path.is_dir() else spec)


def _adapter_base(adapter: Path) -> str:
    cfg = json.loads((adapter / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise FileNotFoundError(f"{adapter}/{ADAPTER_CONFIG} names no base model")
    return base


def load_model(spec: ModelSpec, *, dtype: str = "auto", device: str | None = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` in eval mode with left padding; an adapter is merged into the base."""
    from sblite.generate.hf import load_for_inference

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
    """``--gguf``: the file, its tokenizer source and prompt settings (from ``FILE.provenance.json``)."""
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
    """The GGUF's tokenizer with left padding and a pad token, as ``hf.load_for_inference`` sets them."""
    from transformers import AutoTokenizer

    directory, gguf_file = spec.tokenizer_source
    tok = AutoTokenizer.from_pretrained(directory, **({"gguf_file": gguf_file} if gguf_file else {}))
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_gguf_with_transformers(spec: GGUFSpec):
    """The GGUF's weights in transformers (dequantised): the fallback engine when llama.cpp is not installed."""
    from transformers import AutoModelForCausalLM

    from sblite.logs import quiet_libraries

    quiet_libraries()  # the GGUF loader's de-quantisation bar
    p = Path(spec.path)
    model = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name)
    model.eval()
    return model

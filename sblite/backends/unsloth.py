"""The ``unsloth`` backend: Unsloth's 4-bit LoRA, fused kernels and optional in-process vLLM rollouts.

CUDA only. ``import unsloth`` patches transformers and TRL when it runs, so it must come before TRL's
trainers are imported: ``UnslothBackend()`` imports it, and ``sblite/train/run.py`` imports TRL only after the
backend exists. Loading an adapter directory (an SFT run's ``sft/``) goes through
``FastLanguageModel.from_pretrained`` too, which reads the base model from the adapter's config.

Importing this module must not import unsloth (it raises without CUDA); only the constructor does.
"""

from __future__ import annotations

from typing import Any

from sblite.backends import unsloth_load_kwargs
from sblite.backends.base import lora_kwargs, prepare_tokenizer
from sblite.models import resolve_model


class UnslothBackend:
    name = "unsloth"

    def __init__(self) -> None:
        import unsloth  # noqa: F401 - must precede trl/transformers trainer imports

        self._fast = unsloth.FastLanguageModel

    def load(
        self, model_cfg, lora_cfg, *, adapter: str | None = None, seed: int = 42, trainable: bool = True
    ):
        kwargs = unsloth_load_kwargs(model_cfg, lora_cfg)
        kwargs["model_name"] = adapter or resolve_model(model_cfg.name_or_path)
        model, tokenizer = self._fast.from_pretrained(**kwargs)
        tokenizer = prepare_tokenizer(tokenizer, model_cfg)
        if adapter is None and lora_cfg.enabled and trainable:
            kw = lora_kwargs(lora_cfg, seed=seed)
            model = self._fast.get_peft_model(model, max_seq_length=model_cfg.max_seq_length, **kw)
        if trainable:
            self._fast.for_training(model)
        return model, tokenizer

    def load_tokenizer(self, model_cfg, source: str | None = None):
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(source or resolve_model(model_cfg.name_or_path))
        return prepare_tokenizer(tok, model_cfg)

    def trainer_kwargs(self, model_cfg) -> dict[str, Any]:
        import torch

        bf16 = model_cfg.dtype == "bfloat16" or (model_cfg.dtype == "auto" and torch.cuda.is_bf16_supported())
        return {"bf16": bf16, "fp16": not bf16}

    def patch_trainers(self) -> None:
        """Unsloth patches TRL on import; older releases also need ``PatchFastRL`` for GRPO."""
        import unsloth

        patch = getattr(unsloth, "PatchFastRL", None)
        if patch is not None:
            try:
                patch("GRPO", self._fast)
            except Exception:  # noqa: BLE001 - newer Unsloth patches automatically and may refuse
                pass

    def device_name(self) -> str:
        import torch

        return torch.cuda.get_device_name(0)

"""The contract every backend implements (``Backend``) and the pieces both share.

A backend loads a model for training (base + LoRA, or an adapter resumed as trainable), loads its tokenizer,
supplies the device/precision arguments of the TRL configs, says which recipe settings its engine overrides,
and frees what it loaded (weights, an in-process vLLM engine) before the next stage loads.
``sblite/train`` talks to this interface only. Nothing here imports torch, transformers or unsloth.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Backend(Protocol):
    """What ``sblite.train`` needs from an engine (``hf``: transformers + PEFT; ``unsloth``)."""

    name: str

    def load(
        self, model_cfg, lora_cfg, *, adapter: str | None = None, seed: int = 42, trainable: bool = True
    ) -> tuple[Any, Any]:
        """``(model, tokenizer)``: the base model with a new LoRA, or with ``adapter`` loaded (trainable)."""
        ...

    def load_tokenizer(self, model_cfg, source: str | None = None) -> Any:
        """The tokenizer of ``source`` (an adapter dir) or of the recipe's model, prepared for training."""
        ...

    def trainer_kwargs(self, model_cfg) -> dict[str, Any]:
        """Device and precision arguments for ``SFTConfig`` / ``GRPOConfig`` (``use_cpu``, ``bf16``, …)."""
        ...

    def recipe_notes(self, cfg) -> list[str]:
        """One line for each recipe setting this engine overrides or ignores on this device, and what it does
        instead (printed at train start)."""
        ...

    def release(self) -> None:
        """Free every model this backend loaded, and any inference engine started with one, so the next stage
        starts with the memory back. Called once a stage has returned (its trainer and model are out of scope);
        only what the caller still references survives."""
        ...

    def device_name(self) -> str:
        """The device as provenance records it (``cpu``, the GPU's name)."""
        ...


def lora_kwargs(lora_cfg, *, seed: int = 42) -> dict:
    """LoRA settings shared by both backends (``get_peft_model`` / ``peft.LoraConfig``)."""
    return {
        "r": lora_cfg.r,
        "lora_alpha": lora_cfg.alpha,
        "lora_dropout": lora_cfg.dropout,
        "target_modules": lora_cfg.target_modules,
        "use_rslora": lora_cfg.use_rslora,
        "bias": "none",
        "random_state": seed,
        "use_gradient_checkpointing": lora_cfg.use_gradient_checkpointing,
    }


def prepare_tokenizer(tok, model_cfg):
    """Pad token, padding side and chat template, the same way for every backend and stage."""
    if model_cfg.chat_template:
        tok.chat_template = model_cfg.chat_template
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if not getattr(tok, "chat_template", None):
        raise ValueError(
            f"{model_cfg.name_or_path} has no chat template; set model.chat_template in the recipe"
        )
    return tok

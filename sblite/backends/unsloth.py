"""The ``unsloth`` backend: Unsloth's 4-bit LoRA, fused kernels and optional in-process vLLM rollouts.

CUDA only. ``import unsloth`` patches transformers, PEFT and TRL's trainers (GRPO included: it runs
``PatchFastRL`` itself) when it runs, and warns that the unpatched classes run if any of them was imported
first. So ``UnslothBackend()`` imports it, and ``sblite/train/run.py`` builds the backend before anything
imports transformers, TRL, PEFT or datasets. Loading an adapter directory (an SFT run's ``sft/``) goes through
``FastLanguageModel.from_pretrained`` too, which reads the base model from the adapter's config.

Precision: ``model.dtype`` reaches the loader as a ``torch.dtype`` (``None`` for ``auto``: Unsloth picks bf16
where the GPU has it, else fp16), and the trainers get the matching ``bf16``/``fp16`` flags from
``backends.cuda_dtype``, so a bfloat16 recipe on a T4/V100 trains in float16 and says so.

``model.fast_inference`` makes a load start an in-process vLLM engine (``model.vllm_engine``) holding
``model.gpu_memory_utilization`` of the GPU. Unsloth's GRPO trainer then sets ``use_vllm`` and
``vllm_mode="colocate"`` itself and samples with that engine, so the ``grpo.use_vllm``, ``grpo.vllm_mode`` and
``grpo.vllm_gpu_memory_utilization`` settings do nothing (``recipe_notes`` says so). ``release`` stops the
engines this backend's loads started (unsloth_zoo's ``delete_vllm``) before the next stage loads.

Importing this module must not import unsloth (it raises without CUDA); only the constructor does.
"""

from __future__ import annotations

from typing import Any

from sblite.backends import cuda_dtype, free_memory, unsloth_load_kwargs
from sblite.backends.base import lora_kwargs, prepare_tokenizer
from sblite.models import resolve_model

#: GRPO settings Unsloth's trainer overrides when the model carries its own vLLM engine (``use_vllm`` too, but
#: it is only ever turned on, which is what ``fast_inference`` asks for)
_ENGINE_OVERRIDES = ("vllm_mode", "vllm_gpu_memory_utilization")


class UnslothBackend:
    name = "unsloth"

    def __init__(self) -> None:
        import unsloth  # must precede transformers/trl/peft: it patches them at import

        self._fast = unsloth.FastLanguageModel
        self._engines: list[Any] = []  # vLLM engines started by fast_inference loads, until release()

    def load(
        self, model_cfg, lora_cfg, *, adapter: str | None = None, seed: int = 42, trainable: bool = True
    ):
        kwargs = unsloth_load_kwargs(model_cfg, lora_cfg)
        kwargs["model_name"] = adapter or resolve_model(model_cfg.name_or_path)
        if kwargs["dtype"] is not None:
            kwargs["dtype"] = cuda_dtype(model_cfg.dtype)[0]
        model, tokenizer = self._fast.from_pretrained(**kwargs)
        engine = getattr(model, "vllm_engine", None)
        if engine is not None:
            self._engines.append(engine)
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
        """``bf16``/``fp16`` matching the dtype the model was loaded in (Unsloth's trainers raise on a
        mismatch). A float32 model gets neither: Unsloth's trainers then pick its mixed precision."""
        import torch

        dtype = cuda_dtype(model_cfg.dtype)[0]
        return {"bf16": dtype == torch.bfloat16, "fp16": dtype == torch.float16}

    def recipe_notes(self, cfg) -> list[str]:
        """The precision swap of ``cuda_dtype``, and GRPO vLLM settings other than their defaults that
        ``fast_inference`` makes Unsloth ignore (a resolved recipe file repeats every default: not a request)."""
        notes = []
        dtype_note = cuda_dtype(cfg.model.dtype)[1]
        if dtype_note:
            notes.append(dtype_note)
        fields = type(cfg.grpo).model_fields
        overridden = [k for k in _ENGINE_OVERRIDES if getattr(cfg.grpo, k) != fields[k].default]
        if cfg.model.fast_inference and "grpo" in cfg.stages and overridden:
            settings = ", ".join(f"grpo.{k}={getattr(cfg.grpo, k)}" for k in overridden)
            notes.append(
                f"{settings} ignored: with model.fast_inference Unsloth's GRPO trainer samples with the model's "
                f"own vLLM engine (colocate), which holds model.gpu_memory_utilization="
                f"{cfg.model.gpu_memory_utilization} of the GPU; set that instead"
            )
        return notes

    def release(self) -> None:
        """Stop the vLLM engines fast_inference loads started, then collect the models and empty the cache."""
        engines, self._engines = self._engines, []
        if engines:
            from unsloth_zoo.vllm_utils import delete_vllm

            while engines:
                delete_vllm(engines.pop())
        free_memory()

    def device_name(self) -> str:
        import torch

        return torch.cuda.get_device_name(0)

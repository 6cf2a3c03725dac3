"""The ``hf`` backend: transformers + PEFT. Runs anywhere; QLoRA when CUDA and bitsandbytes exist.

On CPU the model trains as ``model.dtype`` says: float32 (``auto``, the default) with ``use_cpu=True,
bf16=False``, or ``bfloat16``: bf16 weights and ``bf16=True`` (autocast; the LoRA weights and optimizer stay
float32 in PEFT), faster on a CPU with native bf16 (AVX512-BF16/AMX; ``benchmarks/cpu_train_speed.py``
measures it), and a ``recipe_notes`` warning on one without; ``float16`` is refused for training there (no
loss scaler off CUDA), not run as float16 weights. With CUDA it uses bf16 where the
GPU supports it (``backends.cuda_dtype``: a recipe's bfloat16 on a GPU without
it becomes float16, and ``recipe_notes`` says so). Everything backend-specific that the trainers need is in
``trainer_kwargs``, so ``sblite/train`` never branches on the backend (the contract: ``backends/base.py``).
"""

from __future__ import annotations

import os
from typing import Any

from sblite.backends import cpu_native_bf16, cuda_dtype, free_memory, torch_dtype
from sblite.backends.base import lora_kwargs, prepare_tokenizer
from sblite.models import resolve_model


def cpu_bf16_note(dtype: str) -> str | None:
    """Why ``model.dtype=bfloat16`` will be slow on this CPU, or None (float32, or native bf16 matmuls)."""
    if dtype != "bfloat16" or cpu_native_bf16():
        return None
    return ("model.dtype=bfloat16 on a CPU without native bfloat16 (AVX512-BF16 or AMX): torch emulates it, "
            "so training is slower than float32; set model.dtype=float32")


def hf_load_kwargs(model_cfg) -> dict[str, Any]:
    """What ``AutoModelForCausalLM.from_pretrained`` gets from the recipe's ``model:`` section (``dtype`` as
    written: ``auto`` becomes bf16/fp16 on a GPU, float32 on CPU at load time). Shown by ``--dry-run``."""
    kwargs: dict[str, Any] = {
        "name_or_path": model_cfg.name_or_path,
        "dtype": model_cfg.dtype,
        "trust_remote_code": model_cfg.trust_remote_code,
        "load_in_4bit": model_cfg.load_in_4bit,
    }
    if model_cfg.gguf_file:
        kwargs["gguf_file"] = model_cfg.gguf_file
    return kwargs


class HFBackend:
    name = "hf"

    def __init__(self) -> None:
        import torch

        self.cuda = torch.cuda.is_available()

    # -------------------------------------------------------------------------------------------- loading

    def _dtype(self, model_cfg):
        import torch

        if self.cuda:
            return cuda_dtype(model_cfg.dtype)[0]
        return torch_dtype(model_cfg.dtype) or torch.float32

    def load_tokenizer(self, model_cfg, source: str | None = None):
        from transformers import AutoTokenizer

        path = source or resolve_model(model_cfg.name_or_path)
        kwargs: dict[str, Any] = {"trust_remote_code": model_cfg.trust_remote_code}
        if model_cfg.gguf_file and source is None:
            kwargs["gguf_file"] = model_cfg.gguf_file
        tok = AutoTokenizer.from_pretrained(path, **kwargs)
        return prepare_tokenizer(tok, model_cfg)

    def load(
        self, model_cfg, lora_cfg, *, adapter: str | None = None, seed: int = 42, trainable: bool = True
    ):
        """Base model + LoRA (new, or ``adapter`` resumed as trainable) + tokenizer."""
        import torch
        from transformers import AutoModelForCausalLM

        path = resolve_model(model_cfg.name_or_path)
        kwargs = hf_load_kwargs(model_cfg)
        kwargs.pop("name_or_path")
        kwargs["dtype"] = self._dtype(model_cfg)
        quantized = False
        if kwargs.pop("load_in_4bit"):
            if not self.cuda:
                raise RuntimeError(
                    "model.load_in_4bit needs CUDA + bitsandbytes; set model.load_in_4bit=false on CPU"
                )
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=kwargs["dtype"],
            )
            quantized = True
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        tokenizer = self.load_tokenizer(model_cfg, source=adapter)
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        checkpointing = bool(lora_cfg.use_gradient_checkpointing) and trainable
        if quantized:
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
        elif checkpointing:
            model.gradient_checkpointing_enable()
            model.enable_input_require_grads()
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter, is_trainable=trainable)
        elif lora_cfg.enabled and trainable:
            from peft import LoraConfig, get_peft_model

            kw = lora_kwargs(lora_cfg, seed=seed)
            kw.pop("random_state")
            kw.pop("use_gradient_checkpointing")
            model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **kw))
        return model, tokenizer

    # -------------------------------------------------------------------------------------------- training

    def trainer_kwargs(self, model_cfg) -> dict[str, Any]:
        """Device/precision arguments for ``SFTConfig``/``GRPOConfig``."""
        import torch

        if not self.cuda:
            if model_cfg.dtype == "float16":
                from sblite.train import TrainingError

                raise TrainingError(
                    "model.dtype=float16 does not train on CPU: fp16 mixed precision (a loss scaler) needs CUDA, "
                    "and float16 weights without one train silently wrong; set model.dtype=bfloat16 (faster on a "
                    "CPU with native bf16, see `sblite doctor`) or float32"
                )
            bf16 = self._dtype(model_cfg) == torch.bfloat16
            kwargs: dict[str, Any] = {"use_cpu": True, "bf16": bf16, "fp16": False}
            if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun: data-parallel over gloo
                kwargs["ddp_backend"] = "gloo"
                kwargs["ddp_find_unused_parameters"] = False  # LoRA uses every trainable parameter
            return kwargs
        dtype = self._dtype(model_cfg)
        return {"bf16": dtype == torch.bfloat16, "fp16": dtype == torch.float16}

    def recipe_notes(self, cfg) -> list[str]:
        """The precision swap ``cuda_dtype`` makes on a GPU without bfloat16; on CPU, a bfloat16 recipe on a
        processor that only emulates bf16 (slower than float32, not faster)."""
        note = cuda_dtype(cfg.model.dtype)[1] if self.cuda else cpu_bf16_note(cfg.model.dtype)
        return [note] if note else []

    def release(self) -> None:
        """No engine to stop: once the stage's references are gone, collect them and empty the CUDA cache."""
        free_memory()

    def device_name(self) -> str:
        import torch

        return torch.cuda.get_device_name(0) if self.cuda else "cpu"

"""The backend seam: which engine loads, adapts and trains the model.

- ``unsloth`` (``sblite/backends/unsloth.py``): Unsloth's 4-bit LoRA and fused kernels; CUDA only.
- ``hf`` (``sblite/backends/hf.py``): transformers + PEFT (+ bitsandbytes for QLoRA on CUDA); runs anywhere.

``select_backend`` decides, and says why, without importing either engine: ``import unsloth`` raises on a
machine without CUDA and costs seconds where it works, so only the chosen backend module imports it.
The rest of sblite asks this module for a backend and never branches on which one it got; what a backend
must provide is ``sblite/backends/base.py``'s ``Backend`` protocol. ``cuda_dtype`` is the one place a recipe's
``model.dtype`` meets the GPU's abilities (bfloat16 or not), for both backends' loads and trainer flags.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Literal

from sblite.backends.base import Backend

BackendName = Literal["unsloth", "hf"]


@dataclass(frozen=True)
class BackendChoice:
    name: BackendName
    reason: str


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def unsloth_installed() -> bool:
    return importlib.util.find_spec("unsloth") is not None


def cpu_native_bf16() -> bool:
    """Whether this CPU runs bfloat16 matmuls natively (AVX512-BF16 or AMX, as oneDNN sees it); elsewhere torch
    emulates them and ``model.dtype=bfloat16`` trains slower than float32."""
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def select_backend(requested: str = "auto") -> BackendChoice:
    """Resolve ``auto|unsloth|hf`` to a concrete backend, with the reason shown in logs and ``doctor``.

    Asking for ``unsloth`` where it cannot run is an error, not a silent fallback.
    """
    if requested == "hf":
        return BackendChoice("hf", "requested explicitly")
    cuda = cuda_available()
    has_unsloth = unsloth_installed()
    if requested == "unsloth":
        if not cuda:
            raise RuntimeError("backend 'unsloth' needs a CUDA GPU and none is visible; use --backend hf")
        if not has_unsloth:
            raise RuntimeError(
                "backend 'unsloth' is not installed; pip install 'sblite[gpu]' or use --backend hf"
            )
        return BackendChoice("unsloth", "requested explicitly")
    if requested != "auto":
        raise ValueError(f"unknown backend {requested!r}; choose auto, unsloth or hf")
    if cuda and has_unsloth:
        return BackendChoice("unsloth", "CUDA GPU found and unsloth is installed")
    if cuda:
        return BackendChoice("hf", "CUDA GPU found but unsloth is not installed (pip install 'sblite[gpu]')")
    return BackendChoice("hf", "no CUDA GPU: Unsloth needs one; transformers + PEFT on CPU")


def torch_dtype(name: str):
    """``model.dtype`` as a ``torch.dtype`` (``auto`` → ``None``: the loader decides)."""
    if name == "auto":
        return None
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def cuda_dtype(name: str):
    """``(torch.dtype, note)``: what a CUDA load and its trainer use for ``model.dtype=name``.

    ``auto`` is bfloat16 where the GPU has it, else float16. An explicit ``bfloat16`` on a GPU without it
    (T4, V100) becomes float16 with a note saying so: Unsloth's loader downcasts such a model itself, and its
    trainers then refuse ``bf16=True`` ("Model is in float16 precision but you want to use bfloat16").
    ``note`` is ``None`` when the recipe gets what it asked for.
    """
    import torch

    bf16 = torch.cuda.is_bf16_supported()
    if name == "auto":
        return (torch.bfloat16 if bf16 else torch.float16), None
    if name == "bfloat16" and not bf16:
        return torch.float16, (
            "model.dtype=bfloat16 but this GPU has no bfloat16 (e.g. T4, V100): loading and training in "
            "float16 instead (set model.dtype=float16 to silence this)"
        )
    return torch_dtype(name), None


def unsloth_load_kwargs(model_cfg, lora_cfg) -> dict:
    """Keyword arguments for ``FastLanguageModel.from_pretrained`` (shown by ``--dry-run``, used on GPU).

    ``dtype`` is a ``torch.dtype`` or ``None``: Unsloth's loader turns only the strings ``"float16"`` and
    ``"bfloat16"`` into dtypes and asserts on anything else (``unsloth/models/loader.py``), so ``float32``
    written as a string would stop the load. The backend swaps in ``cuda_dtype``'s choice on the device.
    """
    kwargs = {
        "model_name": model_cfg.name_or_path,
        "max_seq_length": model_cfg.max_seq_length,
        "load_in_4bit": model_cfg.load_in_4bit,
        "dtype": torch_dtype(model_cfg.dtype),
        "fast_inference": model_cfg.fast_inference,
    }
    if model_cfg.fast_inference:
        kwargs["max_lora_rank"] = model_cfg.max_lora_rank or lora_cfg.r
        kwargs["gpu_memory_utilization"] = model_cfg.gpu_memory_utilization
    return kwargs


def free_memory() -> None:
    """Collect what nothing references any more and hand cached CUDA blocks back (between stages)."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def get_backend(requested: str = "auto") -> tuple[Backend, BackendChoice]:
    """Instantiate the backend ``select_backend`` picks; returns ``(backend, BackendChoice)``."""
    choice = select_backend(requested)
    if choice.name == "unsloth":
        from sblite.backends.unsloth import UnslothBackend

        return UnslothBackend(), choice
    from sblite.backends.hf import HFBackend

    return HFBackend(), choice

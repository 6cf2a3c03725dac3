"""The tensors of a GGUF file, planned and converted from a merged model's safetensors.

``plan_tensors`` reads only the safetensors headers and decides, for every tensor, its GGUF name (from
``gguf.get_tensor_name_map``), its type (1-D tensors and norms stay f32, matrices get the requested type;
q8_0 falls back to f16 for a row length that is not a multiple of 32, as llama.cpp's converter does) and its
size. ``load_safetensor`` + ``convert_tensor`` then turn one tensor at a time into the bytes written: Llama's
q_proj/k_proj rows are permuted back to the interleaved rotary layout llama.cpp (and its GGUF reader in
transformers) expect. ``rope_freqs`` is the extra tensor Llama 3.1-style rope scaling needs.

Tensors only: no metadata, no tokenizer, no file writing (``sblite.export.writer`` does that). Reads the
safetensors format directly so torch is never imported; numpy and gguf are imported inside functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sblite.export.common import GGUFExportError


@dataclass
class TensorJob:
    """One tensor to write: where it is read from and what it becomes."""

    src: str
    file: Path
    name: str
    shape: tuple[int, ...]
    qtype: Any
    nbytes: int
    permute_heads: tuple[int, int] | None = None  # (n_head, n_head_for_this_tensor) for llama q/k


def _safetensor_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [model_dir / n for n in names]
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise GGUFExportError(
            f"{model_dir}: no *.safetensors weights (merge the adapter first: sblite merge)"
        )
    return files


def read_safetensors_header(path: Path) -> tuple[dict[str, Any], int]:
    """The JSON header of a safetensors file (name -> dtype, shape, data_offsets) and where data starts.
    Reading it directly keeps torch out of the writer (its import alone costs seconds)."""
    import struct

    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header, 8 + n


_ST_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "F64": "<f8"}


def load_safetensor(mm, info: dict[str, Any], base: int):
    """One tensor as numpy from a memory-mapped safetensors file: f32 and f16 as stored, everything else
    (bf16, f64) as f32, which is what llama.cpp's converter does."""
    import numpy as np

    dtype = info["dtype"]
    if dtype not in _ST_DTYPES:
        raise GGUFExportError(f"tensor dtype {dtype} is not supported (F32, F16, BF16, F64)")
    start, end = info["data_offsets"]
    arr = mm[base + start : base + end].view(_ST_DTYPES[dtype]).reshape(info["shape"])
    if dtype == "BF16":
        return (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.astype(np.float32) if dtype == "F64" else arr


def _permute(w, n_head: int):
    """HF's rotary layout (two halves) -> llama.cpp's (interleaved pairs), per head, along rows."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _qtype_for(name: str, shape: tuple[int, ...], target):
    import gguf

    Q = gguf.GGMLQuantizationType
    if len(shape) <= 1 or name.endswith("_norm.weight") or not name.endswith(".weight"):
        return Q.F32
    if target in (Q.F32, Q.F16, Q.BF16):
        return target
    block = gguf.GGML_QUANT_SIZES[target][0]
    return target if shape[-1] % block == 0 else Q.F16  # what convert_hf_to_gguf falls back to


def _nbytes(shape: tuple[int, ...], qtype) -> int:
    import gguf

    block, size = gguf.GGML_QUANT_SIZES[qtype]
    n = 1
    for d in shape:
        n *= d
    return n // block * size


def plan_tensors(model_dir: Path, arch: str, config: dict[str, Any], quant: str) -> list[TensorJob]:
    """Every tensor to write: its GGUF name, type and size, read from the safetensors headers only."""
    import gguf

    target = {
        "f32": gguf.GGMLQuantizationType.F32,
        "f16": gguf.GGMLQuantizationType.F16,
        "bf16": gguf.GGMLQuantizationType.BF16,
        "q8_0": gguf.GGMLQuantizationType.Q8_0,
    }[quant]
    n_layer = config["num_hidden_layers"]
    n_head = config["num_attention_heads"]
    n_kv = config.get("num_key_value_heads") or n_head
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], n_layer)
    jobs: list[TensorJob] = []
    for file in _safetensor_files(model_dir):
        header, _ = read_safetensors_header(file)
        for src in sorted(header):
            if src.endswith((".rotary_emb.inv_freq", ".attention.masked_bias", ".attention.bias")):
                continue
            name = name_map.get_name(src, try_suffixes=(".weight", ".bias"))
            if name is None:
                raise GGUFExportError(
                    f"tensor {src!r} has no GGUF name for {arch}; is this a plain causal LM?"
                )
            shape = tuple(header[src]["shape"])
            perm = None
            if arch == "llama" and src.endswith(("q_proj.weight", "q_proj.bias")):
                perm = (n_head, n_head)
            elif arch == "llama" and src.endswith(("k_proj.weight", "k_proj.bias")):
                perm = (n_head, n_kv)
            qtype = _qtype_for(name, shape, target)
            jobs.append(TensorJob(src, file, name, shape, qtype, _nbytes(shape, qtype), perm))
    return jobs


def rope_freqs(config: dict[str, Any]):
    """Llama 3.1-style rope scaling is a tensor in GGUF (``rope_freqs.weight``), or None."""
    import math

    import numpy as np

    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if str(rope.get("rope_type", rope.get("type", ""))).lower() != "llama3":
        return None
    base = rope.get("rope_theta", config.get("rope_theta", 10000.0))
    dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    factor, low, high = (
        rope.get("factor", 8.0),
        rope.get("low_freq_factor", 1.0),
        rope.get("high_freq_factor", 4.0),
    )
    old = rope.get("original_max_position_embeddings", 8192)
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


def convert_tensor(job: TensorJob, tensor):
    """One tensor (numpy, f32 or f16 as loaded) -> the numpy array written to the file."""
    import gguf

    if job.permute_heads:
        tensor = _permute(tensor, job.permute_heads[1])
    return gguf.quants.quantize(tensor, job.qtype)


def n_params(jobs: list[TensorJob]) -> int:
    """How many parameters the planned tensors hold."""
    total = 0
    for job in jobs:
        n = 1
        for d in job.shape:
            n *= d
        total += n
    return total

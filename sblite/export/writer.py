"""Write a merged Hugging Face model (safetensors + tokenizer) as a GGUF file, offline, with no llama.cpp.

``sblite export --gguf`` calls ``write_gguf`` for the types numpy can produce (f32, f16, bf16, q8_0); the
k-quants (q4_k_m, q5_k_m, q6_k, …) are made from an f16/bf16 file by llama.cpp's own quantizer
(``sblite.generate.llamacpp.quantize``), because only llama.cpp defines how it picks a type per tensor.

What is written follows llama.cpp's ``convert_hf_to_gguf.py`` so that the tensors are bit-identical to
its output (``benchmarks/export.py`` checks this), but it is built on the ``gguf`` package alone. This module
owns the file: the supported architectures and types, the hyper-parameters, and the order everything is
written in. Its two halves live beside it: ``sblite.export.tensors`` (names, types, conversion of every
tensor) and ``sblite.export.vocab`` (the tokenizer and chat templates; a second named template
``selfbudgeter`` adds the budget instruction when the conversation has none).

Tensors are streamed: each is read from safetensors, converted and written before the next is read, so
memory stays at one tensor, and a progress callback sees every one. The writer knows nothing about runs,
merging or verification and loads no model (numpy, gguf and, to read the tokenizer as training ran it,
transformers are imported inside functions).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sblite.export.common import GGUFExportError
from sblite.export.tensors import (
    convert_tensor,
    load_safetensor,
    n_params,
    plan_tensors,
    read_safetensors_header,
    rope_freqs,
)
from sblite.export.vocab import add_tokenizer

#: HF architecture name -> GGUF architecture name.
SUPPORTED_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
}
#: Types written here, without llama.cpp.
NATIVE_QUANTS = ("f32", "f16", "bf16", "q8_0")
#: Types made by llama.cpp's quantizer from an f16/bf16 GGUF (name -> ``gguf.LlamaFileType`` member).
LLAMACPP_QUANTS = {
    "q4_0": "MOSTLY_Q4_0",
    "q4_1": "MOSTLY_Q4_1",
    "q5_0": "MOSTLY_Q5_0",
    "q5_1": "MOSTLY_Q5_1",
    "q2_k": "MOSTLY_Q2_K",
    "q3_k_m": "MOSTLY_Q3_K_M",
    "q4_k_s": "MOSTLY_Q4_K_S",
    "q4_k_m": "MOSTLY_Q4_K_M",
    "q5_k_s": "MOSTLY_Q5_K_S",
    "q5_k_m": "MOSTLY_Q5_K_M",
    "q6_k": "MOSTLY_Q6_K",
}
ALL_QUANTS = (*NATIVE_QUANTS, *LLAMACPP_QUANTS)


@dataclass
class WriteResult:
    path: Path
    arch: str
    quant: str
    n_tensors: int
    n_params: int
    bytes: int
    seconds: float
    pre_tokenizer: str
    tensor_types: dict[str, int] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- inspection


def read_config(model_dir: str | Path) -> dict[str, Any]:
    """``config.json`` of ``model_dir``, a multimodal ``text_config`` folded in."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise GGUFExportError(f"{model_dir}: no config.json (expected a merged model directory)")
    cfg = json.loads(path.read_text(encoding="utf-8"))
    if "text_config" in cfg:
        cfg = {**cfg, **cfg["text_config"]}
    return cfg


def gguf_arch(config: dict[str, Any]) -> str:
    """The GGUF architecture for a HF config, or an error naming the supported ones."""
    archs = config.get("architectures") or []
    for a in archs:
        if a in SUPPORTED_ARCHITECTURES:
            return SUPPORTED_ARCHITECTURES[a]
    supported = ", ".join(f"{k} ({v})" for k, v in SUPPORTED_ARCHITECTURES.items())
    raise GGUFExportError(
        f"architecture {', '.join(archs) or '(none in config.json)'} is not supported by sblite's GGUF writer; "
        f"supported: {supported}"
    )


# ------------------------------------------------------------------------------------------- metadata


def add_hparams(w, arch: str, config: dict[str, Any], ftype: int) -> None:
    """The model's hyper-parameters (sizes, heads, rope, norm eps, file type) on GGUF writer ``w``."""
    import gguf

    w.add_block_count(config["num_hidden_layers"])
    if (n_ctx := config.get("max_position_embeddings")) is not None:
        w.add_context_length(n_ctx)
    w.add_embedding_length(config["hidden_size"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(config["num_attention_heads"])
    w.add_head_count_kv(config.get("num_key_value_heads") or config["num_attention_heads"])
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type"))
    if rope_type == "linear" and rope.get("factor"):
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rope["factor"])
    elif rope_type == "yarn" and rope.get("factor"):
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(rope["factor"])
        w.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
    elif rope_type not in (None, "default", "llama3"):
        raise GGUFExportError(f"rope scaling {rope_type!r} is not supported (default, linear, yarn, llama3)")
    if (theta := rope.get("rope_theta", config.get("rope_theta"))) is not None:
        w.add_rope_freq_base(theta)
    w.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    if (head_dim := config.get("head_dim")) is not None:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_file_type(ftype)
    if arch == "llama":
        w.add_vocab_size(config["vocab_size"])
        w.add_rope_dimension_count(head_dim or config["hidden_size"] // config["num_attention_heads"])


# ------------------------------------------------------------------------------------------- writer


def write_gguf(
    model_dir: str | Path,
    out_path: str | Path,
    quant: str = "f16",
    *,
    name: str | None = None,
    chat_templates: dict[str, str] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> WriteResult:
    """Write ``model_dir`` (a merged HF model) to ``out_path`` as GGUF of type ``quant`` (f32, f16, bf16,
    q8_0). ``chat_templates`` maps template names to Jinja text (``default`` is the main one; without it the
    tokenizer's own is used). ``progress(tensor_name, index, total)`` is called after each tensor."""
    import gguf
    import numpy as np

    if quant not in NATIVE_QUANTS:
        raise GGUFExportError(
            f"--quant {quant}: sblite writes {', '.join(NATIVE_QUANTS)} itself; "
            f"{', '.join(LLAMACPP_QUANTS)} go through llama.cpp's quantizer"
        )
    start = time.perf_counter()
    model_dir, out_path = Path(model_dir), Path(out_path)
    config = read_config(model_dir)
    arch = gguf_arch(config)
    jobs = plan_tensors(model_dir, arch, config, quant)
    freqs = rope_freqs(config) if arch == "llama" else None
    ftype = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "bf16": gguf.LlamaFileType.MOSTLY_BF16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }[quant]

    w = gguf.GGUFWriter(None, arch)
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(name or model_dir.name)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    add_hparams(w, arch, config, int(ftype))
    pre = add_tokenizer(w, model_dir, config, chat_templates)
    if freqs is not None:
        w.add_tensor_info("rope_freqs.weight", freqs.shape, freqs.dtype, freqs.nbytes)
    for job in jobs:
        w.add_tensor_info(job.name, job.shape, None, job.nbytes, raw_dtype=job.qtype)

    tmp = out_path.with_name(out_path.name + ".partial")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    types: dict[str, int] = {}
    try:
        w.write_header_to_file(path=tmp)
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        if freqs is not None:
            w.write_tensor_data(freqs)
        maps: dict[Path, tuple[Any, dict[str, Any], int]] = {}
        for i, job in enumerate(jobs):
            if job.file not in maps:
                header, base = read_safetensors_header(job.file)
                maps[job.file] = (np.memmap(job.file, dtype=np.uint8, mode="r"), header, base)
            mm, header, base = maps[job.file]
            data = convert_tensor(job, load_safetensor(mm, header[job.src], base))
            w.write_tensor_data(data)
            types[job.qtype.name] = types.get(job.qtype.name, 0) + 1
            if progress:
                progress(job.name, i + 1, len(jobs))
        maps.clear()
        w.close()
        tmp.replace(out_path)
    except BaseException:
        w.close()
        tmp.unlink(missing_ok=True)
        raise
    return WriteResult(
        path=out_path,
        arch=arch,
        quant=quant,
        n_tensors=len(jobs) + (freqs is not None),
        n_params=n_params(jobs),
        bytes=out_path.stat().st_size,
        seconds=time.perf_counter() - start,
        pre_tokenizer=pre,
        tensor_types=types,
    )


def read_tensor_types(path: str | Path) -> dict[str, int]:
    """How many tensors of each GGML type a GGUF file holds (read back, e.g. after llama.cpp's quantizer,
    which picks a type per tensor: q4_k_m mixes Q4_K, Q6_K and fallbacks for rows not a multiple of 256)."""
    from gguf import GGUFReader

    types: dict[str, int] = {}
    for t in GGUFReader(str(path)).tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    return types


def estimate_gguf_bytes(model_dir: str | Path, quant: str) -> int:
    """Roughly how large the GGUF will be (for the free-space check), from the safetensors headers."""
    import gguf

    model_dir = Path(model_dir)
    config = read_config(model_dir)
    arch = gguf_arch(config)
    q = quant if quant in NATIVE_QUANTS else "f16"
    total = sum(j.nbytes for j in plan_tensors(model_dir, arch, config, q))
    if quant in LLAMACPP_QUANTS:
        bits = {"q2": 3.0, "q3": 4.0, "q4": 5.0, "q5": 6.0, "q6": 6.6}.get(quant[:2], 8.5)
        total = int(total * bits / 16) + total  # the f16 intermediate plus the result
    del gguf
    return int(total * 1.02) + 8 * 1024 * 1024  # header, vocabulary, alignment

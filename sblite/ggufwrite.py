"""Write a merged Hugging Face model (safetensors + tokenizer) as a GGUF file, offline, with no llama.cpp.

``sblite export --gguf`` calls ``write_gguf`` for the types numpy can produce (f32, f16, bf16, q8_0); the
k-quants (q4_k_m, q5_k_m, q6_k, …) are made from an f16/bf16 file by llama.cpp's own quantizer
(``sblite.llamacpp.quantize``), because only llama.cpp defines how it picks a type per tensor.

What is written follows llama.cpp's ``convert_hf_to_gguf.py`` so that the tensors are bit-identical to
its output (``benchmarks/export.py`` checks this), but it is built on the ``gguf`` package alone:

- architectures: Llama (SmolLM2, Llama 3), Qwen2 (Qwen2.5, DeepSeek-R1-Distill-Qwen), Qwen3;
- tensor names from ``gguf.get_tensor_name_map``; Llama's q_proj/k_proj rows are permuted back to
  the interleaved rotary layout llama.cpp (and its GGUF reader in transformers) expect;
- 1-D tensors and norms stay f32, matrices get the requested type (q8_0 falls back to f16 for a row
  length that is not a multiple of 32, as llama.cpp's converter does);
- the tokenizer: every BPE token with its type (normal, control, user-defined, unused padding), the merges,
  the special ids, whether BOS is prepended, the pre-tokenizer name llama.cpp needs to split text as the
  HF tokenizer does, and the chat template; a second named template ``selfbudgeter`` adds the budget
  instruction when the conversation has none.

Tensors are streamed: each is read from safetensors, converted and written before the next is read, so
memory stays at one tensor, and a progress callback sees every one.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

# llama.cpp names its pre-tokenizers by hashing the token ids of this text (convert_hf_to_gguf_update.py);
# the few hashes of the families sblite supports are kept here, so detection needs no network.
_CHKTXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) "
    "✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ "
    "------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, "
    "'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)
_KNOWN_PRE_HASHES = {
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",  # SmolLM/SmolLM2
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",  # Qwen1.5/2/2.5
    "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2",  # Qwen3
    "b3f499bb4255f8ca19fccd664443283318f2fd2414d5e0b040fbdd0cc195d6c5": "deepseek-r1-qwen",
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",  # Llama 3
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
}
# A tokenizer trained locally has no known hash: recognise its pre-tokenizer by structure instead.
_QWEN2_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)


class GGUFExportError(ValueError):
    """A model or option the GGUF writer cannot handle; the message says what is supported."""


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


def detect_pre_tokenizer(tokenizer, tokenizer_json: dict[str, Any] | None = None) -> str:
    """llama.cpp's name for how the tokenizer splits text before BPE (``tokenizer.ggml.pre``).

    A known model is recognised by the hash llama.cpp uses; otherwise the HF pre-tokenizer's structure
    decides (GPT-2 byte-level regex, Qwen2's or Llama 3's split regex, SmolLM's digit split)."""
    chkhsh = hashlib.sha256(str(_encode(tokenizer, _CHKTXT)).encode()).hexdigest()
    if chkhsh in _KNOWN_PRE_HASHES:
        return _KNOWN_PRE_HASHES[chkhsh]
    pre = (tokenizer_json or {}).get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if (
        kinds == ["Digits", "ByteLevel"]
        and steps[0].get("individual_digits")
        and steps[1].get("use_regex", True)
    ):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        regex = (steps[0].get("pattern") or {}).get("Regex")
        if regex == _QWEN2_SPLIT:
            return "qwen2"
        if regex == _LLAMA3_SPLIT:
            return "llama-bpe"
    raise GGUFExportError(
        f"the tokenizer's pre-tokenizer ({' + '.join(k or '?' for k in kinds) or 'none'}, hash {chkhsh[:12]}…) "
        "is not one sblite can name for llama.cpp; supported: GPT-2 byte-level, SmolLM, Qwen2/Qwen3, "
        "DeepSeek-R1-Distill-Qwen, Llama 3"
    )


def _encode(tokenizer, text: str, add_special_tokens: bool = True) -> list[int]:
    """Token ids from a ``tokenizers.Tokenizer`` or a transformers tokenizer."""
    enc = tokenizer.encode(text, add_special_tokens=add_special_tokens)
    return list(enc.ids) if hasattr(enc, "ids") else list(enc)


def _looks_special(token: str) -> bool:
    return (token.startswith("<|") and token.endswith("|>")) or (
        token.startswith("<｜") and token.endswith("｜>")
    )


def vocab_tokens(
    tokenizer, added_tokens: list[dict[str, Any]], vocab_size: int
) -> tuple[list[str], list[int]]:
    """Token strings and ``gguf.TokenType`` values for ids ``0..vocab_size-1``, as llama.cpp expects them.
    ``tokenizer`` is a ``tokenizers.Tokenizer``; ``added_tokens`` is tokenizer.json's list."""
    import gguf

    reverse = {i: t for t, i in tokenizer.get_vocab(with_added_tokens=True).items()}
    added = {a["id"]: a for a in added_tokens}
    if reverse and max(reverse) >= vocab_size:
        raise GGUFExportError(
            f"the tokenizer has id {max(reverse)} but the model's vocab_size is {vocab_size}"
        )
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        token = reverse[i]
        if i in added:
            if not added[i].get("normalized", False):  # llama.cpp assumes added tokens are pre-normalised
                ids = _encode(tokenizer, token, add_special_tokens=False)
                token = tokenizer.decode(ids, skip_special_tokens=False)
            if added[i].get("special") or _looks_special(token):
                types.append(gguf.TokenType.CONTROL)
            else:
                token = token.replace("\u2581", " ")
                types.append(gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(token)
    return tokens, [int(t) for t in types]


def budget_chat_template(template: str, instruction: str, *, in_user: bool) -> str:
    """``template`` with SelfBudgeter's instruction added when the conversation does not bring a system
    message: as a system message, or (``in_user``) in front of the first user turn, as training did."""
    text = json.dumps(instruction)  # a valid Jinja string literal
    if in_user:
        head = (
            "{%- set ns = namespace(m=[]) -%}{%- for m in messages -%}"
            "{%- if loop.first and m['role'] == 'user' -%}"
            "{%- set ns.m = ns.m + [{'role': 'user', 'content': " + text + " + '\\n\\n' + m['content']}] -%}"
            "{%- else -%}{%- set ns.m = ns.m + [m] -%}{%- endif -%}{%- endfor -%}{%- set messages = ns.m -%}"
        )
    else:
        head = (
            "{%- if messages[0]['role'] != 'system' -%}"
            "{%- set messages = [{'role': 'system', 'content': " + text + "}] + messages -%}{%- endif -%}"
        )
    return head + template


# ------------------------------------------------------------------------------------------- tensors


@dataclass
class _Job:
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


def plan_tensors(model_dir: Path, arch: str, config: dict[str, Any], quant: str) -> list[_Job]:
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
    jobs: list[_Job] = []
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
            jobs.append(_Job(src, file, name, shape, qtype, _nbytes(shape, qtype), perm))
    return jobs


def _rope_freqs(config: dict[str, Any]):
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


def convert_tensor(job: _Job, tensor):
    """One tensor (numpy, f32 or f16 as loaded) -> the numpy array written to the file."""
    import gguf

    if job.permute_heads:
        tensor = _permute(tensor, job.permute_heads[1])
    return gguf.quants.quantize(tensor, job.qtype)


# ------------------------------------------------------------------------------------------- metadata


def _add_hparams(w, arch: str, config: dict[str, Any], ftype: int) -> None:
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


def _add_tokenizer(w, model_dir: Path, config: dict[str, Any], chat_templates: dict[str, str] | None) -> str:
    import gguf
    from tokenizers import Tokenizer

    tok_json_path = model_dir / "tokenizer.json"
    if not tok_json_path.is_file():
        raise GGUFExportError(
            f"{model_dir}: no tokenizer.json (sblite writes BPE tokenizers from tokenizer.json)"
        )
    tok_json = json.loads(tok_json_path.read_text(encoding="utf-8"))
    if (tok_json.get("model") or {}).get("type") != "BPE":
        raise GGUFExportError(
            f"{model_dir}: tokenizer model {tok_json.get('model', {}).get('type')!r} is not BPE"
        )
    tokenizer = Tokenizer.from_file(str(tok_json_path))
    pre = detect_pre_tokenizer(tokenizer, tok_json)
    tokens, types = vocab_tokens(tokenizer, tok_json.get("added_tokens") or [], config["vocab_size"])
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=len(tokens))
    # What llama.cpp prepends/appends must be what the HF tokenizer does, whatever the config files say.
    probe, plain = _encode(tokenizer, "a"), _encode(tokenizer, "a", add_special_tokens=False)
    k = next((i for i in range(len(probe) - len(plain) + 1) if probe[i : i + len(plain)] == plain), 0)
    special.add_special_token["bos"] = k > 0
    special.add_special_token["eos"] = len(probe) - k - len(plain) > 0
    tok_cfg_path = model_dir / "tokenizer_config.json"
    tok_cfg = json.loads(tok_cfg_path.read_text(encoding="utf-8")) if tok_cfg_path.is_file() else {}
    eos = tok_cfg.get("eos_token")
    eos = eos.get("content") if isinstance(eos, dict) else eos
    if isinstance(eos, str) and (eos_id := tokenizer.token_to_id(eos)) is not None:
        special.special_token_ids["eos"] = (
            eos_id  # the tokenizer's EOS ends a chat turn; config.json may differ
        )
    if chat_templates:
        special.chat_template = [{"name": k, "template": v} for k, v in chat_templates.items()]
    special.add_to_gguf(w, quiet=True)
    return pre


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
    freqs = _rope_freqs(config) if arch == "llama" else None
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
    _add_hparams(w, arch, config, int(ftype))
    pre = _add_tokenizer(w, model_dir, config, chat_templates)
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
    n_params = 0
    for job in jobs:
        n = 1
        for d in job.shape:
            n *= d
        n_params += n
    return WriteResult(
        path=out_path,
        arch=arch,
        quant=quant,
        n_tensors=len(jobs) + (freqs is not None),
        n_params=n_params,
        bytes=out_path.stat().st_size,
        seconds=time.perf_counter() - start,
        pre_tokenizer=pre,
        tensor_types=types,
    )


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

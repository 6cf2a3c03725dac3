"""GPU memory a recipe needs, estimated from the model's shapes: ``estimate(recipe) -> dict`` (GiB).

``sblite train --recipe grpo-7b --dry-run`` prints it (``train/plan.py``, key "memory estimate (GiB)"); the
comments atop ``recipes/*.yaml`` quote it. The terms, each a function below:

- weights: 4-bit (``model.load_in_4bit``, bitsandbytes NF4 with double quantisation, as Unsloth loads it) puts
  only the decoder's linear layers in 4 bits; the token embedding and an untied LM head stay 16-bit
  (2 × vocab × hidden parameters, 2.2 GB on Qwen2.5-7B). A tied head is the embedding, counted once.
- LoRA parameters, their gradients and the optimizer state (by ``optim``: 8-bit Adam keeps 2 bytes a
  parameter, AdamW 8); without LoRA every parameter is trained.
- vLLM (``model.fast_inference``, Unsloth's in-process rollouts sharing the training weights): vLLM takes
  ``gpu_memory_utilization`` × card and what the weights leave of it is KV cache; a GRPO generation round
  needs completions × (prompt + completion) × layers × 2 × kv_heads × head_dim × 2 bytes of it.
- activations, rough (±50%): the checkpointed layer inputs (Unsloth's offloaded checkpointing keeps about two
  layers' on the GPU), one layer recomputed during backward, and the logits (Unsloth chunks them, one
  sequence at a time; plain TRL holds the micro-batch's in fp32). ``sft.budget_tag_weight`` ≠ 1 takes its
  loss from the whole micro-batch's logits on either backend (``train/weighted.py``; Unsloth must return them)
  and keeps their fp32 log-softmax beside them: two fp32 copies.

Shapes come from ``KNOWN_SHAPES`` (the shipped recipes' models) or a local model directory's
``config.json``. Pure arithmetic on the recipe: nothing is loaded, nothing imported beyond the standard
library; an unknown model gets an estimate that says so instead of numbers. GiB = 2**30 bytes (what
``torch.cuda`` and ``nvidia-smi`` report; a "24 GB" card holds 24 GiB).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GIB = 2**30
#: the card the estimate assumes: the one the 7B recipes target (RTX 3090/4090, 24 GiB)
CARD_GIB = 24.0
#: bytes per NF4 parameter: 4 bits, an 8-bit absmax per 64-weight block, an fp32 constant per 256 blocks
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
#: CUDA context, cuBLAS workspaces and allocator slack, always resident
OVERHEAD_GIB = 1.0
#: layers of checkpointed inputs Unsloth's offloaded checkpointing keeps on the GPU (the rest are in RAM)
OFFLOADED_CHECKPOINT_LAYERS = 2


@dataclass(frozen=True)
class Shapes:
    """A decoder-only transformer's sizes, as its ``config.json`` names them."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool
    qkv_bias: bool = False
    head_dim: int | None = None  # None: hidden // heads

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden // self.heads

    def linear_params(self) -> int:
        """The decoder's q/k/v/o and gate/up/down weights: what 4-bit quantises."""
        h, hd = self.hidden, self.hd
        attn = h * self.heads * hd * 2 + h * self.kv_heads * hd * 2
        return self.layers * (attn + 3 * h * self.intermediate)

    def embedding_params(self) -> int:
        """Token embedding plus LM head: one matrix when tied, two when not."""
        return self.vocab * self.hidden * (1 if self.tied else 2)

    def other_params(self) -> int:
        """Norms and q/k/v biases (kept 16-bit)."""
        bias = (self.heads + 2 * self.kv_heads) * self.hd if self.qkv_bias else 0
        return self.layers * (2 * self.hidden + bias) + self.hidden

    def params(self) -> int:
        return self.linear_params() + self.embedding_params() + self.other_params()

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        return self.layers * 2 * self.kv_heads * self.hd * dtype_bytes


# DeepSeek-R1-Distill-Qwen-7B has Qwen2.5-7B's shapes (untied). R1-Distill-Qwen-1.5B has Qwen2.5-1.5B's sizes
# but, unlike Qwen2.5-1.5B, an untied LM head (1.78 B parameters, not 1.54 B). SmolLM2-135M ties its head.
_QWEN25_7B = Shapes(3584, 18944, 28, 28, 4, 152064, tied=False, qkv_bias=True)
_R1_QWEN_1_5B = Shapes(1536, 8960, 28, 12, 2, 151936, tied=False, qkv_bias=True)
_SMOLLM2_135M = Shapes(576, 1536, 30, 9, 3, 49152, tied=True)
# builtin:tiny-random (sblite/models.py); its vocabulary is its tokenizer's, about 600
_TINY = Shapes(32, 64, 2, 4, 2, 600, tied=True)

#: by the model name's last path component, lower-cased (``builtin:`` dropped)
KNOWN_SHAPES: dict[str, Shapes] = {
    "deepseek-r1-distill-qwen-7b": _QWEN25_7B,
    "qwen2.5-7b": _QWEN25_7B,
    "qwen2.5-7b-instruct": _QWEN25_7B,
    "qwen2.5-math-7b": _QWEN25_7B,
    "deepseek-r1-distill-qwen-1.5b": _R1_QWEN_1_5B,
    "smollm2-135m": _SMOLLM2_135M,
    "smollm2-135m-instruct": _SMOLLM2_135M,
    "tiny-random": _TINY,
}


def shapes_for(name_or_path: str) -> Shapes | None:
    """The shapes of a known model name, else of a local directory's ``config.json``, else None."""
    key = name_or_path.removeprefix("builtin:").rstrip("/").rsplit("/", 1)[-1].lower()
    if key in KNOWN_SHAPES:
        return KNOWN_SHAPES[key]
    config = Path(name_or_path) / "config.json"
    if not config.is_file():
        return None
    try:
        return shapes_from_config(json.loads(config.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def shapes_from_config(cfg: dict[str, Any]) -> Shapes:
    """``Shapes`` from a transformers ``config.json`` dict (Llama/Qwen2/Mistral naming)."""
    heads = int(cfg["num_attention_heads"])
    return Shapes(
        hidden=int(cfg["hidden_size"]),
        intermediate=int(cfg["intermediate_size"]),
        layers=int(cfg["num_hidden_layers"]),
        heads=heads,
        kv_heads=int(cfg.get("num_key_value_heads") or heads),
        vocab=int(cfg["vocab_size"]),
        tied=bool(cfg.get("tie_word_embeddings", False)),
        qkv_bias=bool(cfg.get("attention_bias", cfg.get("model_type") == "qwen2")),
        head_dim=cfg.get("head_dim"),
    )


# ---------------------------------------------------------------------------------------------- terms


def dtype_bytes(dtype: str) -> int:
    return 4 if dtype == "float32" else 2  # auto: the checkpoint's bf16/fp16


def weight_bytes(s: Shapes, *, load_in_4bit: bool, dtype: str = "bfloat16") -> float:
    """Model weights: NF4 linear layers + 16-bit rest when 4-bit, else everything in ``dtype``."""
    b = dtype_bytes(dtype)
    if load_in_4bit:
        return s.linear_params() * NF4_BYTES + (s.embedding_params() + s.other_params()) * b
    return s.params() * b


_LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def lora_params(s: Shapes, r: int, target_modules: list[str] | str) -> int:
    """r × (in + out) per adapted matrix; "all-linear" is the seven decoder projections (never the head)."""
    h, q, kv, i = s.hidden, s.heads * s.hd, s.kv_heads * s.hd, s.intermediate
    dims = {
        "q_proj": h + q,
        "k_proj": h + kv,
        "v_proj": h + kv,
        "o_proj": q + h,
        "gate_proj": h + i,
        "up_proj": h + i,
        "down_proj": i + h,
    }
    names = _LORA_MODULES if target_modules == "all-linear" else target_modules
    return s.layers * r * sum(dims.get(m, 0) for m in names)


def optimizer_state_bytes(optim: str) -> int:
    """Optimizer state per trained parameter: AdamW two fp32 moments, 8-bit Adam two bytes."""
    o = optim.lower()
    if "8bit" in o:
        return 1 if "lion" in o else 2
    if "adafactor" in o or o.startswith("sgd"):
        return 0  # factored / no momentum by default: negligible
    if "lion" in o:
        return 4
    return 8


def trainable_bytes(s: Shapes, cfg: Any, optim: str) -> float:
    """Trained parameters' fp32 copy (LoRA) or gradients (full fine-tune), plus optimizer state."""
    if cfg.lora.enabled:
        n = lora_params(s, cfg.lora.r, cfg.lora.target_modules)
        return n * (4 + 4 + optimizer_state_bytes(optim))  # fp32 adapter, fp32 gradient, state
    return s.params() * (dtype_bytes(cfg.model.dtype) + optimizer_state_bytes(optim))


def activation_bytes(s: Shapes, *, batch: int, seq: int, logits_tokens: int, cfg: Any) -> float:
    """Rough activations of one micro-batch (``batch`` × ``seq`` tokens) with the recipe's checkpointing.

    One layer's saved tensors are the two norm outputs, q and attention output, k and v, the o-projection
    output and the MLP's gate, up and product, in 16 bits. ``logits_tokens`` is how many positions' logits
    are held at once, in fp32.
    """
    tokens = batch * seq
    b = dtype_bytes(cfg.model.dtype)
    layer = tokens * (3 * s.hidden + 2 * s.heads * s.hd + 2 * s.kv_heads * s.hd + 3 * s.intermediate) * b
    mode = cfg.lora.use_gradient_checkpointing
    if mode is False:
        stored = s.layers * layer  # everything kept for backward
    else:
        offloaded = mode == "unsloth" and _backend(cfg) == "unsloth"
        kept = OFFLOADED_CHECKPOINT_LAYERS if offloaded else s.layers
        stored = kept * tokens * s.hidden * b + layer  # layer inputs + the layer being recomputed
    return stored + logits_tokens * s.vocab * 4


def _backend(cfg: Any) -> str:
    return "hf" if cfg.model.backend == "hf" else "unsloth"  # auto: Unsloth, the GPU path


# ---------------------------------------------------------------------------------------------- estimate


def estimate(cfg: Any, *, card_gib: float = CARD_GIB, shapes: Shapes | None = None) -> dict[str, Any]:
    """The recipe's GPU memory by term and each stage's peak, in GiB, on a ``card_gib`` card.

    ``cfg`` is a ``sblite.config.Recipe``. Peaks add ``OVERHEAD_GIB``. With ``fast_inference`` the GRPO peak
    is vLLM's whole share (weights and KV cache inside it) plus what training adds; SFT loads no engine.
    """
    s = shapes or shapes_for(cfg.model.name_or_path)
    if s is None:
        return {
            "model": cfg.model.name_or_path,
            "shapes": "unknown: add them to sblite/train/memory.py KNOWN_SHAPES or point at a local directory",
        }
    m = cfg.model
    weights = weight_bytes(s, load_in_4bit=m.load_in_4bit, dtype=m.dtype)
    out: dict[str, Any] = {
        "assumes": f"a {card_gib:g} GiB card, backend {_backend(cfg)}; activations are rough (±50%)",
        "params (B)": round(s.params() / 1e9, 3),
        "weights": _gib(weights),
        "of which embedding + LM head": _gib(s.embedding_params() * dtype_bytes(m.dtype)),
    }
    peaks: dict[str, float] = {}
    if "sft" in cfg.stages:
        sft = cfg.sft
        train = trainable_bytes(s, cfg, sft.optim)
        full = sft.per_device_train_batch_size * sft.max_length
        if sft.budget_tag_weight != 1:  # train/weighted.py: the logits and their fp32 log-softmax, whole batch
            logits = 2 * full
        else:
            logits = sft.max_length if _backend(cfg) == "unsloth" else full
        act = activation_bytes(
            s, batch=sft.per_device_train_batch_size, seq=sft.max_length, logits_tokens=logits, cfg=cfg
        )
        out[f"sft: lora + grads + {sft.optim}"] = _gib(train)
        out["sft: activations"] = _gib(act)
        peaks["sft"] = (weights + train + act) / GIB + OVERHEAD_GIB
    if "grpo" in cfg.stages:
        g = cfg.grpo
        train = trainable_bytes(s, cfg, g.optim)
        seq = cfg.data.max_prompt_length + g.max_completion_length
        steps = int(g.trl_args.get("steps_per_generation") or g.gradient_accumulation_steps)
        completions = g.per_device_train_batch_size * steps  # TRL's generation batch on one device
        kv_need = completions * seq * s.kv_bytes_per_token(dtype_bytes(m.dtype))
        unsloth = _backend(cfg) == "unsloth"
        logits = (
            g.max_completion_length if unsloth else g.per_device_train_batch_size * g.max_completion_length
        )
        act = activation_bytes(s, batch=g.per_device_train_batch_size, seq=seq, logits_tokens=logits, cfg=cfg)
        out[f"grpo: lora + grads + {g.optim}"] = _gib(train)
        out["grpo: activations"] = _gib(act)
        out[f"grpo: rollout kv cache needed ({completions} × {seq} tokens)"] = _gib(kv_need)
        if m.fast_inference and unsloth:
            share = m.gpu_memory_utilization * card_gib * GIB
            out[f"vllm share (gpu_memory_utilization {m.gpu_memory_utilization:g} × card)"] = _gib(share)
            out["vllm kv cache (share − weights)"] = _gib(share - weights)
            # the smallest share whose KV cache still holds one generation round, with 20% for blocks/graphs
            out["gpu_memory_utilization enough for the rollouts"] = round(
                (weights + 1.2 * kv_need) / (card_gib * GIB), 2
            )
            peaks["grpo"] = (share + train + act) / GIB + OVERHEAD_GIB
        else:  # generation in the training process (HF generate) or a separate vLLM copy of the weights
            if g.use_vllm and g.vllm_mode == "colocate":
                extra = g.vllm_gpu_memory_utilization * card_gib * GIB
                out[
                    f"trl vllm share (vllm_gpu_memory_utilization {g.vllm_gpu_memory_utilization:g} × card)"
                ] = _gib(extra)
            else:
                extra = kv_need
            peaks["grpo"] = (weights + train + act + extra) / GIB + OVERHEAD_GIB
    for stage, peak in peaks.items():
        out[f"{stage}: peak"] = round(peak, 2)
    if peaks:
        out["fits the card"] = max(peaks.values()) <= card_gib
        out["on OOM, first"] = _oom_knobs(cfg, peaks)
    return out


def _oom_knobs(cfg: Any, peaks: dict[str, float]) -> list[str]:
    """The knobs to turn first, for the stage with the higher peak: the cheapest to give up first."""
    stage = max(peaks, key=peaks.__getitem__)
    knobs = []
    if stage == "grpo" and cfg.model.fast_inference and _backend(cfg) == "unsloth":
        knobs.append("model.gpu_memory_utilization (down to 'enough for the rollouts')")
    knobs.append(
        f"{stage}.per_device_train_batch_size (activations scale with it; raise gradient_accumulation_steps"
        + (" to keep batch × accumulation divisible by num_generations)" if stage == "grpo" else " to match)")
    )
    knobs.append("grpo.max_completion_length" if stage == "grpo" else "sft.max_length")
    mode = cfg.lora.use_gradient_checkpointing
    if mode is False:
        knobs.append("lora.use_gradient_checkpointing: true ('unsloth' on the unsloth backend)")
    elif mode is True and _backend(cfg) == "unsloth":
        knobs.append("lora.use_gradient_checkpointing: unsloth (offloads the checkpoints to RAM)")
    if not cfg.model.load_in_4bit:
        knobs.append("model.load_in_4bit: true")
    return knobs


def _gib(n: float) -> float:
    return round(n / GIB, 2)

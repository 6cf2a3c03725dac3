"""The transformers engine: load a model for inference and generate k samples per prompt in batches.

    from sblite.generate.hf import load_for_inference, generate_batch
    model, tok = load_for_inference("builtin:smollm2-135m")
    gens = generate_batch(model, tok, prompts, max_new_tokens=256, temperature=0.7, num_return_sequences=4)

Runs anywhere (CPU or CUDA). Prompts are left-padded into batches of ``batch_size`` prompts x
``num_return_sequences`` samples; generation stops at EOS (or a stop string) per sequence. The RNG is seeded
per batch, so the same prompts in the same batch give the same samples on every run (what makes an
interrupted ``sblite prepare`` resume to an identical result). The default decoder is sblite's own KV-cache
loop that drops finished sequences (``_decode_compact``); ``engine="hf"`` is ``model.generate``.

Owns transformers loading and decoding only: what ``--model`` names is ``loading``'s job, the result type is
``batch.Generation``. torch/transformers are imported inside the functions, so importing this is free.

No model is trained or changed here; prompts are ``protocol.encode_prompt`` ids, never re-tokenized.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, Literal

from sblite.generate.batch import FinishReason, Generation


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_for_inference(
    model: str, *, dtype: str = "auto", device: str | None = None, tokenizer: str | None = None
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` ready for batched generation: eval mode, left padding, a pad token.

    ``model`` is a built-in name (``builtin:smollm2-135m``), a local directory or a hub id; ``dtype``
    ``auto`` means float32 on CPU and bfloat16 on CUDA.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sblite.models import resolve_model

    path = resolve_model(model)
    device = device or _default_device()
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    tok = AutoTokenizer.from_pretrained(resolve_model(tokenizer) if tokenizer else path)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to(device)
    lm.eval()
    return lm, tok


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every id that ends a sequence: the generation config's EOS (may be a list) and the tokenizer's."""
    ids: list[int] = []
    cfg_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for v in (cfg_eos if isinstance(cfg_eos, list | tuple) else [cfg_eos]) + [tokenizer.eos_token_id]:
        if v is not None and int(v) not in ids:
            ids.append(int(v))
    return ids


def _finish(
    ids: list[int], eos: set[int], pad_id: int | None, max_new_tokens: int
) -> tuple[list[int], FinishReason]:
    for i, t in enumerate(ids):
        if t in eos:
            return ids[:i], "stop"
    while ids and pad_id is not None and ids[-1] == pad_id:
        ids = ids[:-1]
    # A sequence shorter than the limit ended early (a stop string, then padding while others ran on).
    return ids, ("stop" if len(ids) < max_new_tokens else "length")


def encode_batch(tokenizer: Any, prompts: Sequence[str]) -> Any:
    """Left-padded ``input_ids``/``attention_mask`` of ``protocol.encode_prompt``'s ids for each prompt."""
    from sblite import protocol

    ids = [protocol.encode_prompt(tokenizer, p) for p in prompts]
    return tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")


def generate_batch(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float = 1.0,
    num_return_sequences: int = 1,
    batch_size: int = 8,
    seed: int = 0,
    stop_strings: Sequence[str] | None = None,
    on_batch: Callable[[int], None] | None = None,
    engine: Literal["compact", "hf"] = "compact",
    budget_guard: str = "off",
) -> list[list[Generation]]:
    """``num_return_sequences`` samples for each prompt, in prompt order.

    Prompts are full prompt texts (chat template applied, e.g. ``protocol.render_prompt``), tokenised by
    ``protocol.encode_prompt`` (a trailing pre-fill apart from the template, as in training).
    ``temperature == 0`` is greedy. Batches hold ``batch_size`` prompts; the RNG is re-seeded with
    ``seed + index of the batch's first prompt`` before each, so a batch's samples do not depend on what ran
    before it. ``on_batch(n_prompts_done)`` is called after each batch.

    ``engine="compact"`` (default) is sblite's own KV-cache loop that drops finished sequences from the
    batch (see ``_decode_compact``); ``"hf"`` is ``model.generate``, kept as the reference implementation.
    ``budget_guard`` ``"cap"``/``"band"`` enforces each prompt's budget while decoding (``guard``), on either.
    """
    import torch

    from sblite.generate.guard import guards_for, logits_processor

    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be >= 1")
    if batch_size < 1 or num_return_sequences < 1:
        raise ValueError("batch_size and num_return_sequences must be >= 1")
    if tokenizer.padding_side != "left":
        tokenizer.padding_side = "left"  # right padding would put pads between prompt and completion
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    eos = eos_token_ids(model, tokenizer)
    eos_set = set(eos)
    pad_id = tokenizer.pad_token_id
    gen_kwargs: dict[str, Any] = dict(
        max_new_tokens=max_new_tokens,
        num_return_sequences=num_return_sequences,
        pad_token_id=pad_id,
        eos_token_id=eos,
    )
    if temperature > 0:
        gen_kwargs.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
    else:
        gen_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    if stop_strings:
        gen_kwargs.update(stop_strings=list(stop_strings), tokenizer=tokenizer)

    results: list[list[Generation]] = []
    device = getattr(model, "device", "cpu")
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start : start + batch_size])
        enc = encode_batch(tokenizer, chunk).to(device)
        torch.manual_seed(seed + start)
        guards = guards_for(tokenizer, chunk, budget_guard, eos, num_return_sequences)  # type: ignore[arg-type]
        if engine == "hf":
            extra = (
                {"logits_processor": [logits_processor(guards, enc["input_ids"].shape[1])]} if guards else {}
            )
            with torch.inference_mode():
                out = model.generate(**enc, **gen_kwargs, **extra)
            new = out[:, enc["input_ids"].shape[1] :].tolist()
            seqs = [_finish(ids, eos_set, pad_id, max_new_tokens) for ids in new]
            for g, (ids, _) in zip(guards or (), seqs, strict=False):
                for t in ids[g.seen :]:  # the tokens after the processor's last call (it sees each one late)
                    g.observe(t)
        else:
            seqs = _decode_compact(
                model,
                tokenizer,
                enc,
                num_return_sequences,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                eos=eos_set,
                stop_strings=stop_strings,
                guards=guards,
            )
        for p in range(len(chunk)):
            gens = []
            for s in range(num_return_sequences):
                row = p * num_return_sequences + s
                ids, reason = seqs[row]
                text = tokenizer.decode(ids, skip_special_tokens=True)
                if stop_strings and reason == "length" and any(s_ in text for s_ in stop_strings):
                    reason = "stop"
                forced = guards[row].forced_count if guards else 0
                gens.append(Generation(text, tuple(ids), len(ids), reason, forced))
            results.append(gens)
        if on_batch is not None:
            on_batch(len(chunk))
    return results


def _sample_next(logits: Any, temperature: float, top_p: float) -> Any:
    """One token per row: greedy at temperature 0, else temperature + nucleus sampling (no top-k)."""
    import torch

    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(dim=-1) - sorted_p > top_p  # keep the smallest prefix reaching top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        choice = torch.multinomial(sorted_p, 1).squeeze(-1)
        return order.gather(-1, choice[:, None]).squeeze(-1)
    return torch.multinomial(probs, 1).squeeze(-1)


def _decode_compact(
    model: Any,
    tokenizer: Any,
    enc: Any,
    n: int,
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    eos: set[int],
    stop_strings: Sequence[str] | None,
    guards: Sequence[Any] | None = None,
) -> list[tuple[list[int], FinishReason]]:
    """Decode ``n`` samples per prompt with a KV cache, dropping finished sequences from the batch.

    ``model.generate`` keeps every row of a batch until the longest one ends, so one rambling sample makes
    the whole batch pay for its tail; here a finished row leaves the cache (``batch_select_indices``) and
    each step costs only what is still running. The prompt is prefilled once and its cache repeated ``n``
    times. Positions come from the left-padded attention mask, as in ``generate``. ``guards`` (one
    ``guard.BudgetGuard`` per sequence) constrain each row's logits and end a row the moment it is landed.
    """
    import torch

    ids, mask = enc["input_ids"], enc["attention_mask"]
    pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
    max_stop = max((len(s) for s in stop_strings), default=0) if stop_strings else 0
    # transformers >= 5.2x names the cache argument `cache`; older versions `past_key_values`.
    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    params = inspect.signature(model.forward).parameters
    # Only the last position's logits are needed: skip the (prompt_len x vocab) projection at prefill.
    keep_kw = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **keep_kw)
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        if n > 1:
            cache.batch_repeat_interleave(n)
        logits = out.logits[:, -1, :].repeat_interleave(n, dim=0)
        mask = mask.repeat_interleave(n, dim=0)
        next_pos = pos[:, -1:].repeat_interleave(n, dim=0) + 1
        total = ids.shape[0] * n
        active = list(range(total))
        tokens_out: list[list[int]] = [[] for _ in range(total)]
        reasons: list[FinishReason] = ["length"] * total
        for _step in range(max_new_tokens):
            if guards is not None:
                for j, seq in enumerate(active):
                    guards[seq].constrain(logits[j])
            nxt = _sample_next(logits, temperature, top_p)
            keep: list[int] = []
            for j, (seq, tok) in enumerate(zip(active, nxt.tolist(), strict=True)):
                if tok in eos:
                    reasons[seq] = "stop"
                    continue
                tokens_out[seq].append(tok)
                if guards is not None:
                    guards[seq].observe(tok)
                    if guards[seq].done:
                        reasons[seq] = "stop"
                        continue
                if max_stop:
                    tail = tokenizer.decode(tokens_out[seq][-(max_stop + 8) :], skip_special_tokens=True)
                    if any(s in tail for s in stop_strings or ()):
                        reasons[seq] = "stop"
                        continue
                if len(tokens_out[seq]) >= max_new_tokens:
                    continue  # "length"
                keep.append(j)
            if not keep:
                break
            if len(keep) < len(active):
                idx = torch.tensor(keep, device=mask.device)
                cache.batch_select_indices(idx)
                mask, next_pos, nxt = mask[idx], next_pos[idx], nxt[idx]
                active = [active[j] for j in keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            out = model(
                input_ids=nxt[:, None],
                attention_mask=mask,
                position_ids=next_pos,
                use_cache=True,
                **{cache_kw: cache},
            )
            logits = out.logits[:, -1, :]
            next_pos = next_pos + 1
    return [(t, r) for t, r in zip(tokens_out, reasons, strict=True)]

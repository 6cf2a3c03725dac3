"""llama.cpp through llama-cpp-python: quantize, check an exported GGUF, and generate from one.

llama-cpp-python is optional (``pip install "sblite[llamacpp]"``; on a machine without a matching wheel,
``CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install llama-cpp-python`` builds it in ~8 min). Everything here
imports it lazily; ``available()`` says whether it is there.

- ``quantize(src, dst, "q4_k_m")``: llama.cpp's own quantizer (the ``llama_model_quantize`` binding, run in
  a child process so its logs and any crash stay out of sblite; else ``llama-quantize`` on PATH).
- ``check_against(...)``: what ``sblite export`` verifies: the file loads, llama.cpp tokenizes the budget
  tags and check prompts as the HF tokenizer does, and its greedy continuation equals transformers'.
- ``generate_gguf`` / ``stream_gguf`` / ``LlamaCppGenerator``: the llama.cpp engine, generation from a GGUF
  for ``sblite generate --gguf`` and ``sblite eval --gguf``, returning ``batch.Generation`` records under the
  ``batch.GenerateFn`` contract.

    python -m sblite.generate.llamacpp quantize SRC DST QUANT NTHREAD   # the child process of ``quantize``

Owns llama.cpp only: writing a GGUF is ``sblite.export``'s, picking llama.cpp for ``--gguf`` is
``batch.open_batch_engine``'s and ``stream.stream_gguf_answer``'s.

Importing it must not import llama_cpp; prompts go in as sblite's token ids, never re-tokenized text.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

INSTALL_HINT = 'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install llama-cpp-python'
GREEDY_CHECK_TOKENS = 24
BUDGET_TAGS = ("<budget>", "</budget>", "<solution>", "</solution>")


def available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def quantizer() -> str | None:
    """Which llama.cpp quantizer is usable: ``"llama-cpp-python"``, a ``llama-quantize`` path, or None."""
    if available():
        return "llama-cpp-python"
    return shutil.which("llama-quantize")


def _ftype(quant: str) -> int:
    import gguf

    from sblite.export.writer import LLAMACPP_QUANTS

    names = {"f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16", "q8_0": "MOSTLY_Q8_0", **LLAMACPP_QUANTS}
    return int(gguf.LlamaFileType[names[quant]])


def quantize(src: str | Path, dst: str | Path, quant: str, *, nthread: int = 0) -> str:
    """Quantize GGUF ``src`` to ``dst`` with llama.cpp; returns which tool did it. Raises RuntimeError."""
    tool = quantizer()
    if tool is None:
        raise RuntimeError(f"no llama.cpp quantizer: install llama-cpp-python ({INSTALL_HINT})")
    if tool == "llama-cpp-python":
        cmd = [
            sys.executable,
            "-m",
            "sblite.generate.llamacpp",
            "quantize",
            str(src),
            str(dst),
            quant,
            str(nthread),
        ]
    else:
        cmd = [tool, str(src), str(dst), quant.upper(), *([str(nthread)] if nthread else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not Path(dst).is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(
            f"llama.cpp quantize to {quant} failed (exit {proc.returncode}): {' | '.join(tail)}"
        )
    return tool if tool == "llama-cpp-python" else f"llama-quantize ({tool})"


def _quantize_in_process(src: str, dst: str, quant: str, nthread: int) -> int:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = _ftype(quant)
    params.nthread = nthread or (os.cpu_count() or 1)
    return int(llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params))


# ------------------------------------------------------------------------------------------- loading


_LOADED: dict[tuple[str, int, int], Any] = {}


def load(path: str, n_ctx: int = 4096, seed: int = 0):
    """A ``llama_cpp.Llama`` for ``path`` (cached: repeated calls reuse the loaded model)."""
    key = (str(path), n_ctx, seed)
    if key not in _LOADED:
        from llama_cpp import Llama

        if len(_LOADED) >= 2:
            close_all()
        if not _LOADED:
            atexit.register(close_all)
        _LOADED[key] = Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_batch=min(512, n_ctx),
            n_threads=max(1, int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)),
            seed=seed,
            verbose=False,
        )
    return _LOADED[key]


def close_all() -> None:
    """Free the cached models now: llama-cpp-python's own finalizer fails at interpreter exit."""
    while _LOADED:
        _LOADED.popitem()[1].close()


def tokenize(llm, text: str, *, add_bos: bool = False) -> list[int]:
    """Token ids of ``text`` with special tokens parsed (``<|im_start|>`` is one token), as HF does."""
    return list(llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))


def tokenize_prompt(llm, prompt: str) -> list[int]:
    """A rendered prompt's ids as ``protocol.encode_prompt`` splits it (a trailing pre-fill tokenized apart
    from the template, as in training), with BOS when the model wants it."""
    from sblite import protocol

    head, budget = protocol.split_prefill(prompt)
    tail = tokenize(llm, protocol.prefill(budget)) if budget is not None else []
    return tokenize(llm, head, add_bos=True) + tail


def is_eog(llm, token: int) -> bool:
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    return bool(llama_cpp.llama_vocab_is_eog(vocab, token))


def _last_logits(llm):
    """Logits after the last ``eval``; read from the context (``llm.scores`` is only filled with logits_all)."""
    import llama_cpp
    import numpy as np

    ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float32)


def greedy(llm, ids: list[int], n: int) -> tuple[list[int], Any]:
    """``n`` greedy tokens after ``ids`` (stops at end-of-generation) and the logits of the first step."""
    import numpy as np

    llm.reset()
    llm.eval(ids)
    first = _last_logits(llm)
    out: list[int] = []
    logits = first
    for _ in range(n):
        tok = int(np.argmax(logits))
        if is_eog(llm, tok):
            break
        out.append(tok)
        llm.eval([tok])
        logits = _last_logits(llm)
    return out, first


# ------------------------------------------------------------------------------------------- checks


def _hf_greedy(model, ids: list[int], n: int, eos: set[int]) -> tuple[list[int], list[float]]:
    """Greedy tokens from a transformers model and, per step, the gap between its two best logits."""
    import torch

    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=n,
            do_sample=False,
            eos_token_id=sorted(eos),
            pad_token_id=sorted(eos)[0],
            output_logits=True,
            return_dict_in_generate=True,
        )
    tokens = out.sequences[0, len(ids) :].tolist()
    gaps = [float(t.topk(2).values[0, 0] - t.topk(2).values[0, 1]) for t in out.logits]
    if tokens and tokens[-1] in eos:
        tokens, gaps = tokens[:-1], gaps[:-1]
    return tokens, gaps


def check_against(
    gguf_path: str | Path, tokenizer, ref_model, gguf_hf_model, prompts: Sequence[str], *, exact: bool
) -> dict[str, Any]:
    """llama.cpp against transformers on ``gguf_path``: tokenization of the budget tags and ``prompts``,
    first-step logits, and the greedy continuation of the first prompt.

    The greedy reference is transformers running the same GGUF weights (``gguf_hf_model``), so for f32/f16
    the two must agree token for token; agreement with the float32 merged model (``ref_model``) is reported
    too. A divergence where transformers' own top-2 logits are within 1e-3 of each other is a tie, not an
    error, and is reported as such."""
    import numpy as np
    import torch

    from sblite.generate.hf import eos_token_ids

    llm = load(str(gguf_path), 4096, 0)
    mismatches = []
    for text in (*BUDGET_TAGS, *prompts):
        ours = tokenize(llm, text)
        theirs = tokenizer(text, add_special_tokens=False).input_ids
        if ours != theirs:
            mismatches.append({"text": text[:60], "llama_cpp": ours[:12], "hf": theirs[:12]})
    ids = tokenizer(prompts[0], add_special_tokens=False).input_ids
    if tokenizer.bos_token_id is not None and tokenize(llm, "a", add_bos=True)[:1] == [
        tokenizer.bos_token_id
    ]:
        ids = [tokenizer.bos_token_id, *ids] if ids[:1] != [tokenizer.bos_token_id] else ids
    lc_tokens, lc_first = greedy(llm, ids, GREEDY_CHECK_TOKENS)
    eos = set(eos_token_ids(ref_model, tokenizer))
    hf_tokens, gaps = _hf_greedy(gguf_hf_model, ids, GREEDY_CHECK_TOKENS, eos)
    ref_tokens, _ = _hf_greedy(ref_model, ids, GREEDY_CHECK_TOKENS, eos)
    with torch.no_grad():
        hf_first = gguf_hf_model(torch.tensor([ids])).logits[0, -1].float().numpy()
    diverged = next((i for i, (a, b) in enumerate(zip(lc_tokens, hf_tokens, strict=False)) if a != b), None)
    if diverged is None and len(lc_tokens) != len(hf_tokens):
        diverged = min(len(lc_tokens), len(hf_tokens))
    tie = diverged is not None and diverged < len(gaps) and gaps[diverged] < 1e-3
    n = len(hf_first)
    return {
        "loaded": True,
        "n_vocab": int(llm.n_vocab()),
        "tokenization_match": not mismatches,
        "tokenization_checked": len(BUDGET_TAGS) + len(prompts),
        "tokenization_mismatches": mismatches,
        "budget_tag_ids": {t: tokenize(llm, t) for t in BUDGET_TAGS},
        "first_step_max_abs_logit_diff": float(np.max(np.abs(lc_first[:n] - hf_first))),
        "first_step_top1_equal": int(np.argmax(lc_first[:n])) == int(np.argmax(hf_first)),
        "greedy_tokens": len(lc_tokens),
        "greedy_match": diverged is None or tie,
        "greedy_diverged_at": diverged,
        "greedy_divergence_is_tie": tie,
        "greedy_match_merged_f32": lc_tokens == ref_tokens,
        "greedy_text": tokenizer.decode(lc_tokens),
        "exact_required": exact,
    }


# ------------------------------------------------------------------------------------------- generation


def _decode(llm, ids: list[int]) -> str:
    return llm.detokenize(ids, special=False).decode("utf-8", errors="replace")


def stream_gguf(
    path: str | Path,
    prompt: str,
    *,
    max_new_tokens: int = 512,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stop: Sequence[str] | None = None,
    seed: int = 0,
    n_ctx: int = 4096,
) -> Iterator[tuple[int, str]]:
    """Generate from a GGUF, yielding ``(token_id, text_delta)`` per token. ``prompt`` is the full prompt
    text (chat template applied, e.g. ``protocol.render_prompt``); BOS is added when the model wants it.
    Ends at end-of-generation, at a ``stop`` string (its text is not yielded), or after
    ``max_new_tokens``. ``temperature == 0`` is greedy."""
    llm = load(str(path), n_ctx, 0)
    llm.set_seed(seed)
    ids = tokenize_prompt(llm, prompt)
    out: list[int] = []
    shown = ""
    kwargs = (
        {"temp": temperature, "top_p": top_p, "top_k": 0} if temperature > 0 else {"temp": 0.0, "top_k": 1}
    )
    for tok in llm.generate(ids, reset=True, **kwargs):
        if is_eog(llm, tok) or len(out) >= max_new_tokens:
            return
        out.append(tok)
        text = _decode(llm, out)
        if text.endswith("\ufffd"):  # half a UTF-8 character: wait for the rest
            continue
        for s in stop or ():
            if s in text:
                cut = text.index(s)
                if cut > len(shown):
                    yield tok, text[len(shown) : cut]
                return
        yield tok, text[len(shown) :]
        shown = text


def generate_gguf(
    path: str | Path,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 512,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stop: Sequence[str] | None = None,
    seed: int = 0,
    n_ctx: int = 4096,
):
    """One ``sblite.generate.batch.Generation`` per prompt (text, completion ids, token count, finish reason)."""
    from sblite.generate.batch import Generation

    results = []
    for i, prompt in enumerate(prompts):
        ids: list[int] = []
        text = ""
        for tok, delta in stream_gguf(
            path,
            prompt,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            seed=seed + i,
            n_ctx=n_ctx,
        ):
            ids.append(tok)
            text += delta
        llm = load(str(path), n_ctx, 0)
        full = _decode(llm, ids)
        hit = next((s for s in stop or () if s in full), None)
        if hit is not None:  # keep the stop string, as transformers' stop_strings does
            text += hit
        finish = "length" if len(ids) >= max_new_tokens and hit is None else "stop"
        results.append(Generation(text, tuple(ids), len(ids), finish))
    return results


class LlamaCppGenerator:
    """``batch.GenerateFn`` (as ``hf.generate_batch``) on a GGUF file (CPU, any machine)."""

    def __init__(self, path: str | Path, *, seed: int = 0, n_ctx: int = 4096):
        self.path, self.seed, self.n_ctx = str(path), seed, n_ctx

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        temperature: float,
        top_p: float = 1.0,
        num_return_sequences: int = 1,
        batch_size: int = 1,
        seed: int | None = None,
        stop_strings: Sequence[str] | None = None,
        on_batch=None,
    ) -> list[list[Any]]:
        del batch_size  # llama.cpp runs one sequence at a time here
        seed = self.seed if seed is None else seed
        out = []
        for i, prompt in enumerate(prompts):
            out.append(
                [
                    generate_gguf(
                        self.path,
                        [prompt],
                        max_new_tokens=max_new_tokens,
                        temperature=temperature,
                        top_p=top_p,
                        stop=stop_strings,
                        seed=seed + i * num_return_sequences + k,
                        n_ctx=self.n_ctx,
                    )[0]
                    for k in range(num_return_sequences)
                ]
            )
            if on_batch:
                on_batch(1)  # one prompt done (the contract: prompts finished since the last call)
        return out


if __name__ == "__main__":  # the child process of ``quantize``
    if len(sys.argv) == 6 and sys.argv[1] == "quantize":
        sys.exit(_quantize_in_process(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])))
    sys.exit("usage: python -m sblite.generate.llamacpp quantize SRC DST QUANT NTHREAD")

"""What every batch engine returns and the one entry that picks an engine for ``--model`` or ``--gguf``.

Owns the shared result type ``Generation``, the batch-generate contract (``GenerateFn``) that the engines
implement (``hf.generate_batch``, ``vllm.VLLMGenerator.generate``, ``llamacpp.LlamaCppGenerator.generate``),
and ``open_batch_engine``, which turns ``sblite eval``'s ``--model``/``--gguf`` into a tokenizer plus a bound
generate function. It does no decoding itself and imports no heavy library at module level.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

FinishReason = Literal["stop", "length"]

#: ``status(message)`` is a context manager shown while a model loads (``rich.console.Console.status``).
StatusFn = Callable[[str], AbstractContextManager[Any]]


@dataclass(frozen=True, slots=True)
class Generation:
    """One sampled completion. ``token_ids`` exclude the prompt, the closing EOS and padding;
    ``finish_reason`` is ``"stop"`` (EOS or a stop string) or ``"length"`` (cut at ``max_new_tokens``)."""

    text: str
    token_ids: tuple[int, ...]
    n_tokens: int
    finish_reason: FinishReason
    forced_tokens: int = 0  # of ``token_ids``, how many the budget guard wrote (``guard``)

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "token_ids": list(self.token_ids),
            "n_tokens": self.n_tokens,
            "finish_reason": self.finish_reason,
            "forced_tokens": self.forced_tokens,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Generation:
        return cls(d["text"], tuple(d["token_ids"]), int(d["n_tokens"]), d["finish_reason"],
                   int(d.get("forced_tokens", 0)))  # fmt: skip


class GenerateFn(Protocol):
    """The batch contract: ``num_return_sequences`` generations per prompt, in prompt order.

    ``prompts`` are full prompt texts (chat template applied, ``protocol.render_prompt``); every engine
    tokenises them with the pre-fill boundary of training. ``temperature == 0`` is greedy; ``seed`` makes a
    run repeatable; ``on_batch(n)`` is called with the number of prompts finished since the last call.
    The transformers engine also takes ``budget_guard`` (``guard``); the others do not enforce budgets.
    """

    def __call__(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        temperature: float,
        top_p: float = ...,
        num_return_sequences: int = ...,
        batch_size: int = ...,
        seed: int = ...,
        stop_strings: Sequence[str] | None = ...,
        on_batch: Callable[[int], None] | None = ...,
    ) -> list[list[Generation]]: ...


@dataclass(frozen=True)
class BatchEngine:
    """A loaded model ready for batches: its tokenizer, a bound ``GenerateFn``, a label, and what was loaded
    (``info["engine"]`` is ``"transformers"`` or ``"llama.cpp"``; it goes into ``results.json``)."""

    tokenizer: Any
    generate: GenerateFn
    label: str
    info: dict[str, Any]


def open_batch_engine(
    *,
    model: str | None = None,
    gguf: str | None = None,
    stage: str | None = None,
    seed: int = 0,
    status: StatusFn | None = None,
) -> BatchEngine:
    """Load ``model`` (a ``loading.resolve_model_spec`` spec) or ``gguf`` (a ``.gguf`` file) for batches.

    A model runs on transformers (``hf.generate_batch``, adapters merged). A GGUF runs on llama.cpp when
    llama-cpp-python is installed, else on transformers reading the GGUF. ``stage`` picks ``sft``/``grpo``
    inside a run directory; ``status`` wraps the slow load so a caller can show it.
    """
    from functools import partial

    from sblite.generate import hf, llamacpp, loading

    if (model is None) == (gguf is None):
        raise ValueError("give exactly one of model and gguf")
    status = status or (lambda _message: contextlib.nullcontext())
    if gguf is not None:
        gspec = loading.resolve_gguf(gguf)
        tok = loading.load_gguf_tokenizer(gspec)
        info: dict[str, Any] = {"gguf": gspec.path, "instruction_in_user": gspec.instruction_in_user}
        if llamacpp.available():
            info["engine"] = "llama.cpp"
            generator = llamacpp.LlamaCppGenerator(gspec.path, seed=seed)
            return BatchEngine(tok, generator.generate, gspec.label, info)
        with status(f"loading {gspec.label} with transformers (llama-cpp-python is not installed)…"):
            lm = loading.load_gguf_with_transformers(gspec)
        info["engine"] = "transformers"
        return BatchEngine(tok, partial(hf.generate_batch, lm, tok), gspec.label, info)
    spec = loading.resolve_model_spec(model or "", stage=stage)
    with status(f"loading {spec.label or spec.base}…"):
        lm, tok = loading.load_model(spec)
    info = {
        "base": spec.base,
        "adapter": spec.adapter,
        "instruction_in_user": spec.instruction_in_user,
        "engine": "transformers",
    }
    return BatchEngine(tok, partial(hf.generate_batch, lm, tok), spec.label or spec.base, info)

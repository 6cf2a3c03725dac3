"""The generator that sample mode of ``sblite prepare`` draws from: a model on transformers or vLLM behind
one ``generate(prompts, seed) -> k generations per prompt`` (``sblite.data.labels.GenerateFn``).

This module owns choosing the backend and loading the model for sampling. It must not label, verify or
write anything; torch, transformers and vLLM load only inside ``make_generator``.

vLLM's context is sized here: prompt cap (``max_prompt_tokens``, default ``DEFAULT_PROMPT_TOKENS``) + the
longest response, never beyond the model's own ``max_position_embeddings``. The context length returned is
the engine's, so ``sblite prepare`` rejects the prompts that would not fit instead of sending them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from sblite.data.labels import GenerateFn, SampleSettings

BACKENDS = ("auto", "hf", "vllm")
#: the prompt cap vLLM's context is sized for when the caller names none (the GPU recipes' max_prompt_length)
DEFAULT_PROMPT_TOKENS = 1024
#: sampling has the card to itself; the rest is the CUDA context and the sampler's workspace
VLLM_GPU_MEMORY_UTILIZATION = 0.85


class EngineError(ValueError):
    """A backend or model that cannot be used; the message is one line saying what to fix."""


def make_generator(
    model: str,
    settings: SampleSettings,
    *,
    backend: str = "auto",
    seed: int = 0,
    max_prompt_tokens: int | None = None,
    gpu_memory_utilization: float = VLLM_GPU_MEMORY_UTILIZATION,
) -> tuple[GenerateFn, Any, str, int | None]:
    """``(generate, model tokenizer, engine name, context length)`` for ``model`` on ``backend``.

    ``auto`` is vLLM when it is installed and usable (a CUDA GPU), else transformers (``hf-compact``).
    ``max_prompt_tokens`` and ``gpu_memory_utilization`` size the vLLM engine (see the module docstring)."""
    from sblite.generate.hf import generate_batch, load_for_inference
    from sblite.generate.vllm import VLLMGenerator, vllm_available

    if backend not in BACKENDS:
        raise EngineError(f"--backend {backend!r}: choose auto, hf or vllm")
    if backend == "vllm" and not vllm_available():
        raise EngineError("--backend vllm needs the vllm package and a CUDA GPU; use --backend hf")
    use_vllm = backend == "vllm" or (backend == "auto" and vllm_available())
    try:
        if use_vllm:
            wanted = (max_prompt_tokens or DEFAULT_PROMPT_TOKENS) + settings.max_new_tokens
            gen = VLLMGenerator(
                model,
                seed=seed,
                max_model_len=vllm_context_length(model, wanted),
                gpu_memory_utilization=gpu_memory_utilization,
            )
            return _sampler(gen.generate, settings), gen.tokenizer, "vllm", gen.max_model_len
        loaded, model_tok = load_for_inference(model)
    except Exception as err:  # noqa: BLE001 - a bad model path is a usage error
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise EngineError(f"cannot load model {model!r}: {first[:200]}") from None
    ctx = getattr(loaded.config, "max_position_embeddings", None)
    return _sampler(partial(generate_batch, loaded, model_tok), settings), model_tok, "hf-compact", ctx


def vllm_context_length(model: str, wanted: int) -> int:
    """``wanted`` tokens, or the model's ``max_position_embeddings`` when that is smaller (vLLM refuses a
    ``max_model_len`` beyond it); ``wanted`` when the config cannot be read (vLLM then says what is wrong)."""
    from transformers import AutoConfig

    from sblite.models import resolve_model

    try:
        config = AutoConfig.from_pretrained(resolve_model(model))
    except Exception:  # noqa: BLE001 - the engine's own load reports a bad model
        return wanted
    limit = getattr(config, "max_position_embeddings", None)
    return min(wanted, int(limit)) if limit else wanted


def _sampler(engine_generate: Callable[..., list[list[Any]]], settings: SampleSettings) -> GenerateFn:
    """``generate(prompts, seed)`` for sample mode over any engine with ``generate_batch``'s contract."""

    def generate(prompts: list[str], seed: int) -> list[list[Any]]:
        return engine_generate(
            prompts,
            max_new_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            num_return_sequences=settings.k,
            batch_size=len(prompts),
            seed=seed,
        )

    return generate

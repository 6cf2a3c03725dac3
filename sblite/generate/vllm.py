"""The vLLM engine (CUDA only): the batch contract of ``batch.GenerateFn`` on vLLM's scheduler.

    from sblite.generate.vllm import VLLMGenerator, vllm_available
    if vllm_available():
        gen = VLLMGenerator("builtin:smollm2-135m", seed=0)
        samples = gen.generate(prompts, max_new_tokens=256, temperature=0.7, num_return_sequences=4)

``sblite prepare --labels sample --backend auto|vllm`` uses it when ``vllm`` is installed and a CUDA GPU is
visible. Prompts go in as token ids from ``protocol.encode_prompt`` so the pre-fill boundary is the one
training used. Owns vLLM only: vllm and torch are imported inside the functions (importing this is free;
the name ``vllm`` inside still means the installed package, imports being absolute).

Importing it must not import vLLM (CUDA only); prompts go in as token ids, never re-tokenized text.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from typing import Any

from sblite.generate.batch import FinishReason, Generation


def vllm_available() -> bool:
    """True when the vllm package is installed and a CUDA GPU is visible."""
    if importlib.util.find_spec("vllm") is None:
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


class VLLMGenerator:
    """``batch.GenerateFn`` (as ``hf.generate_batch``) on vLLM (CUDA). vLLM schedules its own batches, so
    ``batch_size`` only sets how many prompts go in one ``generate`` call (progress granularity)."""

    def __init__(self, model: str, *, seed: int = 0, gpu_memory_utilization: float = 0.85, **llm_kwargs: Any):
        from vllm import LLM  # type: ignore[import-not-found]

        from sblite.models import resolve_model

        self.llm = LLM(
            model=resolve_model(model), seed=seed, gpu_memory_utilization=gpu_memory_utilization, **llm_kwargs
        )
        self.tokenizer = self.llm.get_tokenizer()

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        temperature: float,
        top_p: float = 1.0,
        num_return_sequences: int = 1,
        batch_size: int = 64,
        seed: int = 0,
        stop_strings: Sequence[str] | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[list[Generation]]:
        from vllm import SamplingParams  # type: ignore[import-not-found]

        from sblite import protocol

        results: list[list[Generation]] = []
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start : start + batch_size])
            params = SamplingParams(
                n=num_return_sequences,
                temperature=temperature,
                top_p=top_p,
                max_tokens=max_new_tokens,
                seed=seed + start,
                stop=list(stop_strings) if stop_strings else None,
            )
            eos = self.tokenizer.eos_token_id
            # token ids, not text: the pre-fill boundary must be the one training used (protocol.encode_prompt)
            token_prompts = [{"prompt_token_ids": protocol.encode_prompt(self.tokenizer, p)} for p in chunk]
            for req in self.llm.generate(token_prompts, params, use_tqdm=False):
                gens = []
                for o in req.outputs:
                    ids = [int(t) for t in o.token_ids]
                    while ids and ids[-1] == eos:  # vLLM keeps the EOS it stopped on
                        ids.pop()
                    reason: FinishReason = "length" if o.finish_reason == "length" else "stop"
                    gens.append(Generation(o.text, tuple(ids), len(ids), reason))
                results.append(gens)
            if on_batch is not None:
                on_batch(len(chunk))
        return results

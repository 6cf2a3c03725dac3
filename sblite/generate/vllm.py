"""The vLLM engine (CUDA only): the batch contract of ``batch.GenerateFn`` on vLLM's scheduler.

    from sblite.generate.vllm import VLLMGenerator, vllm_available
    if vllm_available():
        gen = VLLMGenerator("builtin:smollm2-135m", max_model_len=1024 + 256, seed=0)
        samples = gen.generate(prompts, max_new_tokens=256, temperature=0.7, num_return_sequences=4)

``sblite prepare --labels sample --backend auto|vllm`` uses it when ``vllm`` is installed and a CUDA GPU is
visible. Prompts go in as token ids from ``protocol.encode_prompt`` so the pre-fill boundary is the one
training used. Owns vLLM only: vllm and torch are imported inside the functions (importing this is free;
the name ``vllm`` inside still means the installed package, imports being absolute).

Two vLLM rules shape it. ``max_model_len`` is required: left out, vLLM sizes the engine for the model's whole
context (131,072 tokens for DeepSeek-R1-Distill) and fails its KV-cache check on a 24 GB card; callers pass
prompt cap + new tokens. And vLLM raises ``n must be 1 when using greedy sampling`` for temperature 0
(below its ``_SAMPLING_EPS``, 1e-5) with n > 1: greedy decoding gives the same answer each time, so one is
asked for and copied n times — what the transformers engine returns for greedy ``num_return_sequences``.

Importing it must not import vLLM (CUDA only); prompts go in as token ids, never re-tokenized text.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from typing import Any

from sblite.generate.batch import FinishReason, Generation

#: vLLM samples greedily below this temperature (``vllm.sampling_params._SAMPLING_EPS``)
GREEDY_BELOW = 1e-5


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

    def __init__(
        self,
        model: str,
        *,
        max_model_len: int,
        seed: int = 0,
        gpu_memory_utilization: float = 0.85,
        **llm_kwargs: Any,
    ):
        from vllm import LLM  # type: ignore[import-not-found]

        from sblite.models import resolve_model

        self.llm = LLM(
            model=resolve_model(model),
            seed=seed,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            **llm_kwargs,
        )
        self.tokenizer = self.llm.get_tokenizer()
        config = getattr(self.llm.llm_engine, "model_config", None)
        #: the context the engine was built for: prompt + new tokens must fit in it
        self.max_model_len = int(getattr(config, "max_model_len", None) or max_model_len)

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

        # vLLM refuses n > 1 when greedy ("n must be 1 when using greedy sampling"): decode once, copy
        greedy = temperature < GREEDY_BELOW
        n, copies = (1, num_return_sequences) if greedy else (num_return_sequences, 1)
        results: list[list[Generation]] = []
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start : start + batch_size])
            params = SamplingParams(
                n=n,
                temperature=temperature,
                top_p=top_p,
                max_tokens=max_new_tokens,
                seed=seed + start,
                stop=list(stop_strings) if stop_strings else None,
            )
            eos = self.tokenizer.eos_token_id
            # token ids, not text: the pre-fill boundary must be the one training used (protocol.encode_prompt)
            token_prompts = [{"prompt_token_ids": protocol.encode_prompt(self.tokenizer, p)} for p in chunk]
            longest = max(len(t["prompt_token_ids"]) for t in token_prompts)
            if longest + max_new_tokens > self.max_model_len:  # vLLM would cut it short, or refuse it
                raise ValueError(
                    f"a prompt of {longest} tokens + max_new_tokens {max_new_tokens} exceeds the vLLM engine's "
                    f"max_model_len {self.max_model_len}; build the engine with a larger max_model_len"
                )
            for req in self.llm.generate(token_prompts, params, use_tqdm=False):
                gens = []
                for o in req.outputs:
                    ids = [int(t) for t in o.token_ids]
                    while ids and ids[-1] == eos:  # vLLM keeps the EOS it stopped on
                        ids.pop()
                    reason: FinishReason = "length" if o.finish_reason == "length" else "stop"
                    gens.append(Generation(o.text, tuple(ids), len(ids), reason))
                results.append(gens * copies)
            if on_batch is not None:
                on_batch(len(chunk))
        return results

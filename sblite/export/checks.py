"""The checks that prove an exported artifact behaves like the model it came from, and their tolerances.

``compare_logits`` compares two models position by position on ``check_prompts`` (budget-format prompts in
the model's chat template, or as plain text for a model without one, one with a complete
``<budget>…</budget><solution>…</solution>`` answer).
``sblite.export.merge`` uses it against the unmerged adapter model; ``verify_gguf`` uses it on a GGUF read
back by transformers, then (when llama-cpp-python is installed) has llama.cpp load the file, tokenize the
budget tags as the HF tokenizer does and continue a prompt greedily with the same tokens.

Checks only measure and report: nothing here writes files or raises on a failed check (the callers decide).
torch, transformers and llama.cpp are imported inside the functions that use them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sblite import protocol

#: Largest allowed max|Δlogit| / max(1, max|logit|) against the float32 reference, per stored type.
MERGE_TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 4e-2}
#: GGUF read back by transformers vs the merged float32 model: float types by the relative logit difference,
#: quantized ones by the mean KL divergence of the next-token distributions (one logit of a q8_0 model can
#: be a few percent off while the distribution barely moves).
GGUF_TOLERANCE = {
    "f32": ("rel_logit_diff", 1e-4),
    "f16": ("rel_logit_diff", 1e-2),
    "bf16": ("rel_logit_diff", 4e-2),
    "q8_0": ("mean_kl", 2e-2),
}
#: llama.cpp's k-quants: sanity bounds by bit width (SmolLM2-135M q4_k_m measured 0.11).
KQUANT_TOLERANCE = {"q2": 1.0, "q3": 0.5, "q4": 0.3, "q5": 0.15, "q6": 0.1}
#: Types for which llama.cpp's greedy continuation must equal transformers' token for token.
GREEDY_EXACT = ("f32", "f16")
CHECK_QUESTIONS = (
    "What is 12 + 345?",
    "Ann has 7 apples and gets 5 more. How many apples does Ann have now?",
)
CHECK_COMPLETION = protocol.render_completion(24, "7 + 5 = 12. The answer is \\boxed{12}.")


def check_prompts(tokenizer, *, instruction_in_user: bool = False) -> list[str]:
    """Budget-format texts the logit checks run on: prompts in the model's chat template, one with a
    complete ``<budget>…</budget><solution>…</solution>`` answer. A model without a chat template (a base
    model) is checked on the same texts without one: the instruction, the question and the answer as plain
    text."""
    if getattr(tokenizer, "chat_template", None) is None:
        prompts = [f"{protocol.SYSTEM_PROMPT}\n\n{q}\n" for q in CHECK_QUESTIONS]
    else:
        prompts = [
            protocol.render_prompt(tokenizer, q, instruction_in_user=instruction_in_user)
            for q in CHECK_QUESTIONS
        ]
    return [prompts[0], prompts[1] + CHECK_COMPLETION]


def compare_logits(ref_model, model, tokenizer, prompts: list[str]) -> dict[str, float]:
    """max |Δlogit|, the same relative to the logit scale, top-1 agreement and the mean KL divergence
    KL(ref ‖ model) of the next-token distributions, over every position of ``prompts``."""
    import torch

    diff = scale = kl_sum = 0.0
    agree = total = 0
    with torch.no_grad():
        for text in prompts:
            ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
            a = ref_model(ids).logits.float()
            b = model(ids).logits.float()
            diff = max(diff, (a - b).abs().max().item())
            logp, logq = a.log_softmax(-1), b.log_softmax(-1)
            kl_sum += (logp.exp() * (logp - logq)).sum(-1).sum().item()
            scale = max(scale, a.abs().max().item())
            agree += (a.argmax(-1) == b.argmax(-1)).sum().item()
            total += a.shape[1]
    return {
        "max_abs_logit_diff": diff,
        "logit_scale": scale,
        "rel_logit_diff": diff / max(1.0, scale),
        "top1_agreement": agree / max(1, total),
        "mean_kl": max(0.0, kl_sum / max(1, total)),  # float error can make a zero KL slightly negative
        "positions": total,
    }


def gguf_tolerance(quant: str) -> tuple[str, float]:
    """(metric, bound) a GGUF of type ``quant`` read back by transformers must meet."""
    return GGUF_TOLERANCE.get(quant) or ("mean_kl", KQUANT_TOLERANCE[quant[:2]])


def verify_gguf(
    gguf_path: str | Path, model_dir: str | Path, quant: str, *, instruction_in_user: bool = False
) -> dict[str, Any]:
    """Check ``gguf_path`` with transformers and (when installed) llama.cpp against the model in
    ``model_dir``. Returns the numbers seen; ``failure`` names the first failed check (absent if none)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sblite.generate import llamacpp
    from sblite.logs import quiet_libraries

    quiet_libraries()
    gguf_path = Path(gguf_path)
    tok = AutoTokenizer.from_pretrained(model_dir)
    ref = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prompts = check_prompts(tok, instruction_in_user=instruction_in_user)
    report: dict[str, Any] = {"quant": quant}
    failures: list[str] = []

    gguf_src = dict(
        pretrained_model_name_or_path=gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    try:
        hf = AutoModelForCausalLM.from_pretrained(**gguf_src)
        report["transformers_config"] = "from the GGUF"
    except RuntimeError as err:
        # transformers' GGUF reader maps fewer hparams than llama.cpp reads (e.g. no attention.key_length for
        # qwen3, so a head_dim other than 128 mis-sizes): load the GGUF's weights into the model's config.
        from transformers import AutoConfig

        hf = AutoModelForCausalLM.from_pretrained(**gguf_src, config=AutoConfig.from_pretrained(model_dir))
        report["transformers_config"] = f"from {model_dir} (transformers' GGUF reader: {str(err)[:80]})"
    hf.eval()
    tf = compare_logits(ref, hf, tok, prompts)
    tf["metric"], tf["tolerance"] = gguf_tolerance(quant)
    tf["passed"] = tf[tf["metric"]] <= tf["tolerance"]
    report["transformers"] = tf
    if not tf["passed"]:
        failures.append(f"transformers: {tf['metric']} {tf[tf['metric']]:.2e} > {tf['tolerance']:.0e}")

    if not llamacpp.available():
        report["llama_cpp"] = f"skipped: llama-cpp-python not installed ({llamacpp.INSTALL_HINT})"
    else:
        lc = llamacpp.check_against(gguf_path, tok, ref, hf, prompts, exact=quant in GREEDY_EXACT)
        report["llama_cpp"] = lc
        if not lc["tokenization_match"]:
            failures.append(f"llama.cpp tokenizes differently: {lc['tokenization_mismatches'][:2]}")
        if quant in GREEDY_EXACT and not lc["greedy_match"]:
            failures.append(
                f"llama.cpp's greedy continuation differs from transformers' at token {lc['greedy_diverged_at']}"
            )
    if failures:
        report["failure"] = "; ".join(failures)
    report["passed"] = not failures
    return report

"""What a recipe makes each part of ``sblite train`` receive, computed by the functions the run itself calls.

``train_plan(recipe)`` is the keyword arguments of each stage's TRL config (``trl_args.trl_kwargs`` and the section's
``trl_args``, as ``trl_config`` merges them), of the
backend's model load and LoRA (``backends``), the reward callables' constants (``rewards.build_reward_funcs``),
the prompt options, which prompts get a pre-filled budget (``datasets.prefill_budgets``), the completion
room the length check asks for, and the GPU memory it needs (``memory.estimate``). ``sblite train --dry-run``
prints it; a test changes every recipe key and checks the plan (or another command's resolved settings)
changes, so an ignored key cannot come back.

Nothing is loaded: no tokenizer, no model, no TRL import.
"""

from __future__ import annotations

from typing import Any

from sblite.config import Recipe
from sblite.rundir import RunDir

#: question ids the plan draws pre-filled budgets for (enough that a share of 0.1 shows)
PROBE_IDS = tuple(f"q{i}" for i in range(64))
#: a budget the plan reports the length check's required room for
PROBE_BUDGET = 256


def train_plan(cfg: Recipe) -> dict[str, Any]:
    """The resolved training settings, grouped by their consumer (see the module docstring)."""
    from sblite.backends import unsloth_load_kwargs
    from sblite.backends.base import lora_kwargs
    from sblite.backends.hf import hf_load_kwargs
    from sblite.rewards import build_reward_funcs
    from sblite.train.datasets import completion_tokens_needed, prefill_budgets, prompt_options
    from sblite.train.memory import estimate
    from sblite.train.run import grpo_extra
    from sblite.train.trl_args import shared_kwargs, trl_kwargs

    run = RunDir(cfg.resolved_output_dir)
    plan: dict[str, Any] = {
        "run": {
            "stages": list(cfg.stages),
            "run_dir": str(run),
            "data": cfg.data.path,
            "start_adapter": cfg.model.adapter,
        },
        "backend": {"requested": cfg.model.backend, "chat_template": cfg.model.chat_template},
        "model (transformers)": hf_load_kwargs(cfg.model),
        "model (unsloth)": unsloth_load_kwargs(cfg.model, cfg.lora),
        "lora": {"enabled": cfg.lora.enabled, **lora_kwargs(cfg.lora)},
        "prompts": {**prompt_options(cfg), "max_prompt_length": cfg.data.max_prompt_length},
    }
    if "sft" in cfg.stages:
        plan["sft (TRL SFTConfig)"] = {
            **trl_kwargs(cfg.sft, output_dir=run.checkpoints("sft")),
            **shared_kwargs(cfg),
            **cfg.sft.trl_args,
        }
        plan["sft rows"] = {"budget_reading_tokens": cfg.sft.budget_reading_tokens,
                            "budget_reading_samples": cfg.sft.budget_reading_samples,
                            "budget_reading_epochs": cfg.sft.budget_reading_epochs,
                            "budget_reading_prompt": cfg.sft.budget_reading_prompt,
                            "budget_stating_rows": cfg.sft.budget_stating_rows,
                            "budget_stating_length": cfg.sft.budget_stating_length,
                            "budget_tag_weight": cfg.sft.budget_tag_weight,
                            "budget_rows_by_question": cfg.sft.budget_rows_by_question}
        plan["sft batches"] = {"pack_shared_prompts": cfg.sft.pack_shared_prompts}
    if "grpo" in cfg.stages:
        g = cfg.grpo
        plan["grpo (TRL GRPOConfig)"] = {
            **trl_kwargs(g, output_dir=run.checkpoints("grpo")),
            **shared_kwargs(cfg),
            **grpo_extra(cfg),
            **g.trl_args,
        }
        forced = prefill_budgets(list(PROBE_IDS), cfg)
        plan["grpo pre-fill"] = {
            "forced": len(forced),
            "of": len(PROBE_IDS),
            "budgets": sorted(forced.values()),
        }
        plan["grpo length check"] = {
            f"room for budget {PROBE_BUDGET}": completion_tokens_needed(PROBE_BUDGET, cfg)
        }
        funcs = build_reward_funcs(cfg.reward, max_completion_length=g.max_completion_length)
        plan["rewards"] = [
            {
                "name": f.__name__,
                **f.config.model_dump(mode="json"),
                **({"L": f.max_len} if hasattr(f, "max_len") else {}),
            }
            for f in funcs
        ]
    plan["memory estimate (GiB)"] = estimate(cfg)
    return plan

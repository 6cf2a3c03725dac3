"""Typed recipes: the pydantic models a ``recipes/*.yaml`` file validates into, one per section.

A recipe is nested like its YAML: ``model``, ``lora``, ``data``, ``sft``, ``grpo``, ``reward``, ``eval``,
``export``. Every model forbids unknown keys, so a misspelled knob is an error naming the key and the file
instead of a silently ignored setting (TRL's ``TrlParser`` behaves the same way). Cross-field checks live
in validators whose message says what to change.

Finding and loading recipe files is ``sblite/recipes.py``. Only pydantic is imported here.

The models validate and cross-check; they never read files, apply overrides or touch a model.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class RecipeError(ValueError):
    """A recipe that cannot be used; the message is one line naming the file, the key and the fix."""


def _all_known(values: list[str], known, what: str) -> list[str]:
    """``values`` when each is one of ``known``; else a ValueError naming the unknown ones and the choices."""
    unknown = [v for v in values if v not in known]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
    return values


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


# ------------------------------------------------------------------------------------------------ sections


class ModelSection(_Strict):
    """Which model, and how it is loaded. ``backend: auto`` picks Unsloth on CUDA when it imports, else HF."""

    name_or_path: str = Field(
        description="HF id or local dir; 'builtin:tiny-random' / 'builtin:smollm2-135m'"
    )
    gguf_file: str | None = Field(None, description="load weights from this GGUF inside name_or_path")
    adapter: str | None = Field(None, description="LoRA adapter to start from (e.g. an SFT run's sft/)")
    backend: Literal["auto", "unsloth", "hf"] = "auto"
    load_in_4bit: bool = False
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    max_seq_length: int = Field(2048, ge=64)
    trust_remote_code: bool = False
    chat_template: str | None = Field(None, description="Jinja template overriding the tokenizer's")
    instruction_in_user: bool = Field(False, description="put the budget instruction in the user turn")
    # Unsloth-only: vLLM rollouts inside the training process.
    fast_inference: bool = False
    max_lora_rank: int | None = Field(None, ge=1, description="Unsloth fast_inference: largest LoRA rank")
    gpu_memory_utilization: float = Field(0.6, gt=0, le=1)


class LoraSection(_Strict):
    enabled: bool = True
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    use_rslora: bool = False
    use_gradient_checkpointing: bool | Literal["unsloth"] = "unsloth"


class DataSection(_Strict):
    """The prepared data (``sblite prepare`` output) and how it becomes prompts."""

    path: str | None = Field(None, description="a `sblite prepare` output dir; `--data` overrides")
    source: str | None = Field(None, description="what `sblite prepare --dataset` to run when path is unset")
    labels: Literal["reference", "sample"] = "reference"
    limit: int | None = Field(None, ge=1)
    max_prompt_length: int = Field(512, ge=16, description="prompts longer than this (tokens) are dropped")
    seed: int = 0
    renderings: list[str] = Field(
        default_factory=list,
        description="prepare: each worked solution (bundled arith data) re-said at these synthetic.VERBOSITY "
        "levels, added as pre-filled SFT rows labelled with their true length; [] = the paper's data",
    )

    self_renderings: list[str] = Field(
        default_factory=list,
        description="prepare: of data.renderings, the ones written as self rows instead of pre-filled: their "
        "budget number is trained too, so the model learns to state that rendering's length for the question it "
        "reads (own budget); [] = every rendering pre-filled, the self budget learnt from sampled answers only",
    )

    stating_questions: int = Field(
        0, ge=0, description="prepare: 0 = off. N: the N records after the first data.limit give their "
        "data.self_renderings rows, marked `stating` (no sampling, no pre-filled renderings, no GRPO row), which "
        "train only as budget-stating rows (sft.budget_stating_rows): the budget a question needs, learnt from N "
        "more questions than are sampled, without N more short answers to copy. Needs data.limit and "
        "data.self_renderings",
    )

    @field_validator("renderings", "self_renderings")
    @classmethod
    def _levels(cls, v: list[str]) -> list[str]:
        from sblite.data.synthetic import VERBOSITY  # light: stdlib only

        return _all_known(v, VERBOSITY, "rendering")

    @model_validator(mode="after")
    def _self_renderings_are_renderings(self) -> DataSection:
        extra = [v for v in self.self_renderings if v not in self.renderings]
        if extra:
            raise ValueError(
                f"data.self_renderings {', '.join(extra)} not in data.renderings {self.renderings}: a self row is one "
                f"of the renderings; add {', '.join(extra)} to data.renderings or drop it from data.self_renderings"
            )
        if self.stating_questions and not (self.self_renderings and self.limit):
            raise ValueError(
                f"data.stating_questions={self.stating_questions} adds the self rows (data.self_renderings) of the "
                "records after the first data.limit; set both (e.g. data.limit=24, data.self_renderings=[reference]) "
                "or drop data.stating_questions"
            )
        return self


class _TrainerStage(_Strict):
    """Knobs shared by both TRL trainers (``transformers.TrainingArguments``).

    Every field of a stage section is a TRL config field of the same name and reaches TRL through
    ``sblite.train.trl_args.trl_config`` — except the ones named in ``SBLITE_ONLY``, which sblite consumes
    itself. Adding a TRL knob is adding a field here (or in the stage class); nothing else changes.
    """

    #: fields sblite reads itself instead of passing to TRL (``trl_args`` is merged in verbatim)
    SBLITE_ONLY: ClassVar[frozenset[str]] = frozenset({"trl_args"})

    learning_rate: float = Field(1e-4, gt=0)
    max_steps: int = Field(-1, ge=-1, description="-1: run num_train_epochs")
    num_train_epochs: float = Field(1.0, gt=0)
    per_device_train_batch_size: int = Field(4, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    lr_scheduler_type: str = "linear"
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    optim: str = "adamw_torch"
    logging_steps: int = Field(1, ge=1)
    save_steps: int = Field(50, ge=1, description="checkpoint every N optimizer steps (for --resume)")
    save_total_limit: int | None = Field(2, ge=1)
    seed: int = 42
    report_to: list[str] = Field(default_factory=list, description="tensorboard / trackio / wandb")
    deepspeed: str | None = Field(None, description="DeepSpeed JSON for `accelerate launch` users")
    fsdp: str | None = Field(None, description="FSDP option string, e.g. 'full_shard auto_wrap'")
    trl_args: dict[str, Any] = Field(
        default_factory=dict, description="extra keyword arguments passed verbatim to the TRL config"
    )


class SFTStage(_TrainerStage):
    """Budget SFT (cold start) on the prepared ``<budget>…</budget><solution>…`` targets."""

    #: budget_reading_*: extra rows built by sblite (train/datasets.build_sft_dataset)
    SBLITE_ONLY: ClassVar[frozenset[str]] = frozenset(
        {"trl_args", "budget_reading_tokens", "budget_reading_samples", "budget_reading_epochs", "budget_stating_rows",
         "budget_stating_length", "budget_tag_weight", "budget_reading_prompt", "pack_shared_prompts",
         "budget_rows_by_question"}
    )

    learning_rate: float = Field(2e-4, gt=0)
    max_length: int = Field(1024, ge=16)
    packing: bool = False
    completion_only_loss: bool = True
    budget_reading_tokens: int = Field(
        0, ge=0, description="0: off. K: every SFT row also trains a short row, `<budget>N</budget><solution>` "
        "and its first K solution tokens without the prompt, loss on those K only: the one decision the number "
        "makes, which long rows drown out (see benchmarks/cold_start.py). Pair it with "
        "sft.trl_args.train_sampling_strategy=group_by_length so these rows train in batches of their own; sblite "
        "gives them one shared length, so each such batch mixes budgets of every digit count. The row carries no "
        "question unless sft.budget_reading_prompt: where the answer to a number depends on the question it cannot "
        "teach it without (benchmarks/results/reproduce_cpu_openings.md)",
    )
    budget_reading_samples: int = Field(
        0, ge=0, description="0: off. M: per question, M more budget-reading rows at budgets drawn log-uniformly "
        "over [½ × its shortest, 1.5 × its longest labelled length], each reading into the question's labelled "
        "answer nearest that budget in ratio: teaches the whole range of numbers, not only the few seen as labels",
    )
    budget_reading_prompt: bool = Field(
        False, description="false: a budget-reading row is the tags and K tokens alone. true: each one (labelled "
        "and drawn) is its question's prompt, the pre-filled `<budget>N</budget><solution>` and the first K solution "
        "tokens, loss on those K: it can teach a choice the number makes differently per question, at the price of "
        "a prompt per row (2.7x the SFT tokens in the reproduction, which turns it on: pre-fill slope 0.80 / 0.81 "
        "at seeds 0 / 1 against 0.64 / 0.94 without, benchmarks/results/reproduce_seeds_both_fixes.md). "
        "sft.pack_shared_prompts with sft.budget_rows_by_question computes that prompt once per batch",
    )
    budget_reading_epochs: float = Field(
        0, ge=0, description="0: budget-reading rows are mixed into the SFT rows. E > 0: they are trained after "
        "the full rows, alone, for E epochs (same optimizer settings, a fresh schedule). Mixed in is what works "
        "(benchmarks/results/cold_start_draws_shared.md); a phase of its own sets the opening but wrecks what "
        "follows (cold_start_phase.md)",
    )

    budget_stating_rows: int = Field(
        0, ge=0, description="0: off. M: every self row (its budget trained, not pre-filled) also gives M copies of "
        "a row that ends after `<budget>N</budget><solution>`, loss on those tags only: the budget the model "
        "states for the question, which a full row averages into its solution's loss. Under group_by_length "
        "they share batches with the budget-reading rows (sft.budget_stating_length)",
    )
    budget_stating_length: Literal["reading", "own"] = Field(
        "reading", description="the group_by_length length of the budget-stating rows. reading: the reading rows' "
        "one shared length, so the two kinds share batches and every reading row is padded to a prompt's length "
        "(what the reproduction measured). own: a shared length of their own: 1.56x fewer SFT tokens computed "
        "(benchmarks/results/sft_padding*.json), but they then train in batches of their own, less weight per "
        "stating row per step, and the model stated 2-3 distinct budgets against 6-9 (benchmarks/results/stating_batching.md)",
    )

    budget_tag_weight: float = Field(
        1.0, ge=1.0, description="1: off (the paper). W > 1: in every self row (its budget trained, not pre-filled) "
        "the loss on `<budget>N</budget><solution>` counts W times, as W - 1 budget-stating rows would add it, "
        "without their prompts to compute (sblite/train/weighted.py). On the demo W = 3 and 16 cost accuracy at "
        "both seeds tried, and 16 made the stated budget follow the question at one of two "
        "(benchmarks/results/demo_own_budget.md)",
    )

    pack_shared_prompts: bool = Field(
        False, description="false: each batch as TRL pads it. true: the rows of a batch that open alike (the "
        "system prompt; a question's prompt in its budget-reading and -stating rows) hold that opening once, "
        "with a 4D attention mask that gives every trained token the logits it had unpacked: the same loss, "
        "fewer tokens computed (sblite/train/packing.py, benchmarks/sft_packing.py). Needs transformers' sdpa "
        "attention (its default), so not the unsloth backend",
    )
    budget_rows_by_question: bool = Field(
        False, description="false: under group_by_length the budget-reading and -stating rows are in random order "
        "among themselves. true: each question's such rows sort together, so a batch holds a few questions' "
        "rows at many budgets, and sft.pack_shared_prompts computes each prompt once for all of them. Changes "
        "which rows share a batch, and so the training, unlike packing alone",
    )

    @model_validator(mode="after")
    def _reading_samples_need_tokens(self) -> SFTStage:
        if self.budget_reading_samples and not self.budget_reading_tokens:
            raise ValueError(
                f"sft.budget_reading_samples={self.budget_reading_samples} builds budget-reading rows, which need "
                "sft.budget_reading_tokens >= 1 (how many solution tokens each trains); e.g. sft.budget_reading_tokens=3"
            )
        if ((self.budget_reading_tokens or self.budget_stating_rows) and self.trl_args.get("remove_unused_columns")
                and self.trl_args.get("train_sampling_strategy") == "group_by_length"):
            raise ValueError(
                "sft.trl_args.remove_unused_columns: true drops the budget-reading rows' shared length column, so "
                "group_by_length sorts them by their budget's digit count again (train/datasets.keep_columns); "
                "remove it: sblite sets it to false for these rows"
            )
        if self.budget_stating_length == "own" and not self.budget_stating_rows:
            raise ValueError("sft.budget_stating_length=own sets the batch length of the budget-stating rows, but "
                             "sft.budget_stating_rows is 0; set it (e.g. 2) or drop sft.budget_stating_length")
        t = self.trl_args
        if self.budget_tag_weight != 1 and (self.packing or t.get("padding_free") or t.get("remove_unused_columns")
                                            or t.get("truncation_mode", "keep_start") != "keep_start"):
            raise ValueError(
                f"sft.budget_tag_weight={self.budget_tag_weight:g} weighs tokens of each row apart, which "
                "sft.packing, sft.trl_args.padding_free, remove_unused_columns and truncation_mode other than "
                "keep_start would lose (rows packed together, the weight column dropped, or cut from the other "
                "end); turn those off or set sft.budget_tag_weight=1"
            )
        if self.budget_tag_weight != 1 and (t.get("loss_type", "nll") != "nll" or t.get("label_smoothing_factor")):
            raise ValueError(
                f"sft.budget_tag_weight={self.budget_tag_weight:g} computes its own weighted NLL, so "
                "sft.trl_args loss_type/label_smoothing_factor would not be applied; drop "
                "them or set sft.budget_tag_weight=1"
            )
        if self.budget_reading_prompt and not self.budget_reading_tokens:
            raise ValueError("sft.budget_reading_prompt=true puts the question into the budget-reading rows, which "
                             "need sft.budget_reading_tokens >= 1 to exist; e.g. sft.budget_reading_tokens=3")
        if self.budget_reading_epochs and not self.budget_reading_tokens:
            raise ValueError(
                f"sft.budget_reading_epochs={self.budget_reading_epochs:g} trains budget-reading rows in a phase of "
                "their own, which needs sft.budget_reading_tokens >= 1 to build them; e.g. sft.budget_reading_tokens=3"
            )
        if self.pack_shared_prompts and (self.packing or t.get("padding_free")):
            raise ValueError("sft.pack_shared_prompts packs each batch itself, which TRL's sft.packing / "
                             "sft.trl_args.padding_free would already have flattened; turn those off or set "
                             "sft.pack_shared_prompts=false")
        if self.budget_rows_by_question and not (
                (self.budget_reading_tokens or self.budget_stating_rows)
                and t.get("train_sampling_strategy") == "group_by_length"):
            raise ValueError("sft.budget_rows_by_question orders the budget-reading and -stating rows for "
                             "group_by_length, so it needs such rows (sft.budget_reading_tokens or "
                             "sft.budget_stating_rows) and sft.trl_args.train_sampling_strategy=group_by_length")
        return self


class GRPOStage(_TrainerStage):
    """Budget-guided GRPO. Defaults suit a length objective: dr_grpo loss, truncated completions masked."""

    #: completion_headroom: the length check before loading (train/datasets.check_completion_length);
    #: prefill_*: which prompts get a forced budget (train/datasets.prefill_budgets)
    SBLITE_ONLY: ClassVar[frozenset[str]] = frozenset(
        {"trl_args", "completion_headroom", "prefill_fraction", "prefill_range"}
    )

    learning_rate: float = Field(1e-6, gt=0)
    num_generations: int = Field(8, description="completions sampled per prompt (the GRPO group)")
    max_completion_length: int = Field(1024, ge=8)
    temperature: float = Field(0.8, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    beta: float = Field(0.0, ge=0, description="KL coefficient; 0 skips the reference model")
    epsilon: float = Field(0.2, gt=0)
    epsilon_high: float | None = Field(None, gt=0, description="DAPO clip-higher; None = epsilon")
    num_iterations: int = Field(1, ge=1)
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = "dr_grpo"
    scale_rewards: Literal["group", "batch", "none"] = "group"
    mask_truncated_completions: bool = True
    log_completions: bool = True
    num_completions_to_print: int = Field(2, ge=0)
    completion_headroom: float = Field(
        1.25, ge=1.0, description="max_completion_length must be >= headroom × the data's p90 budget"
    )
    prefill_fraction: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of prompts whose budget is pre-filled (drawn from prefill_range): the budget reward "
        "then pays for obeying a forced budget, which `sblite generate --budget` relies on",
    )
    prefill_range: tuple[int, int] = Field((16, 256), description="pre-filled budgets: log-uniform in [lo, hi]")
    use_vllm: bool = False
    vllm_mode: Literal["server", "colocate"] = "colocate"
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, le=1)

    @model_validator(mode="after")
    def _prefill_range(self) -> GRPOStage:
        lo, hi = self.prefill_range
        if not 1 <= lo <= hi or (self.prefill_fraction > 0 and hi > self.max_completion_length):
            raise ValueError(
                f"grpo.prefill_range=[{lo}, {hi}]: need 1 <= lo <= hi <= grpo.max_completion_length="
                f"{self.max_completion_length}; e.g. grpo.prefill_range=[16,{min(256, self.max_completion_length)}]"
            )
        return self

    @field_validator("num_generations")
    @classmethod
    def _group_size(cls, v: int) -> int:
        if v < 2:
            raise ValueError(
                f"num_generations={v}: GRPO needs at least 2 completions per prompt to compare; set 2 or more"
            )
        return v


class RewardConfig(_Strict):
    """The SelfBudgeter reward constants (``../shared/docs/METHOD.md``, Phase 2).

    ``sC_min + r_b >= sW_max`` (accuracy dominance): a correct answer, even with the over-budget penalty,
    never scores below the best wrong answer.
    """

    r_f: float = Field(-1.0, description="reward when the <budget>/<solution> format fails")
    r_b: float = Field(-0.5, le=0, description="penalty for a budget above b_max")
    sC_min: float = 0.5
    sC_max: float = 1.0
    sW_min: float = -0.5
    sW_max: float = 0.0
    alpha_start: float = Field(6.0, gt=0)
    alpha_end: float = Field(0.1, gt=0)
    alpha_schedule: Literal["linear", "constant"] = Field(
        "linear", description="linear: alpha_start→alpha_end over training; constant: alpha_start throughout"
    )

    @model_validator(mode="after")
    def _consistent(self) -> RewardConfig:
        if self.sC_max < self.sC_min:
            raise ValueError(f"sC_max={self.sC_max} < sC_min={self.sC_min}; swap them")
        if self.sW_max < self.sW_min:
            raise ValueError(f"sW_max={self.sW_max} < sW_min={self.sW_min}; swap them")
        if self.sC_min + self.r_b < self.sW_max:
            raise ValueError(
                f"accuracy dominance fails: sC_min + r_b = {self.sC_min} + {self.r_b} = "
                f"{self.sC_min + self.r_b:g} < sW_max = {self.sW_max}; raise sC_min to at least "
                f"{self.sW_max - self.r_b:g}, or raise r_b to at least {self.sW_max - self.sC_min:g}, "
                f"or lower sW_max to at most {self.sC_min + self.r_b:g}"
            )
        if self.alpha_schedule == "linear" and self.alpha_end > self.alpha_start:
            raise ValueError(
                f"alpha_end={self.alpha_end} > alpha_start={self.alpha_start}: the tolerance must shrink; "
                "swap them or use alpha_schedule: constant"
            )
        return self


class RewardSection(RewardConfig):
    """The recipe's ``reward`` section: which registry rewards to use, their weights, and the constants."""

    funcs: list[str] = Field(default_factory=lambda: ["selfbudgeter"], min_length=1)
    weights: list[float] | None = None

    @field_validator("funcs")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        from sblite.rewards import REWARDS  # light: no torch; imported here to keep config first in the graph

        return _all_known(v, REWARDS, "reward")

    @model_validator(mode="after")
    def _weights_match(self) -> RewardSection:
        if self.weights is not None and len(self.weights) != len(self.funcs):
            raise ValueError(
                f"reward.weights has {len(self.weights)} entries for {len(self.funcs)} funcs; give one per func"
            )
        return self


class EvalSection(_Strict):
    """``sblite eval``'s defaults for this recipe's runs (``sblite eval --model RUN_DIR`` or ``--recipe``)."""

    dataset: str = Field("gsm8k-test", description="as `sblite prepare --dataset`, or a prepared DIR")
    limit: int | None = Field(None, ge=1, description="first N valid questions; null: all")
    mode: Literal["self", "prefill", "none"] = "self"
    budgets: list[int] = Field(default_factory=lambda: [64, 128, 256, 512], min_length=1)
    n_samples: int = Field(1, ge=1)
    temperature: float = Field(0.0, ge=0)
    max_new_tokens: int = Field(512, ge=1)
    batch_size: int = Field(16, ge=1)
    budget_guard: Literal["off", "cap", "band"] = Field(
        "off", description="enforce each budget while decoding (sblite/generate/guard.py); off: the model alone"
    )

    @field_validator("budgets")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(b < 1 for b in v):
            raise ValueError(f"budgets {v}: every pre-filled budget must be a positive whole number")
        return v


class ExportSection(_Strict):
    """``sblite export``'s defaults for this recipe's runs (``sblite export RUN_DIR`` or ``--recipe``)."""

    quant: str = Field("f16", description="f32/f16/bf16/q8_0 (native) or a llama.cpp quant such as q4_k_m")
    merge_dtype: Literal["auto", "bf16", "f16", "f32"] = Field("auto", description="auto: the base model's")
    ollama: bool = Field(False, description="also write an Ollama Modelfile")
    verify: bool = Field(True, description="check the GGUF with transformers and llama.cpp")

    @field_validator("quant")
    @classmethod
    def _known_quant(cls, v: str) -> str:
        from sblite.export.writer import ALL_QUANTS  # light: the writer imports numpy/gguf only when writing

        if v not in ALL_QUANTS:
            raise ValueError(f"unknown quant {v!r}; choose one of {', '.join(ALL_QUANTS)}")
        return v


class Recipe(_Strict):
    """A whole training recipe. ``stages`` runs in order; each stage reads its own section."""

    name: str
    description: str = ""
    stages: list[Literal["sft", "grpo"]] = Field(default_factory=lambda: ["sft", "grpo"], min_length=1)
    output_dir: str = "runs/{name}"
    model: ModelSection
    lora: LoraSection = Field(default_factory=LoraSection)
    data: DataSection = Field(default_factory=DataSection)
    sft: SFTStage = Field(default_factory=SFTStage)
    grpo: GRPOStage = Field(default_factory=GRPOStage)
    reward: RewardSection = Field(default_factory=RewardSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    export: ExportSection = Field(default_factory=ExportSection)

    @model_validator(mode="after")
    def _cross_checks(self) -> Recipe:
        if "grpo" in self.stages:
            g = self.grpo
            batch = g.per_device_train_batch_size * g.gradient_accumulation_steps
            if batch % g.num_generations:
                raise ValueError(
                    f"grpo.per_device_train_batch_size × grpo.gradient_accumulation_steps = {batch} is not "
                    f"divisible by grpo.num_generations = {g.num_generations}; make it a multiple (e.g. "
                    f"grpo.per_device_train_batch_size={g.num_generations})"
                )
            need = self.data.max_prompt_length + self.grpo.max_completion_length
            if need > self.model.max_seq_length:
                raise ValueError(
                    f"data.max_prompt_length + grpo.max_completion_length = {need} exceeds "
                    f"model.max_seq_length = {self.model.max_seq_length}; raise max_seq_length or lower one"
                )
        if "sft" in self.stages and self.data.stating_questions and not self.sft.budget_stating_rows:
            raise ValueError(
                f"data.stating_questions = {self.data.stating_questions} adds rows that train only as budget-stating "
                "rows, but sft.budget_stating_rows is 0; set it (e.g. 2) or drop data.stating_questions"
            )
        if "sft" in self.stages and self.sft.max_length > self.model.max_seq_length:
            raise ValueError(
                f"sft.max_length = {self.sft.max_length} exceeds model.max_seq_length = "
                f"{self.model.max_seq_length}; lower sft.max_length"
            )
        if (
            self.model.fast_inference
            and self.model.max_lora_rank is not None
            and self.lora.r > self.model.max_lora_rank
        ):
            raise ValueError(
                f"lora.r = {self.lora.r} exceeds model.max_lora_rank = {self.model.max_lora_rank} "
                "(vLLM rollouts cannot hold a larger adapter); raise max_lora_rank"
            )
        return self

    @property
    def resolved_output_dir(self) -> str:
        return self.output_dir.format(name=self.name)

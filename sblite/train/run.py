"""``run_training(recipe)``: budget SFT then budget-guided GRPO into one run directory; the only place TRL
trainers are built.

    sblite train --recipe tiny-cpu --data DIR --out runs/tiny

The run directory's layout is ``sblite.rundir.RunDir``; what each stage trains on is ``train/datasets.py``;
each stage's TRL config comes from its recipe section through ``train/trl_args.py``. SFT trains on the
prepared ``<budget>N</budget><solution>…`` targets with completion-only loss in the model's chat template.
GRPO starts from the SFT adapter and is rewarded by ``sblite.rewards`` (the α schedule reads
``trainer_state``, so it resumes where it stopped). The backend (Unsloth or transformers + PEFT) is chosen
once in ``sblite.backends``; nothing here branches on it. It is built before anything imports transformers,
TRL, PEFT or datasets (``import unsloth`` must come first to patch them), and it frees each stage's model
(and a vLLM engine the load started) before the next stage loads. SFT never needs ``model.fast_inference``'s
engine, so its load goes without one: two engines in one process fail vLLM's free-memory check.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sblite.config import Recipe
from sblite.data.prepared import PreparedData, PreparedDataError, check_renderings, load_prepared
from sblite.provenance import git_commit, package_versions
from sblite.rundir import RunDir
from sblite.train import TrainingError, ZeroSignalStop
from sblite.train.datasets import (
    build_grpo_dataset,
    build_sft_dataset,
    check_completion_length,
    keep_columns,
    undrawn_questions,
)
from sblite.train.trl_args import shared_kwargs, trl_config


def _last_checkpoint(output_dir: Path) -> str | None:
    """The newest *complete* checkpoint. A run killed while saving leaves ``checkpoint-N`` without its
    ``trainer_state.json`` (written last); resuming from it would fail, so it is passed over."""
    if not output_dir.is_dir():
        return None
    steps = sorted(
        (int(p.name.rsplit("-", 1)[1]), p)
        for p in output_dir.glob("checkpoint-*")
        if p.is_dir() and p.name.rsplit("-", 1)[1].isdigit()
    )
    return next((str(p) for _, p in reversed(steps) if (p / "trainer_state.json").is_file()), None)


def _prune_metrics(run: RunDir, stage: str, checkpoint: str | None) -> None:
    """On resume, drop metrics lines the killed run logged after its last checkpoint (they are re-logged)."""
    path = run.metrics_file
    if not path.is_file():
        return
    step = int(checkpoint.rsplit("-", 1)[1]) if checkpoint else 0
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by the kill
        if row.get("stage") != stage or row.get("step", 0) <= step:
            keep.append(line)
    path.write_text("".join(x + "\n" for x in keep), encoding="utf-8")


# ---------------------------------------------------------------------------------------------- stages


def write_rejects(run: RunDir, stage: str, rejects: list[dict[str, Any]]) -> Path:
    """Replace ``stage``'s lines in ``RUN_DIR/rejects.jsonl`` (a resumed run rewrites the same ones)."""
    path = run.rejects_file
    keep = []
    if path.is_file():
        keep = [ln for ln in path.read_text(encoding="utf-8").splitlines() if json.loads(ln).get("stage") != stage]
    lines = keep + [json.dumps({"stage": stage, **r}) for r in rejects]
    path.write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")
    return path


@dataclass
class StageResult:
    stage: str
    adapter_dir: str
    global_step: int
    seconds: float
    resumed_from: str | None = None
    skipped: bool = False
    notes: dict[str, Any] = field(default_factory=dict)


def is_main_process() -> bool:
    """Rank 0 (or a single process): the one that prints and writes run files."""
    return int(os.environ.get("RANK", "0")) == 0


def _quiet(trainer) -> None:
    """sblite prints its own progress and log lines: drop transformers' printer and tqdm bar."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def _save_adapter(trainer, tokenizer, out: Path) -> None:
    trainer.save_model(str(out))
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(str(out))


def _args(config_cls, section, backend, cfg: Recipe, run: RunDir, stage: str, console, *, strict: bool,
          extra: dict[str, Any] | None = None):
    """The stage's TRL config: its recipe section (``trl_args.trl_config``) + the backend's device settings."""
    return trl_config(
        config_cls,
        section,
        output_dir=run.checkpoints(stage),
        device=backend.trainer_kwargs(cfg.model),
        extra={**shared_kwargs(cfg), **(extra or {})},
        strict=strict,
        warn=console.print if is_main_process() else (lambda *_: None),
    )


def run_sft(
    cfg: Recipe, backend, data: PreparedData, run: RunDir, console, *, resume: bool, strict: bool = False
) -> StageResult:
    import time

    from trl import SFTConfig


    out = run.adapter("sft")
    if resume and run.finished("sft"):
        console.print(f"[green]sft already finished[/] ({out}); skipping")
        return StageResult("sft", str(out), -1, 0.0, skipped=True)
    checkpoint = _last_checkpoint(run.checkpoints("sft")) if resume else None
    if resume and is_main_process():
        _prune_metrics(run, "sft", checkpoint)
    # no in-process vLLM engine for SFT: it only generates in GRPO, which loads its own
    no_engine = cfg.model.model_copy(update={"fast_inference": False})
    model, tokenizer = backend.load(no_engine, cfg.lora, adapter=cfg.model.adapter, seed=cfg.sft.seed)
    dataset = build_sft_dataset(data.sft, cfg, tokenizer)
    undrawn = undrawn_questions(data.sft) if cfg.sft.budget_reading_samples else 0
    if undrawn:
        console.print(f"sft.budget_reading_samples: {undrawn} questions are labelled at one length only, so none of "
                      "their budget-reading rows are drawn (nothing to read between)")
    args = _args(SFTConfig, cfg.sft, backend, cfg, run, "sft", console, strict=strict, extra=keep_columns(dataset, cfg.sft.trl_args))
    trainer = _sft_trainer(model, tokenizer, dataset, args, "sft", run, console, pack=_pack(cfg, backend))
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=checkpoint)
    steps, notes = trainer.state.global_step, {"examples": len(dataset)}
    if undrawn:
        notes["undrawn_questions"] = undrawn  # no range to draw reading budgets in: budget_reading_draws
    reading = build_sft_dataset(data.sft, cfg, tokenizer, reading_phase=True) if cfg.sft.budget_reading_epochs else None
    if reading is not None:
        trainer = _sft_reading_phase(trainer.model, tokenizer, reading, cfg, backend, run, console, strict=strict)
        steps += trainer.state.global_step
        notes |= {"reading_examples": len(reading), "reading_steps": trainer.state.global_step}
    _save_adapter(trainer, tokenizer, out)
    return StageResult("sft", str(out), steps, time.perf_counter() - t0, checkpoint, notes=notes)


def _pack(cfg: Recipe, backend) -> bool:
    """``sft.pack_shared_prompts``, refused on a backend whose attention kernels ignore a 4D mask."""
    if cfg.sft.pack_shared_prompts and backend.name == "unsloth":
        raise TrainingError("sft.pack_shared_prompts needs transformers' sdpa attention, which the unsloth "
                            "backend replaces with its own kernels; set model.backend=hf or sft.pack_shared_prompts=false")
    return cfg.sft.pack_shared_prompts


def _sft_reading_phase(model, tokenizer, dataset, cfg: Recipe, backend, run: RunDir, console, *, strict: bool):
    """``sft.budget_reading_epochs``: the budget-reading rows alone, after the full rows, on the same adapter
    (the recipe's optimizer settings, a schedule of their own). Checkpoints go to ``checkpoints/sft/reading``;
    a resumed run redoes this short phase from the end of the full rows."""
    from trl import SFTConfig

    console.print(f"sft: budget-reading phase, {len(dataset)} rows × {cfg.sft.budget_reading_epochs:g} epochs")
    args = _args(SFTConfig, cfg.sft, backend, cfg, run, "sft", console, strict=strict,
                 extra={"num_train_epochs": cfg.sft.budget_reading_epochs, "max_steps": -1,
                        "output_dir": str(run.checkpoints("sft") / "reading"), **keep_columns(dataset, cfg.sft.trl_args)})  # fmt: skip
    trainer = _sft_trainer(model, tokenizer, dataset, args, "sft-reading", run, console, pack=_pack(cfg, backend))
    trainer.train()
    return trainer


def _sft_trainer(model, tokenizer, dataset, args, label: str, run: RunDir, console, *, pack: bool = False):
    """A TRL ``SFTTrainer`` with sblite's callbacks (metrics rows tagged ``label``) and TRL's own printing off;
    ``pack``: on prefix-shared packed batches (``sft.pack_shared_prompts``, train/packing.py)."""
    from functools import partial

    from trl import SFTTrainer

    from sblite.train.callbacks import make_callbacks
    from sblite.train.packing import packed_sft_trainer
    from sblite.train.weighted import LOSS_WEIGHT_COLUMN, weighted_sft_trainer

    # sft.budget_tag_weight: a loss that reads the per-token weights (train/weighted.py)
    build = weighted_sft_trainer if LOSS_WEIGHT_COLUMN in dataset.column_names else SFTTrainer
    if pack:
        build = partial(packed_sft_trainer, build)
    trainer = build(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=make_callbacks(label, run.metrics_file, console, strict=False),
    )
    _quiet(trainer)
    return trainer


def grpo_extra(cfg: Recipe) -> dict[str, Any]:
    """What GRPO's TRL config takes from outside the ``grpo:`` section: the reward weights, and the reward
    columns (answer, b_max, level) that TRL must not strip from the dataset."""
    return {"reward_weights": cfg.reward.weights, "remove_unused_columns": False}


def run_grpo(
    cfg: Recipe, backend, data: PreparedData, run: RunDir, console, *, resume: bool, strict: bool
) -> StageResult:
    import time

    from trl import GRPOConfig, GRPOTrainer

    from sblite.rewards import build_reward_funcs
    from sblite.train.callbacks import (
        ZERO_SIGNAL_THRESHOLD,
        RewardMetricsCallback,
        ZeroSignalGuard,
        make_callbacks,
    )

    out = run.adapter("grpo")
    length_stats = check_completion_length(data.grpo, cfg)
    checkpoint = _last_checkpoint(run.checkpoints("grpo")) if resume else None
    if resume and is_main_process():
        _prune_metrics(run, "grpo", checkpoint)
    start = cfg.model.adapter or (str(run.adapter("sft")) if run.finished("sft") else None)
    if start is None:
        console.print(
            "[yellow]GRPO starts from the base model (no SFT adapter): expect format failures to dominate "
            "the reward until the model finds the <budget> format[/]"
        )
    model, tokenizer = backend.load(cfg.model, cfg.lora, adapter=start, seed=cfg.grpo.seed)
    dataset, rejects = build_grpo_dataset(data.grpo, cfg, tokenizer)
    if rejects and is_main_process():
        write_rejects(run, "grpo", rejects)
        console.print(
            f"[yellow]{len(rejects)} of {len(data.grpo)} GRPO prompts are over data.max_prompt_length="
            f"{cfg.data.max_prompt_length} tokens and are left out[/] (ids and reasons: {run.rejects_file})"
        )
    g = cfg.grpo
    args = _args(GRPOConfig, g, backend, cfg, run, "grpo", console, strict=strict, extra=grpo_extra(cfg))
    callbacks = make_callbacks("grpo", run.metrics_file, console, strict=strict)
    reward_funcs = build_reward_funcs(cfg.reward, tokenizer, max_completion_length=g.max_completion_length)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    # reward components (format rate, accuracy, PreB, budget, length) reach the logs on any TRL version
    RewardMetricsCallback.attach(trainer, reward_funcs)
    _quiet(trainer)
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=checkpoint)
    _save_adapter(trainer, tokenizer, out)
    guard = next(cb for cb in callbacks if isinstance(cb, ZeroSignalGuard))
    result = StageResult(
        "grpo",
        str(out),
        trainer.state.global_step,
        time.perf_counter() - t0,
        checkpoint,
        notes={
            "prompts": len(dataset),
            "rejected_long_prompts": len(rejects),
            "length_check": length_stats,
            "zero_signal": sorted(guard.fired),
        },
    )
    if guard.stopped:
        raise ZeroSignalStop(
            f"--strict: GRPO stopped at step {trainer.state.global_step}: {', '.join(sorted(guard.fired))} stayed "
            f"≥ {ZERO_SIGNAL_THRESHOLD}; the adapter so far is in {out}"
        )
    return result


# ---------------------------------------------------------------------------------------------- run


def provenance(cfg: Recipe, backend, choice, data: PreparedData) -> dict[str, Any]:
    import platform

    versions = package_versions(
        ("sblite", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "unsloth")
    )
    return {
        "recipe": cfg.name,
        "backend": choice.name,
        "backend_reason": choice.reason,
        "device": backend.device_name(),
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "python": platform.python_version(),
        "versions": versions,
        "data": {
            "path": str(data.path),
            "report_sha256": data.report_sha256,
            "sft_rows": len(data.sft),
            "grpo_rows": len(data.grpo),
        },
        "reward": cfg.reward.model_dump(mode="json"),
        "git_commit": git_commit(),
    }


def prepare_run_dir(cfg: Recipe, *, resume: bool) -> RunDir:
    """Create the run directory; refuse to train a stage over a finished or started one without --resume."""
    run = RunDir(cfg.resolved_output_dir)
    if not resume:
        for stage in cfg.stages:
            taken = [p for p in (run.adapter(stage), run.checkpoints(stage)) if p.exists()]
            if taken:
                raise TrainingError(
                    f"{taken[0]} already exists; add --resume to continue that run, or choose a new --out"
                )
    run.root.mkdir(parents=True, exist_ok=True)
    return run


def run_training(
    cfg: Recipe,
    *,
    resume: bool = False,
    strict: bool = False,
    console=None,
    on_stage: Callable[[StageResult], None] | None = None,
) -> list[StageResult]:
    """Run the recipe's stages into its run directory. Raises ``TrainingError`` with a fix on bad input."""
    from rich.console import Console

    from sblite.backends import get_backend
    from sblite.logs import quiet_libraries

    console = console or Console()
    if not cfg.data.path:
        raise TrainingError("no data: pass --data DIR (a `sblite prepare` output) or set data.path")
    try:
        data = load_prepared(cfg.data.path)
        check_renderings(data, cfg.data.renderings, cfg.data.self_renderings, cfg.data.stating_questions)
    except PreparedDataError as err:
        raise TrainingError(str(err)) from None
    if "grpo" in cfg.stages:
        check_completion_length(data.grpo, cfg)  # fail before any model is loaded
    run = prepare_run_dir(cfg, resume=resume)
    # the backend first: the unsloth one imports unsloth, which must precede transformers/datasets/trl/peft
    backend, choice = get_backend(cfg.model.backend)
    quiet_libraries()
    if "grpo" in cfg.stages:
        from sblite.doctor import math_verify_problem

        problem = math_verify_problem()  # the reward's answer check needs it
        if problem and strict:
            raise TrainingError(f"--strict: {problem}")
        if problem and is_main_process():
            console.print(f"[bold red]WARNING[/] {problem}")
    if is_main_process():
        console.print(f"[bold]backend:[/] {choice.name} ({choice.reason}); run dir: {run}")
        for note in backend.recipe_notes(cfg):
            console.print(f"[yellow]{note}[/]")
        run.write_recipe(cfg)
        run.write_provenance(provenance(cfg, backend, choice, data))
    results = []
    for stage in cfg.stages:
        stage_fn = run_sft if stage == "sft" else run_grpo
        try:
            result = stage_fn(cfg, backend, data, run, console, resume=resume, strict=strict)
        finally:
            backend.release()  # the stage's model and trainer are out of scope now: free them
        results.append(result)
        if on_stage:
            on_stage(result)
    if is_main_process():
        prov = run.provenance()
        prov["stages"] = [dataclasses.asdict(r) for r in results]
        run.write_provenance(prov)
    return results

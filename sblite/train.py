"""Budget SFT and budget-guided GRPO: the only place TRL trainers are built.

    sblite train --recipe tiny-cpu --data DIR --out runs/tiny

``run_training(recipe)`` runs the recipe's stages in order into one run directory:

    RUN_DIR/recipe.resolved.yaml   the validated recipe, overrides applied
    RUN_DIR/provenance.json        versions, backend, device, data report hash, reward config, git commit
    RUN_DIR/metrics.jsonl          one line per logging step, both stages
    RUN_DIR/sft/, RUN_DIR/grpo/    final LoRA adapters with tokenizer and chat template
    RUN_DIR/checkpoints/<stage>/   trainer checkpoints (optimizer, scheduler, RNG) for --resume

SFT trains on the prepared ``<budget>N</budget><solution>…`` targets with completion-only loss in the
model's chat template. GRPO starts from the SFT adapter and is rewarded by ``sblite.rewards`` (the α
schedule reads ``trainer_state``, so it resumes where it stopped). The backend (Unsloth or transformers +
PEFT) is chosen once in ``sblite.backends``; nothing below branches on it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sblite import protocol
from sblite.config import Recipe, RecipeError, dump_recipe

#: tokens a completion spends before its solution: "<budget>1234</budget>" and slack for the tag split
BUDGET_TAG_TOKENS = 16


class TrainingError(RuntimeError):
    """A run that cannot start or had to stop; the message says what to change."""


class ZeroSignalStop(TrainingError):
    """``--strict`` stopped GRPO because its batches carried no learning signal."""


# ---------------------------------------------------------------------------------------------- data


@dataclass
class PreparedData:
    """A ``sblite prepare`` output directory, read into memory."""

    path: Path
    sft: list[dict[str, Any]]
    grpo: list[dict[str, Any]]
    report_sha256: str | None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise TrainingError(
                    f"{path}:{lineno}: not JSON ({err.msg}); re-run `sblite prepare`"
                ) from None
            if "b_max" in row:
                try:
                    row["b_max"] = protocol.parse_b_max(row["b_max"])
                except ValueError as err:
                    raise TrainingError(
                        f"{path}:{lineno}: field b_max: {err}; fix the line or re-run `sblite prepare`"
                    ) from None
            rows.append(row)
    return rows


def load_prepared(path: str | Path) -> PreparedData:
    """Read ``sft.jsonl``/``grpo.jsonl`` (and hash ``report.json``) from a prepared directory.

    ``b_max`` is read by ``protocol.parse_b_max`` (a float, ``inf`` for no cap); a value that is not a budget
    stops the load with its file and line."""
    root = Path(path)
    if not root.is_dir():
        raise TrainingError(f"--data {root}: not a directory; run `sblite prepare --out {root}` first")
    files = {name: root / f"{name}.jsonl" for name in ("sft", "grpo")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise TrainingError(f"--data {root}: missing {', '.join(missing)}; is it a `sblite prepare` output?")
    report = root / "report.json"
    sha = hashlib.sha256(report.read_bytes()).hexdigest() if report.is_file() else None
    return PreparedData(root, _read_jsonl(files["sft"]), _read_jsonl(files["grpo"]), sha)


def _prompt_options(cfg: Recipe) -> dict[str, Any]:
    return {"instruction_in_user": cfg.model.instruction_in_user}


def build_sft_dataset(rows: list[dict[str, Any]], cfg: Recipe, tokenizer):
    """Tokenized SFT examples (``input_ids`` + ``completion_mask``, which TRL turns into completion-only
    labels): ``protocol.encode_training_example`` keeps the pre-fill boundary where inference has it."""
    from datasets import Dataset

    if not rows:
        raise TrainingError("the prepared sft.jsonl is empty: no question had a correct labelled response")
    examples = []
    for r in rows:
        try:
            ids, mask = protocol.encode_training_example(
                tokenizer, r["question"], r["completion"], **_prompt_options(cfg)
            )
        except ValueError as err:
            raise TrainingError(f"SFT example {r.get('id')!r}: {err}") from None
        examples.append({"input_ids": ids, "completion_mask": mask})
    return Dataset.from_list(examples)


def check_completion_length(rows: list[dict[str, Any]], cfg: Recipe) -> dict[str, float]:
    """Refuse a GRPO recipe whose ``max_completion_length`` would truncate most budgeted completions.

    A completion needs its budget plus the tag overhead; ``completion_headroom`` leaves room for answers
    that run over. Returns the numbers the check saw (they go to provenance).
    """
    budgets = sorted(b for b in (protocol.parse_b_max(r.get("b_max")) for r in rows) if math.isfinite(b))
    limit = cfg.grpo.max_completion_length
    if not budgets:
        return {"finite_budgets": 0, "max_completion_length": limit}
    need = [b * cfg.grpo.completion_headroom + BUDGET_TAG_TOKENS for b in budgets]
    truncated = sum(n > limit for n in need) / len(need)
    p90 = budgets[min(len(budgets) - 1, int(0.9 * len(budgets)))]
    stats = {
        "finite_budgets": len(budgets),
        "max_budget": budgets[-1],
        "p90_budget": p90,
        "max_completion_length": limit,
        "share_truncated": truncated,
    }
    if truncated > 0.5:
        suggest = math.ceil(p90 * cfg.grpo.completion_headroom + BUDGET_TAG_TOKENS)
        raise TrainingError(
            f"grpo.max_completion_length={limit} would truncate {truncated:.0%} of completions (budgets up to "
            f"{budgets[-1]:.0f}, p90 {p90:.0f}, headroom ×{cfg.grpo.completion_headroom}); set "
            f"grpo.max_completion_length={suggest} or prepare shorter data"
        )
    return stats


def prefill_budgets(ids: list[str], cfg: Recipe) -> dict[str, int]:
    """The pre-filled budget of each GRPO question that gets one (``grpo.prefill_fraction`` of them).

    Seeded by ``grpo.seed`` and the question id, so a resumed run sees the same prompts; budgets are
    log-uniform in ``grpo.prefill_range`` so short and long forced budgets are equally represented.

    >>> from sblite.config import load_recipe
    >>> cfg = load_recipe("tiny-cpu", ["grpo.prefill_fraction=1.0", "grpo.prefill_range=[16,64]"])
    >>> b = prefill_budgets(["a", "b", "c"], cfg)
    >>> sorted(b) == ["a", "b", "c"] and all(16 <= v <= 64 for v in b.values())
    True
    """
    g = cfg.grpo
    lo, hi = g.prefill_range
    out = {}
    for qid in ids:
        rng = random.Random(f"{g.seed}:{qid}")
        if rng.random() < g.prefill_fraction:
            out[qid] = round(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    return out


def trl_prompt_text(tokenizer, prompt: str, want: list[int] | None = None) -> str:
    """``prompt`` as the text to hand TRL, which tokenizes a text prompt as ``tokenizer(text=...)``: the
    result must give exactly ``protocol.encode_prompt``'s ids. A tokenizer that adds its BOS to a template
    that already opens with it gets the template's copy removed; any other difference is an error."""
    want = protocol.encode_prompt(tokenizer, prompt) if want is None else want
    candidates = [prompt]
    bos = getattr(tokenizer, "bos_token", None)
    if bos and prompt.startswith(bos):
        candidates.append(prompt[len(bos) :])
    for text in candidates:
        if list(tokenizer(text=[text])["input_ids"][0]) == want:
            return text
    got = list(tokenizer(text=[prompt])["input_ids"][0])
    at = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), min(len(got), len(want)))
    raise TrainingError(
        f"the tokenizer encodes the GRPO prompt differently from sblite's pre-fill boundary at token {at} "
        f"({tokenizer.decode(got[at : at + 4])!r} vs {tokenizer.decode(want[at : at + 4])!r}): the model would "
        "be trained on one context and served another; report this tokenizer"
    )


def build_grpo_dataset(
    rows: list[dict[str, Any]], cfg: Recipe, tokenizer
) -> tuple[Any, list[dict[str, Any]]]:
    """``(dataset, rejects)``: text prompts + reward columns (``answer``, ``b_max``, ``level``); a prompt over
    ``data.max_prompt_length`` tokens is a reject (``{"id", "reason", ...}``), never silently dropped.

    Prompts are rendered by sblite (``protocol.render_prompt``) and handed to TRL as text: with
    ``grpo.prefill_fraction`` a share of them end inside an open assistant turn in ``<budget>N</budget><solution>``,
    which TRL's generation continues (a conversational prompt with a trailing assistant message would be rendered
    as a closed turn). The rewards read N back from the prompt, so only obeying it pays.
    """
    from datasets import Dataset

    forced = prefill_budgets([str(r.get("id", i)) for i, r in enumerate(rows)], cfg)
    kept, rejects = [], []
    limit = cfg.data.max_prompt_length
    for i, r in enumerate(rows):
        qid = str(r.get("id", i))
        budget = forced.get(qid)
        text = protocol.render_prompt(tokenizer, r["question"], budget=budget, **_prompt_options(cfg))
        ids = protocol.encode_prompt(tokenizer, text)
        n = len(ids)
        if n > limit:
            rejects.append(
                {
                    "id": qid,
                    "stage": "grpo",
                    "reason": f"prompt is {n} tokens > data.max_prompt_length={limit}",
                    "prompt_tokens": n,
                }
            )
            continue
        b = protocol.parse_b_max(r.get("b_max"))
        kept.append(
            {
                "prompt": trl_prompt_text(tokenizer, text, ids),
                "answer": str(r["answer"]),
                "b_max": int(b) if math.isfinite(b) else None,
                "level": r.get("level"),
            }
        )
    if not kept:
        raise TrainingError(
            f"every GRPO prompt is longer than data.max_prompt_length={limit} tokens; raise it"
        )
    return Dataset.from_list(kept), rejects


# ---------------------------------------------------------------------------------------------- configs


def _trl_config(
    config_cls,
    stage_cfg,
    backend,
    cfg: Recipe,
    output_dir: Path,
    specific: dict[str, Any],
    *,
    strict: bool = False,
    console=None,
):
    """Build a TRL config from the recipe stage; version differences are mapped here, unknown trl_args fail.

    A setting that the installed TRL has no field for is never dropped quietly: it is listed in one loud
    warning naming the TRL version (``--strict`` makes it an error)."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    kwargs: dict[str, Any] = {
        "output_dir": str(output_dir),
        "learning_rate": stage_cfg.learning_rate,
        "max_steps": stage_cfg.max_steps,
        "num_train_epochs": stage_cfg.num_train_epochs,
        "per_device_train_batch_size": stage_cfg.per_device_train_batch_size,
        "gradient_accumulation_steps": stage_cfg.gradient_accumulation_steps,
        "lr_scheduler_type": stage_cfg.lr_scheduler_type,
        "weight_decay": stage_cfg.weight_decay,
        "max_grad_norm": stage_cfg.max_grad_norm,
        "optim": stage_cfg.optim,
        "logging_steps": stage_cfg.logging_steps,
        "save_strategy": "steps",
        "save_steps": stage_cfg.save_steps,
        "save_total_limit": stage_cfg.save_total_limit,
        "seed": stage_cfg.seed,
        "data_seed": stage_cfg.seed,
        "report_to": available_reporters(stage_cfg.report_to) or "none",
        "disable_tqdm": True,
        "deepspeed": stage_cfg.deepspeed,
        "fsdp": stage_cfg.fsdp or "",
        **backend.trainer_kwargs(cfg.model),
        **specific,
    }
    if "warmup_ratio" in names:
        kwargs["warmup_ratio"] = stage_cfg.warmup_ratio
    else:  # transformers >= 5: a float warmup_steps < 1 is a ratio
        kwargs["warmup_steps"] = stage_cfg.warmup_ratio
    unknown = sorted(set(stage_cfg.trl_args) - names)
    if unknown:
        raise RecipeError(
            f"trl_args {', '.join(unknown)} are not fields of {config_cls.__name__} in this TRL version; "
            "remove them or upgrade trl"
        )
    kwargs.update(stage_cfg.trl_args)
    dropped = sorted(k for k in kwargs if k not in names)
    if dropped:
        from sblite.doctor import package_versions

        trl_version = package_versions(("trl",)).get("trl")
        msg = (
            f"{config_cls.__name__} of trl {trl_version} has no field for {', '.join(dropped)}: "
            "these recipe settings cannot be honoured"
        )
        if strict:
            raise TrainingError(f"--strict: {msg}; install the trl version in constraints/ or drop them")
        if is_main_process():
            (console.print if console is not None else print)(f"[bold yellow]WARNING[/] {msg}; they are ignored")
    return config_cls(**{k: v for k, v in kwargs.items() if k in names})


_REPORTER_PACKAGES = {
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "trackio": "trackio",
    "mlflow": "mlflow",
}


def available_reporters(requested: list[str]) -> list[str]:
    """``report_to`` entries whose package is installed; the others are dropped with a warning, not a crash."""
    import importlib.util
    import warnings

    keep = []
    for name in requested:
        pkg = _REPORTER_PACKAGES.get(name, name)
        if importlib.util.find_spec(pkg) is None:
            warnings.warn(f"report_to {name!r}: package {pkg!r} is not installed; skipping it", stacklevel=2)
        else:
            keep.append(name)
    return keep


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


def _prune_metrics(run_dir: Path, stage: str, checkpoint: str | None) -> None:
    """On resume, drop metrics lines the killed run logged after its last checkpoint (they are re-logged)."""
    path = run_dir / "metrics.jsonl"
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


def write_rejects(run_dir: Path, stage: str, rejects: list[dict[str, Any]]) -> Path:
    """Replace ``stage``'s lines in ``RUN_DIR/rejects.jsonl`` (a resumed run rewrites the same ones)."""
    path = run_dir / "rejects.jsonl"
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


def run_sft(
    cfg: Recipe, backend, data: PreparedData, run_dir: Path, console, *, resume: bool, strict: bool = False
) -> StageResult:
    import time

    from trl import SFTConfig, SFTTrainer

    from sblite.callbacks import make_callbacks

    out, ckpt_dir = run_dir / "sft", run_dir / "checkpoints" / "sft"
    if resume and (out / "adapter_config.json").is_file():
        console.print(f"[green]sft already finished[/] ({out}); skipping")
        return StageResult("sft", str(out), -1, 0.0, skipped=True)
    checkpoint = _last_checkpoint(ckpt_dir) if resume else None
    if resume and is_main_process():
        _prune_metrics(run_dir, "sft", checkpoint)
    model, tokenizer = backend.load(cfg.model, cfg.lora, adapter=cfg.model.adapter, seed=cfg.sft.seed)
    dataset = build_sft_dataset(data.sft, cfg, tokenizer)
    args = _trl_config(
        SFTConfig,
        cfg.sft,
        backend,
        cfg,
        ckpt_dir,
        {
            "max_length": cfg.sft.max_length,
            "packing": cfg.sft.packing,
            "completion_only_loss": cfg.sft.completion_only_loss,
        },
        strict=strict,
        console=console,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=make_callbacks("sft", run_dir, console, strict=False),
    )
    _quiet(trainer)
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=checkpoint)
    _save_adapter(trainer, tokenizer, out)
    return StageResult(
        "sft",
        str(out),
        trainer.state.global_step,
        time.perf_counter() - t0,
        checkpoint,
        notes={"examples": len(dataset)},
    )


def run_grpo(
    cfg: Recipe, backend, data: PreparedData, run_dir: Path, console, *, resume: bool, strict: bool
) -> StageResult:
    import time

    from sblite.rewards import RewardMetricsCallback, build_reward_funcs

    backend.patch_trainers()
    from trl import GRPOConfig, GRPOTrainer

    out, ckpt_dir = run_dir / "grpo", run_dir / "checkpoints" / "grpo"
    length_stats = check_completion_length(data.grpo, cfg)
    checkpoint = _last_checkpoint(ckpt_dir) if resume else None
    if resume and is_main_process():
        _prune_metrics(run_dir, "grpo", checkpoint)
    start = cfg.model.adapter or (
        str(run_dir / "sft") if (run_dir / "sft" / "adapter_config.json").is_file() else None
    )
    if start is None:
        console.print(
            "[yellow]GRPO starts from the base model (no SFT adapter): expect format failures to dominate "
            "the reward until the model finds the <budget> format[/]"
        )
    model, tokenizer = backend.load(cfg.model, cfg.lora, adapter=start, seed=cfg.grpo.seed)
    dataset, rejects = build_grpo_dataset(data.grpo, cfg, tokenizer)
    if rejects and is_main_process():
        write_rejects(run_dir, "grpo", rejects)
        console.print(
            f"[yellow]{len(rejects)} of {len(data.grpo)} GRPO prompts are over data.max_prompt_length="
            f"{cfg.data.max_prompt_length} tokens and are left out[/] (ids and reasons: {run_dir / 'rejects.jsonl'})"
        )
    g = cfg.grpo
    specific = {
        "num_generations": g.num_generations,
        "max_completion_length": g.max_completion_length,
        "temperature": g.temperature,
        "top_p": g.top_p,
        "beta": g.beta,
        "epsilon": g.epsilon,
        "epsilon_high": g.epsilon_high if g.epsilon_high is not None else g.epsilon,
        "num_iterations": g.num_iterations,
        "loss_type": g.loss_type,
        "scale_rewards": g.scale_rewards,
        "mask_truncated_completions": g.mask_truncated_completions,
        "log_completions": g.log_completions,
        "num_completions_to_print": g.num_completions_to_print,
        "use_vllm": g.use_vllm,
        "vllm_mode": g.vllm_mode,
        "vllm_gpu_memory_utilization": g.vllm_gpu_memory_utilization,
        "reward_weights": cfg.reward.weights,
        "remove_unused_columns": False,
    }
    args = _trl_config(GRPOConfig, g, backend, cfg, ckpt_dir, specific, strict=strict, console=console)
    from sblite.callbacks import ZERO_SIGNAL_THRESHOLD, ZeroSignalGuard, make_callbacks

    callbacks = make_callbacks("grpo", run_dir, console, strict=strict)
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


def _git_commit() -> str | None:
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def provenance(cfg: Recipe, backend, choice, data: PreparedData) -> dict[str, Any]:
    import platform

    from sblite.doctor import package_versions

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
        "git_commit": _git_commit(),
    }


def prepare_run_dir(cfg: Recipe, *, resume: bool) -> Path:
    """Create the run directory; refuse to train a stage over a finished or started one without --resume."""
    run_dir = Path(cfg.resolved_output_dir)
    if not resume:
        for stage in cfg.stages:
            taken = [p for p in (run_dir / stage, run_dir / "checkpoints" / stage) if p.exists()]
            if taken:
                raise TrainingError(
                    f"{taken[0]} already exists; add --resume to continue that run, or choose a new --out"
                )
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


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
    quiet_libraries()
    if not cfg.data.path:
        raise TrainingError("no data: pass --data DIR (a `sblite prepare` output) or set data.path")
    data = load_prepared(cfg.data.path)
    if "grpo" in cfg.stages:
        check_completion_length(data.grpo, cfg)  # fail before any model is loaded
    run_dir = prepare_run_dir(cfg, resume=resume)
    backend, choice = get_backend(cfg.model.backend)
    if "grpo" in cfg.stages:
        from sblite.doctor import math_verify_problem

        problem = math_verify_problem()  # the reward's answer check needs it
        if problem and strict:
            raise TrainingError(f"--strict: {problem}")
        if problem and is_main_process():
            console.print(f"[bold red]WARNING[/] {problem}")
    if is_main_process():
        console.print(f"[bold]backend:[/] {choice.name} ({choice.reason}); run dir: {run_dir}")
        (run_dir / "recipe.resolved.yaml").write_text(dump_recipe(cfg), encoding="utf-8")
        (run_dir / "provenance.json").write_text(
            json.dumps(provenance(cfg, backend, choice, data), indent=2), encoding="utf-8"
        )
    results = []
    for stage in cfg.stages:
        if stage == "sft":
            result = run_sft(cfg, backend, data, run_dir, console, resume=resume, strict=strict)
        else:
            result = run_grpo(cfg, backend, data, run_dir, console, resume=resume, strict=strict)
        results.append(result)
        if on_stage:
            on_stage(result)
    if is_main_process():
        prov = json.loads((run_dir / "provenance.json").read_text(encoding="utf-8"))
        prov["stages"] = [dataclasses.asdict(r) for r in results]
        (run_dir / "provenance.json").write_text(json.dumps(prov, indent=2, default=str), encoding="utf-8")
    return results

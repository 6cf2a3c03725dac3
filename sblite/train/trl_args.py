"""A recipe stage section (``sft:`` / ``grpo:``) → its TRL config: the one place recipe fields meet TRL.

``trl_kwargs(section)`` takes every field of the section except the ones sblite consumes itself
(``section.SBLITE_ONLY``) under its own name, translates the few TRL spells differently, and adds the
settings sblite fixes for every run. ``trl_config`` checks them against the installed TRL's dataclass:
a setting that TRL has no field for is never dropped quietly — one warning names it and the TRL version,
and ``--strict`` makes it an error. Adding a TRL knob to a recipe is adding a field to the section class.

No trainer is built here; TRL is never imported (the caller passes the config class), so ``--dry-run`` can
show the exact keyword arguments without loading anything.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from sblite.config import RecipeError
from sblite.train import TrainingError

#: what sblite sets on every stage: its own log lines replace tqdm; checkpoints every ``save_steps``
FIXED: dict[str, Any] = {"save_strategy": "steps", "disable_tqdm": True}

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


def trl_kwargs(section, *, output_dir: str | Path, warmup_ratio_field: bool = True) -> dict[str, Any]:
    """The section's fields as TRL keyword arguments (before ``trl_args`` and device settings).

    ``warmup_ratio_field``: whether the target config has ``warmup_ratio`` (transformers >= 5 dropped it and
    reads a float ``warmup_steps`` < 1 as a ratio).

    >>> from sblite.config import GRPOStage
    >>> kw = trl_kwargs(GRPOStage(epsilon=0.2, epsilon_high=None, report_to=[]), output_dir="ckpt")
    >>> kw["epsilon_high"], kw["report_to"], kw["data_seed"] == kw["seed"], "prefill_fraction" in kw
    (0.2, 'none', True, False)
    """
    kwargs = {
        name: getattr(section, name) for name in type(section).model_fields if name not in section.SBLITE_ONLY
    }
    kwargs["output_dir"] = str(output_dir)
    kwargs["data_seed"] = section.seed
    kwargs["report_to"] = available_reporters(section.report_to) or "none"
    kwargs["fsdp"] = section.fsdp or ""
    if "epsilon_high" in kwargs and kwargs["epsilon_high"] is None:  # None in a recipe: the same as epsilon
        kwargs["epsilon_high"] = section.epsilon
    if not warmup_ratio_field:
        kwargs["warmup_steps"] = kwargs.pop("warmup_ratio")
    return {**kwargs, **FIXED}


def shared_kwargs(cfg) -> dict[str, Any]:
    """What every stage's TRL config takes from other recipe sections. ``gradient_checkpointing`` follows
    ``lora.use_gradient_checkpointing`` (``unsloth`` is on: Unsloth's trainers read the flag to keep its own
    offloaded checkpointing). TRL's configs default it to True: left unset, a recipe's ``false`` was not
    honoured, and each backward pass recomputed the forward (23% of a CPU SFT step's samples in py-spy).

    >>> from sblite.recipes import load_recipe
    >>> [shared_kwargs(load_recipe("tiny-cpu", [f"lora.use_gradient_checkpointing={v}"])) for v in ("false", "unsloth")]
    [{'gradient_checkpointing': False}, {'gradient_checkpointing': True}]
    """
    return {"gradient_checkpointing": bool(cfg.lora.use_gradient_checkpointing)}


def trl_config(
    config_cls,
    section,
    *,
    output_dir: str | Path,
    device: dict[str, Any],
    extra: dict[str, Any] | None = None,
    strict: bool = False,
    warn=print,
):
    """``config_cls(**kwargs)`` for a stage: the section's fields, ``device`` (the backend's precision and
    device arguments), ``extra`` (what the stage derives from other sections, e.g. ``reward_weights``), then
    the section's ``trl_args`` verbatim. ``warn`` prints the one line about settings this TRL cannot honour."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    kwargs = trl_kwargs(section, output_dir=output_dir, warmup_ratio_field="warmup_ratio" in names)
    kwargs.update(device)
    kwargs.update(extra or {})
    unknown = sorted(set(section.trl_args) - names)
    if unknown:
        raise RecipeError(
            f"trl_args {', '.join(unknown)} are not fields of {config_cls.__name__} in this TRL version; "
            "remove them or upgrade trl"
        )
    kwargs.update(section.trl_args)
    dropped = sorted(k for k in kwargs if k not in names)
    if dropped:
        from sblite.provenance import package_versions

        trl_version = package_versions(("trl",)).get("trl")
        msg = (
            f"{config_cls.__name__} of trl {trl_version} has no field for {', '.join(dropped)}: "
            "these recipe settings cannot be honoured"
        )
        if strict:
            raise TrainingError(f"--strict: {msg}; install the trl version in constraints/ or drop them")
        warn(f"[bold yellow]WARNING[/] {msg}; they are ignored")
    return config_cls(**{k: v for k, v in kwargs.items() if k in names})

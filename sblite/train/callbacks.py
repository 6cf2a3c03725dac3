"""Trainer callbacks: rich progress with a compact per-step line, metrics.jsonl, the reward components in the
logs (``RewardMetricsCallback``) and the zero-signal guard.

Imported by ``sblite/train/run.py`` inside its stage functions (this module imports transformers), never at
module level: the backend must patch the trainers first. Callbacks observe and log; they never change a
batch or a reward.
Only the main process prints or writes, so the same callbacks serve single- and multi-process runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

ZERO_SIGNAL_KEYS = ("completions/clipped_ratio", "frac_reward_zero_std")
ZERO_SIGNAL_THRESHOLD = 0.95
ZERO_SIGNAL_PATIENCE = 3

_SHORT = {
    "loss": "loss",
    "reward": "reward",
    "reward_std": "r_std",
    "completions/mean_length": "len",
    "completions/clipped_ratio": "clipped",
    "frac_reward_zero_std": "zero_std",
    "learning_rate": "lr",
}


def format_log_line(stage: str, step: int, logs: dict[str, Any]) -> str:
    """One compact line per logging step: loss, reward parts, mean budget and length, clipped ratio.

    >>> format_log_line("grpo", 3, {"loss": 0.1, "reward": 0.52, "rewards/selfbudgeter/mean": 0.52})
    'grpo step 3  loss=0.1  reward=0.52  selfbudgeter=0.52'
    """
    parts = [f"{stage} step {step}"]
    for key, short in _SHORT.items():
        v = logs.get(key)
        if isinstance(v, int | float):
            parts.append(f"{short}={v:.2e}" if key == "learning_rate" else f"{short}={v:.3g}")
    for key, v in logs.items():
        if not isinstance(v, int | float):
            continue
        if key.startswith("sblite/reward_errors"):
            if v:  # only when a reward raised: then loudly, with the reward's name
                parts.append(f"REWARD_ERRORS[{key.rsplit('/', 1)[1]}]={v:.3g}")
        elif key.startswith("sblite/"):
            parts.append(f"{key.split('/', 1)[1]}={v:.3g}")
        elif key.startswith("rewards/") and key.endswith("/mean"):
            parts.append(f"{key[len('rewards/') : -len('/mean')]}={v:.3g}")
    return "  ".join(parts)


class MetricsFile(TrainerCallback):
    """Append every log dict to ``RUN_DIR/metrics.jsonl``, tagged with stage and step."""

    def __init__(self, stage: str, path: Path):
        self.stage, self.path = stage, path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {"stage": self.stage, "step": state.global_step, "epoch": state.epoch, **logs}
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, default=float) + "\n")


class RichProgress(TrainerCallback):
    """A rich progress bar over optimizer steps, with ``format_log_line`` printed above it at each log."""

    def __init__(self, stage: str, console):
        self.stage, self.console = stage, console
        self.progress = None
        self.task = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn(f"[bold]{self.stage}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.progress.start()
        self.task = self.progress.add_task(self.stage, total=state.max_steps, completed=state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is not None and logs:
            self.progress.console.print(format_log_line(self.stage, state.global_step, logs), highlight=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def zero_signal_message(key: str, value: float) -> str:
    if key == "frac_reward_zero_std":
        what = (
            f"{value:.0%} of prompts gave every completion the same reward, so GRPO's advantages are zero and "
            "the model learns nothing. Turn: raise grpo.temperature or grpo.num_generations; check that SFT "
            "taught the <budget>/<solution> format (format failures all score r_f alike); use data the model "
            "can partly solve."
        )
    else:
        what = (
            f"{value:.0%} of completions hit grpo.max_completion_length and are cut off (masked, so they teach "
            "nothing). Turn: raise grpo.max_completion_length, or prepare data with shorter budgets."
        )
    return (
        f"[bold red on yellow] ZERO SIGNAL [/] [bold]{key} ≥ {ZERO_SIGNAL_THRESHOLD} for "
        f"{ZERO_SIGNAL_PATIENCE} logging steps.[/] {what}"
    )


class ZeroSignalGuard(TrainerCallback):
    """Warn loudly (or stop, with ``strict``) when GRPO batches carry no learning signal.

    ``frac_reward_zero_std`` ≈ 1: every completion of a prompt scored the same, so every advantage is 0.
    ``completions/clipped_ratio`` ≈ 1: completions hit ``max_completion_length`` and (masked) teach nothing.
    Fires once per key after ``ZERO_SIGNAL_PATIENCE`` consecutive logging steps at or above the threshold.
    """

    def __init__(self, console, *, strict: bool):
        self.console, self.strict = console, strict
        self.streak: dict[str, int] = dict.fromkeys(ZERO_SIGNAL_KEYS, 0)
        self.fired: set[str] = set()
        self.stopped = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ZERO_SIGNAL_KEYS:
            if not logs or key not in logs:
                continue
            self.streak[key] = self.streak[key] + 1 if logs[key] >= ZERO_SIGNAL_THRESHOLD else 0
            if self.streak[key] >= ZERO_SIGNAL_PATIENCE and key not in self.fired:
                self.fired.add(key)
                if state.is_world_process_zero:
                    self.console.print(zero_signal_message(key, logs[key]))
                if self.strict:
                    self.stopped = True
                    control.should_training_stop = True


def make_callbacks(stage: str, metrics_file: Path, console, *, strict: bool) -> list[TrainerCallback]:
    callbacks: list[TrainerCallback] = [
        MetricsFile(stage, metrics_file),
        RichProgress(stage, console),
    ]
    if stage == "grpo":
        callbacks.append(ZeroSignalGuard(console, strict=strict))
    return callbacks


class RewardMetricsCallback(TrainerCallback):
    """Merges the rewards' component metrics (means since the last log) into the trainer's logs.

    Needed only with a TRL that does not pass ``log_metric`` to reward functions; with one that does,
    the keys are already in the logs and are left alone. Reads any reward with ``drain_metrics()``
    (``sblite.rewards.BatchReward``). Use ``RewardMetricsCallback.attach(trainer, funcs)`` so it runs before
    the reporting callbacks (TensorBoard, W&B, the progress bar) see the logs.
    """

    def __init__(self, reward_funcs: list[Any]) -> None:
        self.reward_funcs = [f for f in reward_funcs if hasattr(f, "drain_metrics")]

    @classmethod
    def attach(cls, trainer: Any, reward_funcs: list[Any]) -> RewardMetricsCallback:
        cb = cls(reward_funcs)
        trainer.callback_handler.callbacks.insert(0, cb)
        return cb

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None:
            return control
        merged: dict[str, list[float]] = {}
        for func in self.reward_funcs:
            for key, val in func.drain_metrics().items():
                merged.setdefault(key, []).append(val)
        added = {k: sum(v) / len(v) for k, v in merged.items() if k not in logs}
        logs.update(added)
        history = getattr(state, "log_history", None)
        if added and history and history[-1].get("step") == state.global_step:
            history[-1].update({k: v for k, v in added.items() if k not in history[-1]})
        return control

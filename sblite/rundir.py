"""The run directory ``sblite train`` writes and every later command reads: one place for its layout.

    RUN_DIR/recipe.resolved.yaml   the validated recipe, overrides applied (its eval/export sections are
                                   the defaults of `sblite eval` / `sblite export` on this run)
    RUN_DIR/provenance.json        versions, backend, device, data hash, reward config, git commit, stages
    RUN_DIR/metrics.jsonl          one line per logging step, both stages
    RUN_DIR/rejects.jsonl          prompts a stage could not use, with the reason
    RUN_DIR/sft/, RUN_DIR/grpo/    final LoRA adapters with tokenizer and chat template
    RUN_DIR/checkpoints/<stage>/   trainer checkpoints (optimizer, scheduler, RNG) for --resume

Only paths, the stored recipe and provenance live here: no model loading, no training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sblite.config import Recipe

#: training stages in the order a run produces them; the newest finished one is what later commands use
STAGES = ("sft", "grpo")
RECIPE_FILE = "recipe.resolved.yaml"
ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory (nothing is created until a ``write_*`` call)."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    def __str__(self) -> str:
        return str(self.root)

    # ---------------------------------------------------------------------------------------- layout
    @property
    def recipe_file(self) -> Path:
        return self.root / RECIPE_FILE

    @property
    def provenance_file(self) -> Path:
        return self.root / "provenance.json"

    @property
    def metrics_file(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def rejects_file(self) -> Path:
        return self.root / "rejects.jsonl"

    def adapter(self, stage: str) -> Path:
        """Where ``stage``'s final LoRA adapter (with tokenizer) is saved."""
        return self.root / _checked(stage)

    def checkpoints(self, stage: str) -> Path:
        return self.root / "checkpoints" / _checked(stage)

    # ---------------------------------------------------------------------------------------- state
    @staticmethod
    def is_run(path: str | Path) -> bool:
        """True for a directory ``sblite train`` wrote (it holds the resolved recipe)."""
        return (Path(path) / RECIPE_FILE).is_file()

    @classmethod
    def of_adapter(cls, adapter: str | Path) -> RunDir | None:
        """The run an adapter directory (``RUN_DIR/sft``) belongs to, or None for a free-standing adapter."""
        parent = Path(adapter).parent
        return cls(parent) if cls.is_run(parent) else None

    def finished(self, stage: str) -> bool:
        return (self.adapter(stage) / ADAPTER_CONFIG).is_file()

    def newest_stage(self, stages: tuple[str, ...] | list[str] | None = None) -> str | None:
        """The latest finished stage among ``stages`` (default: all), e.g. ``grpo`` over ``sft``."""
        for stage in reversed(STAGES):
            if (stages is None or stage in stages) and self.finished(stage):
                return stage
        return None

    # ---------------------------------------------------------------------------------------- records
    def recipe_dict(self) -> dict[str, Any]:
        """The stored recipe as a plain dict ({} when the file is missing or empty)."""
        import yaml

        if not self.recipe_file.is_file():
            return {}
        return yaml.safe_load(self.recipe_file.read_text(encoding="utf-8")) or {}

    def provenance(self) -> dict[str, Any]:
        if not self.provenance_file.is_file():
            return {}
        return json.loads(self.provenance_file.read_text(encoding="utf-8"))

    def write_recipe(self, recipe: Recipe) -> Path:
        from sblite.recipes import dump_recipe

        self.root.mkdir(parents=True, exist_ok=True)
        self.recipe_file.write_text(dump_recipe(recipe), encoding="utf-8")
        return self.recipe_file

    def write_provenance(self, record: dict[str, Any]) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        self.provenance_file.write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
        return self.provenance_file


def _checked(stage: str) -> str:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    return stage

"""Which value a command uses, and where it came from: its CLI option, else the recipe, else the default.

A recipe configures the whole pipeline, not only training: ``sblite prepare`` reads ``data:`` (and the
model it samples from), ``sblite eval`` reads ``eval:``, ``sblite export`` reads ``export:``. The recipe is the
one named by ``--recipe``, or the one a run directory stored (``RUN_DIR/recipe.resolved.yaml``) when the
command is pointed at a run. Every resolved value keeps its source (``--limit``, ``recipes/x.yaml:38``,
``runs/x/recipe.resolved.yaml:52``, ``default``), which ``--dry-run`` prints and the command's report stores.

Each command's mapping from option to recipe key is declared once below (``PREPARE``, ``EVAL``, ``EXPORT``).
Only pydantic/PyYAML are imported here: resolving must stay instant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from sblite.config import Recipe, RecipeError
from sblite.recipes import Sources, load_recipe_with_sources

#: option of ``sblite prepare`` → the recipe key it defaults to
PREPARE = {
    "dataset": "data.source",
    "out": "data.path",
    "labels": "data.labels",
    "limit": "data.limit",
    "seed": "data.seed",
    "max_prompt_tokens": "data.max_prompt_length",
    "model": "model.name_or_path",
    "instruction_in_user": "model.instruction_in_user",
    "renderings": "data.renderings",
    "self_renderings": "data.self_renderings",
    "stating_questions": "data.stating_questions",
}
#: option of ``sblite eval`` → recipe key (every field of the ``eval:`` section)
EVAL = {
    name: f"eval.{name}"
    for name in (
        "dataset",
        "limit",
        "mode",
        "budgets",
        "n_samples",
        "temperature",
        "max_new_tokens",
        "batch_size",
        "budget_guard",
    )
}
#: option of ``sblite export`` → recipe key (every field of the ``export:`` section)
EXPORT = {
    "quant": "export.quant",
    "dtype": "export.merge_dtype",
    "ollama": "export.ollama",
    "verify": "export.verify",
}


@dataclass
class Resolved:
    """Resolved option values and, for each, where it came from."""

    values: dict[str, Any]
    sources: dict[str, str]
    recipe: str | None = None  # the name of the recipe the non-CLI values came from

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def to_json(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "values": self.values, "sources": self.sources}


def find_command_recipe(
    recipe: str | None, target: str | None = None
) -> tuple[Recipe | None, Sources | None]:
    """The recipe configuring a command: ``--recipe NAME``, else the one stored by the run that ``target``
    (a RUN_DIR, or an adapter directory inside one) belongs to, else none."""
    from sblite.rundir import RunDir

    if recipe:
        return load_recipe_with_sources(recipe)
    if target and not target.startswith(("builtin:", "hf:")):
        path = Path(target)
        run = RunDir(path) if RunDir.is_run(path) else RunDir.of_adapter(path)
        if run is not None:
            return load_recipe_with_sources(str(run.recipe_file))
    return None, None


def _section_default(recipe_key: str) -> Any:
    section, name = recipe_key.split(".")
    model = Recipe.model_fields[section].annotation
    info = model.model_fields[name]  # type: ignore[union-attr]
    return None if info.is_required() else info.get_default(call_default_factory=True)


def resolve(
    mapping: dict[str, str],
    cli: dict[str, Any],
    recipe: Recipe | None,
    sources: Sources | None,
    *,
    flags: dict[str, str] | None = None,
) -> Resolved:
    """Each option of ``mapping``: the CLI value when given (not None), else the recipe's value at the mapped
    key, else that key's default. CLI values are validated by the recipe's own section models, so
    ``--mode x`` fails with the same message as ``eval.mode: x``."""
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for option, key in mapping.items():
        section, name = key.split(".")
        if cli.get(option) is not None:
            values[option] = cli[option]
            origin[option] = (flags or {}).get(option, "--" + option.replace("_", "-"))
        elif recipe is not None:
            values[option] = getattr(getattr(recipe, section), name)
            origin[option] = sources.of(key) if sources is not None else "recipe"
        else:
            values[option] = _section_default(key)
            origin[option] = "default"
    _validate(mapping, values, origin)
    return Resolved(values, origin, recipe=recipe.name if recipe is not None else None)


def _validate(mapping: dict[str, str], values: dict[str, Any], origin: dict[str, str]) -> None:
    """Run the section models over the resolved values; a bad value is one line naming its flag and the fix.

    A section with required keys outside this command's view (``model.name_or_path``) is left to the command."""
    by_section: dict[str, dict[str, str]] = {}
    for option, key in mapping.items():
        section, name = key.split(".")
        by_section.setdefault(section, {})[name] = option
    for section, names in by_section.items():
        model: type[BaseModel] = Recipe.model_fields[section].annotation  # type: ignore[assignment]
        if any(info.is_required() for info in model.model_fields.values()):
            continue
        try:
            checked = model.model_validate({n: values[o] for n, o in names.items()})
        except ValidationError as err:
            e = err.errors()[0]
            if not e["loc"]:  # a cross-field check: each key it names gets where its value came from
                msg = e["msg"].removeprefix("Value error, ")
                for n, o in names.items():
                    msg = re.sub(rf"\b{re.escape(f'{section}.{n}')}\b", f"{section}.{n} ({origin[o]})", msg)
                raise RecipeError(msg) from None
            option = names.get(str(e["loc"][0]), next(iter(names.values())))
            if e["type"] == "literal_error":
                msg = "choose " + str(e["ctx"]["expected"]).replace("'", "")
            else:
                msg = e["msg"].removeprefix("Value error, ")
            raise RecipeError(f"{origin[option]} {values[option]!r}: {msg}") from None
        for n, o in names.items():  # coerced values ("5" from a flag → 5)
            values[o] = getattr(checked, n)

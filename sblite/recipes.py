"""Recipe files: find ``recipes/*.yaml``, load them with ``--set a.b=c`` overrides, and say where each value
came from (``Sources``: file:line, a CLI flag, ``--set``, ``default``).

The models themselves are ``sblite/config.py``; this module turns YAML text into them with errors that name the
file, the line and the fix. Only pydantic and PyYAML are imported: ``sblite train --dry-run`` stays instant.

It never decides a value's meaning: that is the models' (``config.py``) and the commands' business.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sblite.config import Recipe, RecipeError

RECIPE_SUFFIXES = (".yaml", ".yml")


def recipe_dirs() -> list[Path]:
    """Where ``--recipe NAME`` looks: $SBLITE_RECIPES, ./recipes, then the recipes shipped with sblite."""
    dirs = [Path(p) for p in os.environ.get("SBLITE_RECIPES", "").split(os.pathsep) if p]
    dirs.append(Path.cwd() / "recipes")
    dirs.append(Path(__file__).resolve().parent.parent / "recipes")
    seen: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in seen:
            seen.append(d.resolve())
    return seen


def list_recipes() -> dict[str, Path]:
    """Recipe name → file, first directory wins (so a local ``recipes/`` shadows the shipped ones)."""
    found: dict[str, Path] = {}
    for d in recipe_dirs():
        for path in sorted(d.rglob("*")):
            if path.suffix in RECIPE_SUFFIXES:
                found.setdefault(path.stem, path)
    return found


def find_recipe(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in RECIPE_SUFFIXES or os.sep in name_or_path:
        if not path.is_file():
            raise RecipeError(f"{name_or_path}: no such recipe file; check the path")
        return path
    recipes = list_recipes()
    if name_or_path not in recipes:
        names = ", ".join(sorted(recipes)) or "none found"
        raise RecipeError(f"unknown recipe {name_or_path!r}; known recipes: {names} (or pass a .yaml path)")
    return recipes[name_or_path]


def _parse_scalar(text: str) -> Any:
    """A ``--set`` value as YAML (so ``1e-5``, ``true``, ``[a, b]`` and ``null`` mean what they look like)."""
    for number in (int, float):  # YAML 1.1 reads "5e-6" as a string
        try:
            return number(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str], *, source: str = "--set") -> dict[str, Any]:
    """Apply ``a.b=c`` overrides to a raw recipe dict (in place, also returned)."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"{source} {item!r}: expected KEY=VALUE, e.g. grpo.learning_rate=5e-6")
        parts = key.strip().split(".")
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise RecipeError(f"{source} {item!r}: {'.'.join(parts[: i + 1])} is not a section")
            node = child
        node[parts[-1]] = _parse_scalar(value)
    return data


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Each mapping key's path → its 1-based line in a YAML text, so errors can point at the line.

    >>> key_lines("grpo:\\n  lr: 1\\n  beta: 0\\n")
    {('grpo',): 1, ('grpo', 'lr'): 2, ('grpo', 'beta'): 3}
    """
    out: dict[tuple[str, ...], int] = {}

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = (*path, str(key.value))
                out[sub] = key.start_mark.line + 1
                walk(value, sub)

    try:
        walk(yaml.compose(text), ())
    except yaml.YAMLError:
        pass
    return out


def _format_error(err: ValidationError, source: str, lines_of: dict[tuple[str, ...], int] | None = None) -> str:
    lines = []
    for e in err.errors():
        path = tuple(str(p) for p in e["loc"])
        loc = ".".join(path)
        # the key's own line; a bad value may sit under a section (a model validator) → the deepest key the
        # file spells out. An unknown key from --set has no line in the file.
        known = lines_of or {}
        depth = [len(path)] if e["type"] == "extra_forbidden" else range(len(path), 0, -1)
        line = next((known[path[:n]] for n in depth if path[:n] in known), None)
        where = f"{source}:{line}" if line else source
        if e["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key '{loc}'; remove it or fix the spelling (see `sblite recipes`)")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {loc + ': ' if loc else ''}{msg}")
    return "; ".join(lines)


def load_recipe_dict(
    data: dict[str, Any], *, source: str = "<recipe>", lines_of: dict[tuple[str, ...], int] | None = None
) -> Recipe:
    try:
        return Recipe.model_validate(data)
    except ValidationError as err:
        raise RecipeError(_format_error(err, source, lines_of)) from None


class Sources(dict):
    """Dotted recipe key → where its value came from: ``FILE:LINE``, a CLI flag (``--data``), ``--set``.

    ``of(key)`` answers for any key, falling back to a parent that was set whole, then ``default``."""

    def of(self, key: str) -> str:
        parts = key.split(".")
        for n in range(len(parts), 0, -1):
            if (found := self.get(".".join(parts[:n]))) is not None:
                return found
        return "default"


def load_recipe(name_or_path: str, overrides: list[str] | None = None, *,
                labels: dict[str, str] | None = None) -> Recipe:
    """Load, override and validate a recipe by name or path; raises ``RecipeError`` with a one-line fix."""
    return load_recipe_with_sources(name_or_path, overrides, labels=labels)[0]


def load_recipe_with_sources(
    name_or_path: str, overrides: list[str] | None = None, *, labels: dict[str, str] | None = None
) -> tuple[Recipe, Sources]:
    """``load_recipe`` plus where each value came from. ``labels`` names the CLI flag behind an override
    key (``{"data.path": "--data"}``); other overrides are ``--set``."""
    path = find_recipe(name_or_path)
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise RecipeError(f"{path}{where}: invalid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping with sections model, sft, grpo, …")
    raw.setdefault("name", path.stem)
    apply_overrides(raw, overrides or [])
    lines = key_lines(text)
    sections = {key[:n] for key in lines for n in range(1, len(key))}  # only values carry an origin
    shown = os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd().resolve()) else str(path)
    sources = Sources({".".join(k): f"{shown}:{line}" for k, line in lines.items() if k not in sections})
    for item in overrides or []:
        key = item.partition("=")[0].strip()
        sources[key] = (labels or {}).get(key, "--set")
    return load_recipe_dict(raw, source=str(path), lines_of=lines), sources


def yaml_value(value: Any) -> str:
    """One value as inline YAML, as ``--dry-run`` prints it beside its source.

    >>> yaml_value([16, 64]), yaml_value(None), yaml_value("all-linear"), yaml_value(0.5)
    ('[16, 64]', 'null', 'all-linear', '0.5')
    """
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, allow_unicode=True).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def annotated_yaml(recipe: Recipe, sources: Sources) -> str:
    """The resolved recipe as YAML with each value's origin as a trailing comment (``--dry-run``)."""
    out: list[str] = []

    def walk(node: dict[str, Any], prefix: str, indent: int) -> None:
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if isinstance(value, dict) and value:
                out.append(f"{'  ' * indent}{key}:")
                walk(value, dotted + ".", indent + 1)
                continue
            out.append(f"{'  ' * indent}{key}: {yaml_value(value)}  # {sources.of(dotted)}")

    walk(recipe.model_dump(mode="json"), "", 0)
    return "\n".join(out) + "\n"


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as YAML (what ``--dry-run`` prints and ``recipe.resolved.yaml`` stores)."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)

"""What every part of ``sblite.export`` shares: its errors, the refusal checks run before anything is
written (free disk space, a safe ``--out``), the provenance file name and versions, and ``result_json``.

This is the bottom layer of the package: it imports nothing from the rest of ``sblite.export`` and nothing
heavy (no torch, transformers or gguf), so any module here can use it without a cycle.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

#: The provenance JSON written into a merged model directory.
PROVENANCE_NAME = "sblite-provenance.json"
#: Distributions whose versions go into every export provenance record.
PROVENANCE_PACKAGES = ("sblite", "torch", "transformers", "peft", "gguf", "llama_cpp_python")


class GGUFExportError(ValueError):
    """A model or option the GGUF writer cannot handle; the message says what is supported."""


class ExportError(GGUFExportError):
    """Bad input or a failed check; the message says what to do."""


class VerificationError(ExportError):
    """The artifact was written but a consumer disagrees with it; ``result`` holds the numbers."""

    def __init__(self, message: str, result: Any):
        super().__init__(message)
        self.result = result


def _free_bytes(path: Path) -> int:
    probe = path
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_disk_space(target: Path, need: int, what: str) -> None:
    """Fail before writing when the file system holding ``target`` has less than ``need`` bytes free."""
    free = _free_bytes(target)
    if free < need:
        raise ExportError(
            f"not enough disk space for {what}: needs ~{need / 1e9:.2f} GB, {free / 1e9:.2f} GB free at "
            f"{target}; free space or choose another --out"
        )


def check_out(out: Path, force: bool, protected: list[Path]) -> None:
    """Refuse an ``--out`` that is a file, lies inside one of ``protected`` (the sources being read), or is
    a non-empty directory without ``force``."""
    resolved = out.resolve()
    for p in protected:
        p = p.resolve()
        if resolved == p or resolved in p.parents:
            raise ExportError(f"--out {out} would overwrite the source {p}; choose another directory")
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file; give a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"--out {out} exists and is not empty; add --force to overwrite it")


def versions() -> dict[str, str]:
    """Installed versions of the packages an export depends on, for provenance files."""
    from sblite.provenance import package_versions

    return package_versions(PROVENANCE_PACKAGES)


def resolve_spec(src: str):
    """``sblite.generate.loading.resolve_model_spec(src)`` with its errors as ``ExportError``."""
    from sblite.generate.loading import resolve_model_spec

    try:
        return resolve_model_spec(src)
    except (FileNotFoundError, ValueError) as err:
        raise ExportError(str(err)) from None


def result_json(result: Any) -> dict[str, Any]:
    """A ``MergeResult`` or ``ExportResult`` as plain JSON types (paths as strings)."""
    return json.loads(json.dumps(asdict(result), default=str))

"""Where an artifact came from: installed versions, the git commit, file hashes.

Every stage that writes a provenance record (``prepare``'s report, ``train``'s ``provenance.json``, a merged
model's or a GGUF's ``*.provenance.json``) builds it from these helpers, so one hash or version means the
same thing everywhere. Standard library only: this module must not import torch or the model stack.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import subprocess
from collections.abc import Iterable
from pathlib import Path


def package_version(dist: str) -> str | None:
    """The installed version of distribution ``dist``, or None when it is not installed."""
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def package_versions(dists: Iterable[str]) -> dict[str, str]:
    """Installed versions of ``dists`` (missing ones left out), for provenance files."""
    return {d: v for d in dists if (v := package_version(d)) is not None}


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (model weights can be gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    """Hex SHA-256 of a UTF-8 text.

    >>> sha256_text("")[:12]
    'e3b0c44298fc'
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def git_commit() -> str | None:
    """The commit of the sblite checkout this runs from, or None outside a git checkout."""
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
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None

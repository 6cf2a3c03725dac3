"""What every benchmark result file shares: the exact command that made it.

``write_json(path, result)`` is the only way a benchmark writes its result JSON: it puts ``command`` (the
real ``sys.argv``, the script path made relative to the repository root, behind ``python``) first, so a
figure can always be traced to the run that produced it and re-run as it was.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def command_line(argv: Sequence[str] | None = None) -> str:
    """``python benchmarks/<script>.py ARGS…`` from ``sys.argv``, quoted so it can be pasted into a shell."""
    args = list(sys.argv if argv is None else argv)
    if not args:
        return "python"
    script = args[0]
    try:
        script = str(Path(script).resolve().relative_to(REPO))
    except (ValueError, OSError):
        pass
    return shlex.join(["python", script, *args[1:]])


def write_json(
    path: str | os.PathLike, result: dict[str, Any], *, indent: int = 2, **dump_kwargs: Any
) -> dict:
    """Write ``result`` with ``command`` (and ``OMP_NUM_THREADS`` as the run saw it) first; returns what was written."""
    out = {
        "command": command_line(),
        "command_env": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        **{k: v for k, v in result.items() if k not in ("command", "command_env")},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=indent, **dump_kwargs) + "\n", encoding="utf-8")
    return out


def stage_timer(console) -> tuple[Any, dict[str, float]]:
    """``(timed, timings)``: ``timed(name, fn)`` prints a rule, runs ``fn`` and records its seconds."""
    import time

    timings: dict[str, float] = {}

    def timed(name: str, fn):
        t = time.perf_counter()
        console.rule(f"[bold]{name}")
        value = fn()
        timings[name] = time.perf_counter() - t
        return value

    return timed, timings


def prepare_arith_samples(out: Path, *, limit: int, k: int, max_new_tokens: int, seed: int, styles: Sequence[str],
                          targets: str, console, force: bool = False):  # fmt: skip
    """The reproduction's cold-start data: SmolLM2-135M sampled (T=0.8) on the bundled arith questions."""
    from sblite.data.prepare import PrepareOptions, run_prepare
    from sblite.logs import progress_bars

    with progress_bars(console) as progress:
        return run_prepare(
            PrepareOptions(dataset="arith", out=str(out), labels="sample", model="builtin:smollm2-135m", k=k,
                           temperature=0.8, max_new_tokens=max_new_tokens, batch_size=k * 8, limit=limit, seed=seed,
                           force=force, instruction_in_user=True, targets=targets, styles=tuple(styles)),
            progress=progress,
        )  # fmt: skip

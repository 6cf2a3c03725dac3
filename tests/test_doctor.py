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

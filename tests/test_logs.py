"""Third-party progress bars stay out of sblite's output (``logs.quiet_libraries``), and the one progress adapter."""

from __future__ import annotations

import subprocess
import sys

import pytest
from rich.console import Console

from sblite.logs import progress_bars

LOAD = (
    "import sys; from transformers import AutoModelForCausalLM;"
    "exec('from sblite.logs import quiet_libraries; quiet_libraries()') if sys.argv[2] == 'quiet' else None;"
    "AutoModelForCausalLM.from_pretrained(sys.argv[1])"
)


def _stderr(model_dir, mode: str) -> str:
    proc = subprocess.run([sys.executable, "-c", LOAD, str(model_dir), mode], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_loading_a_model_draws_no_transformers_bar_once_quieted(tiny_model_dir):
    loud = _stderr(tiny_model_dir, "loud")
    if "Loading weights" not in loud:
        pytest.skip("this transformers draws no loading bar; nothing to silence")
    assert "Loading weights" not in _stderr(tiny_model_dir, "quiet")


def test_progress_bars_draw_one_bar_per_stage_with_totals():
    console = Console(record=True, width=100, force_terminal=False)
    with progress_bars(console) as progress:
        progress("sampling", 0, 4)
        progress("sampling", 3, None)
        progress("grading", 2, 2)
        progress("sampling", 1, None)
    text = console.export_text()
    assert "sampling" in text and "4/4" in text and "grading" in text and "2/2" in text

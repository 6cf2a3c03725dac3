"""The unsloth backend on a real GPU: the stand-in's signatures are the installed Unsloth's, and ``sblite train``
runs SFT → GRPO in one process with it (with ``model.fast_inference`` too, where vLLM is installed).

    pytest tests/gpu          # on a CUDA machine with sblite[gpu]; every test here skips without CUDA

Each check runs in its own process: ``import unsloth`` patches transformers/TRL/PEFT for the whole process and
must come before them, which a pytest session that imported them already cannot give.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(importlib.util.find_spec("unsloth") is None, reason="needs unsloth (sblite[gpu])"),
]

STAND_IN = Path(__file__).resolve().parents[1] / "fakes" / "unsloth" / "__init__.py"

_COMPARE = r"""
import importlib.util, inspect, json, sys
import unsloth
spec = importlib.util.spec_from_file_location("stand_in_unsloth", sys.argv[1])
fake = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fake)
diffs = {}
for name in ("from_pretrained", "get_peft_model", "for_training", "for_inference"):
    real = inspect.signature(getattr(unsloth.FastLanguageModel, name)).parameters
    ours = inspect.signature(getattr(fake.FastLanguageModel, name)).parameters
    shape = lambda ps: [(p.name, str(p.kind)) for p in ps.values()]
    wrong = [n for n in real if n in ours and real[n].default != ours[n].default]
    if shape(real) != shape(ours) or wrong:
        diffs[name] = {"real": shape(real), "stand_in": shape(ours), "defaults_differ": wrong}
print(json.dumps(diffs))
"""


def test_the_stand_in_has_the_installed_unsloths_signatures():
    """``tests/fakes/unsloth`` copies unsloth 2026.10.9's parameter lists; a newer Unsloth that changes them
    must change the stand-in too, or the CPU tests check the wrong thing."""
    proc = subprocess.run([sys.executable, "-c", _COMPARE, str(STAND_IN)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {}


@pytest.mark.parametrize("fast_inference", [False, True])
def test_sft_then_grpo_with_the_unsloth_backend(fast_inference, tiny_prepared_dir, tmp_path):
    """Both stages in one process, on a tiny random Qwen2. With ``fast_inference`` the SFT load starts no
    vLLM engine and the GRPO load's engine passes vLLM's free-memory check."""
    if fast_inference and importlib.util.find_spec("vllm") is None:
        pytest.skip("model.fast_inference needs vllm")
    out = tmp_path / "run"
    sets = [
        "model.name_or_path=builtin:tiny-random-qwen2", "model.dtype=auto", "sft.max_steps=2",
        "grpo.max_steps=2", f"model.fast_inference={str(fast_inference).lower()}",
    ]
    cmd = [sys.executable, "-m", "sblite.cli", "train", "-r", "tiny-cpu", "--backend", "unsloth",
           "--data", str(tiny_prepared_dir), "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**os.environ})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "Unsloth should be imported before" not in proc.stdout + proc.stderr
    for stage in ("sft", "grpo"):
        assert (out / stage / "adapter_config.json").is_file()
    assert json.loads((out / "provenance.json").read_text())["backend"] == "unsloth"

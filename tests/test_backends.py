"""The backends on CPU, the unsloth one through the stand-in ``tests/fakes/unsloth`` (real signatures, recorded
calls, tiny models): every recipe's load arguments fit Unsloth's signatures, unsloth is imported before
transformers/TRL/PEFT/datasets, SFT loads without a vLLM engine and each stage's model (and engine) is freed
before the next loads, the precision follows what the GPU supports, and the GRPO vLLM settings Unsloth
ignores are named. What needs a real GPU is in ``tests/gpu/``."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import torch

from sblite.backends import get_backend, unsloth_load_kwargs
from sblite.backends.base import lora_kwargs
from sblite.recipes import load_recipe

REPO = Path(__file__).resolve().parents[1]
FAKES = Path(__file__).resolve().parent / "fakes"
RECIPES = sorted(p.stem for p in (REPO / "recipes").glob("*.yaml"))
STAND_INS = ("unsloth", "unsloth_zoo")
CPU_TRAINER = {"use_cpu": True, "bf16": False, "fp16": False}


def _forget_stand_ins() -> None:
    for name in [m for m in sys.modules if m.split(".")[0] in STAND_INS]:
        del sys.modules[name]


@pytest.fixture
def fake_unsloth(monkeypatch):
    """The stand-in ``unsloth`` importable (fresh records), a 'CUDA' GPU with bfloat16 for ``select_backend``
    and the precision checks; nothing else of torch.cuda is touched."""
    _forget_stand_ins()
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.setattr("sblite.backends.cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "stand-in GPU")
    import unsloth

    yield unsloth
    _forget_stand_ins()


def _tiny(*overrides: str):
    return load_recipe("tiny-cpu", ["model.backend=unsloth", *overrides])


# ------------------------------------------------------------------------------------------ signatures


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_loads_through_unsloths_real_signatures(fake_unsloth, recipe):
    """Each recipe's ``from_pretrained`` keywords (the GRPO load, and SFT's without an engine) and
    ``get_peft_model`` keywords are named parameters of unsloth 2026.10.9's functions (none falls through to
    transformers' ``**kwargs``), and ``dtype`` is what the loader accepts: None or a torch dtype (it turns only
    "float16"/"bfloat16" strings into dtypes and asserts on anything else, "float32" included)."""
    fast = fake_unsloth.FastLanguageModel
    cfg = load_recipe(recipe)
    for model_cfg in (cfg.model, cfg.model.model_copy(update={"fast_inference": False})):
        kwargs = unsloth_load_kwargs(model_cfg, cfg.lora)
        bound = inspect.signature(fast.from_pretrained).bind(**kwargs)
        assert "kwargs" not in bound.arguments, f"not unsloth parameters: {sorted(bound.arguments['kwargs'])}"
        assert kwargs["dtype"] is None or isinstance(kwargs["dtype"], torch.dtype), kwargs["dtype"]
        fake_unsloth.check_dtype(kwargs["dtype"])
    peft = inspect.signature(fast.get_peft_model).bind(
        object(), max_seq_length=cfg.model.max_seq_length, **lora_kwargs(cfg.lora)
    )
    assert "kwargs" not in peft.arguments, sorted(peft.arguments.get("kwargs", {}))


# ------------------------------------------------------------------------------------------ import order

_IMPORT_ORDER = r"""
import json, os, sys
sys.path[:0] = [os.environ["FAKES"], os.environ["BENCH"]]
import torch
torch.cuda.is_bf16_supported = lambda *a, **k: True
torch.cuda.get_device_name = lambda *a, **k: "stand-in GPU"
import sblite.backends
sblite.backends.cuda_available = lambda: True
entry, data, out = sys.argv[1:4]
try:
    if entry == "run_training":
        from sblite.recipes import load_recipe
        from sblite.train.run import run_training
        overrides = ["model.backend=unsloth", "model.dtype=auto", f"data.path={data}", f"output_dir={out}"]
        run_training(load_recipe("tiny-cpu", overrides))
    else:
        import gpu_backends
        gpu_backends.child("unsloth", "unused-model-dir", data, out, 1, False)
except Exception as err:
    if type(err).__name__ != "StopLoad":
        raise
"""


@pytest.mark.parametrize("entry", ["run_training", "gpu_backends child"])
def test_unsloth_is_imported_before_transformers_trl_peft_and_datasets(entry, tiny_prepared_dir, tmp_path):
    """Unsloth patches transformers, TRL and PEFT when it is imported and warns that the unpatched classes
    run otherwise: where the unsloth backend is chosen, none of them (nor datasets) may be imported first.
    A fresh process (this one has imported them all) stops at the first model load."""
    log = tmp_path / "imports.jsonl"
    env = {
        **os.environ,
        "FAKES": str(FAKES),
        "BENCH": str(REPO / "benchmarks"),
        "SBLITE_FAKE_UNSLOTH_LOG": str(log),
        "SBLITE_FAKE_UNSLOTH_STOP": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_ORDER, entry.split()[0], str(tiny_prepared_dir), str(tmp_path / "run")],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert events == [{"event": "import unsloth", "already_imported": []}], events


# ------------------------------------------------------------------------------------------ stages


def _track_loads(monkeypatch, backend_cls) -> list[dict]:
    """Wrap ``backend_cls.load``: for each load, which models returned by earlier loads are still alive."""
    loads: list[dict] = []
    refs: list[weakref.ref] = []
    real = backend_cls.load

    def load(self, *args, **kwargs):
        loads.append({"adapter": kwargs.get("adapter"), "alive_before": sum(r() is not None for r in refs)})
        model, tokenizer = real(self, *args, **kwargs)
        refs.append(weakref.ref(model))
        return model, tokenizer

    monkeypatch.setattr(backend_cls, "load", load)
    return loads


def test_fast_inference_run_loads_sft_without_an_engine_and_frees_each_stage(
    fake_unsloth, monkeypatch, tiny_prepared_dir, tmp_path
):
    """grpo-7b / grpo-1.5b run SFT then GRPO in one process with ``model.fast_inference``: SFT must load
    without a vLLM engine (it never generates; a second engine fails vLLM's free-memory check), the SFT model
    is gone before GRPO loads, the GRPO engine is stopped through unsloth_zoo's ``delete_vllm`` when the stage
    ends, ``PatchFastRL`` is not called (Unsloth runs it at import), and the ignored
    ``grpo.vllm_gpu_memory_utilization`` is named at the start."""
    import unsloth_zoo.vllm_utils as zoo
    from rich.console import Console

    from sblite.backends.unsloth import UnslothBackend
    from sblite.train.run import run_training

    monkeypatch.setattr(UnslothBackend, "trainer_kwargs", lambda self, model_cfg: dict(CPU_TRAINER))
    loads = _track_loads(monkeypatch, UnslothBackend)
    cfg = _tiny(
        "model.dtype=auto", "model.fast_inference=true", "grpo.vllm_gpu_memory_utilization=0.4", "sft.max_steps=1",
        "grpo.max_steps=1", f"data.path={tiny_prepared_dir}", f"output_dir={tmp_path / 'run'}",
    )
    console = Console(record=True, width=400)
    results = run_training(cfg, console=console)

    assert [r.stage for r in results] == ["sft", "grpo"]
    sft_load, grpo_load = fake_unsloth.calls("from_pretrained")
    assert sft_load["fast_inference"] is False and grpo_load["fast_inference"] is True
    assert grpo_load["model_name"] == str(tmp_path / "run" / "sft")
    assert grpo_load["alive"] == [] and [x["alive_before"] for x in loads] == [0, 0]  # SFT's model is gone
    assert [f"engine-of-{grpo_load['label']}"] == zoo.DELETED  # stopped once, after GRPO
    assert fake_unsloth.calls("PatchFastRL") == []
    out = console.export_text()
    assert "grpo.vllm_gpu_memory_utilization=0.4 ignored" in out and "model.gpu_memory_utilization=0.6" in out


def test_release_stops_every_engine_the_backend_started(fake_unsloth):
    import unsloth_zoo.vllm_utils as zoo

    backend, choice = get_backend("unsloth")
    assert choice.name == "unsloth"
    cfg = _tiny("model.dtype=auto", "model.fast_inference=true")
    model, _ = backend.load(cfg.model, cfg.lora)
    assert model.vllm_engine.label == "engine-of-model-1"
    del model
    backend.release()
    backend.release()  # nothing left to stop
    assert zoo.DELETED == ["engine-of-model-1"]
    plain = _tiny()
    backend.load(plain.model, plain.lora)
    backend.release()
    assert zoo.DELETED == ["engine-of-model-1"]  # a load without fast_inference started no engine


# ------------------------------------------------------------------------------------------ precision

BF16, FP16, FP32 = torch.bfloat16, torch.float16, torch.float32


@pytest.mark.parametrize(
    ("dtype", "gpu_bf16", "loaded", "flags", "noted"),
    [
        ("auto", True, None, (True, False), False),
        ("auto", False, None, (False, True), False),
        ("bfloat16", True, BF16, (True, False), False),
        ("bfloat16", False, FP16, (False, True), True),  # T4 / V100
        ("float16", True, FP16, (False, True), False),
        ("float32", True, FP32, (False, False), False),  # Unsloth picks the mixed precision
    ],
)
def test_unsloth_precision_follows_the_gpu(fake_unsloth, monkeypatch, dtype, gpu_bf16, loaded, flags, noted):
    """The loader gets a torch dtype (None: Unsloth picks), the trainers the matching bf16/fp16 flags (Unsloth's
    trainers raise on a float16 model with bf16=True), and a bfloat16 recipe on a GPU without it says so."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: gpu_bf16)
    backend, _ = get_backend("unsloth")
    cfg = _tiny(f"model.dtype={dtype}")
    backend.load(cfg.model, cfg.lora)
    (call,) = fake_unsloth.calls("from_pretrained")
    assert call["dtype"] is loaded
    kwargs = backend.trainer_kwargs(cfg.model)
    assert (kwargs["bf16"], kwargs["fp16"]) == flags
    notes = backend.recipe_notes(cfg)
    assert any("no bfloat16" in n and "float16" in n for n in notes) is noted, notes


@pytest.mark.parametrize(("gpu_bf16", "flags"), [(True, (True, False)), (False, (False, True))])
def test_hf_backend_on_cuda_trains_bfloat16_only_where_the_gpu_has_it(monkeypatch, gpu_bf16, flags):
    from sblite.backends.hf import HFBackend

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: gpu_bf16)
    backend = HFBackend()
    backend.cuda = True
    cfg = load_recipe("sft-1.5b", ["model.backend=hf"])  # dtype: bfloat16
    kwargs = backend.trainer_kwargs(cfg.model)
    assert (kwargs["bf16"], kwargs["fp16"]) == flags
    assert bool(backend.recipe_notes(cfg)) is not gpu_bf16


@pytest.mark.parametrize(
    ("dtype", "native_bf16", "bf16_flag", "noted"),
    [
        ("float32", True, False, False),
        ("auto", True, False, False),  # auto is float32 on CPU
        ("bfloat16", True, True, False),
        ("bfloat16", False, True, True),  # honoured, but said to be slower than float32 there
        ("float32", False, False, False),
    ],
)
def test_hf_backend_on_cpu_trains_bfloat16_with_autocast_when_the_recipe_asks(
    monkeypatch, dtype, native_bf16, bf16_flag, noted
):
    from sblite.backends.hf import HFBackend

    monkeypatch.setattr("sblite.backends.hf.cpu_native_bf16", lambda: native_bf16)
    backend = HFBackend()
    backend.cuda = False
    cfg = load_recipe("smollm2-135m", [f"model.dtype={dtype}"])
    assert backend.trainer_kwargs(cfg.model) == {**CPU_TRAINER, "bf16": bf16_flag}
    notes = backend.recipe_notes(cfg)
    assert any("emulates" in n and "model.dtype=float32" in n for n in notes) is noted, notes


def test_hf_backend_on_cpu_refuses_to_train_float16_and_names_the_fix():
    """Off CUDA there is no fp16 loss scaler: a float16 recipe would train float16 weights unscaled (it ran,
    silently, before this check). The refusal names both dtypes that do train there."""
    from sblite.backends.hf import HFBackend
    from sblite.train import TrainingError

    backend = HFBackend()
    backend.cuda = False
    with pytest.raises(TrainingError, match=r"model\.dtype=float16 does not train on CPU.*bfloat16.*float32"):
        backend.trainer_kwargs(load_recipe("smollm2-135m", ["model.dtype=float16"]).model)


# ------------------------------------------------------------------------------------------ notes


@pytest.mark.parametrize(
    ("overrides", "ignored"),
    [
        (["model.fast_inference=true", "grpo.vllm_gpu_memory_utilization=0.4"], ["vllm_gpu_memory_utilization"]),
        (["model.fast_inference=true", "grpo.vllm_mode=server"], ["vllm_mode"]),
        (["model.fast_inference=true"], []),  # the defaults ask for nothing
        (["grpo.vllm_gpu_memory_utilization=0.4"], []),  # no engine of Unsloth's: TRL's own vLLM reads it
        (["model.fast_inference=true", "grpo.vllm_gpu_memory_utilization=0.4", "stages=[sft]"], []),
    ],
)
def test_grpo_vllm_settings_unsloth_overrides_are_named(fake_unsloth, overrides, ignored):
    backend, _ = get_backend("unsloth")
    notes = backend.recipe_notes(_tiny(*overrides))
    assert len(notes) == (1 if ignored else 0), notes
    for key in ignored:
        assert f"grpo.{key}=" in notes[0] and "model.gpu_memory_utilization" in notes[0]

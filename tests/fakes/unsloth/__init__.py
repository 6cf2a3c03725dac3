"""A stand-in ``unsloth`` for CPU tests: the real signatures, bodies that record calls and build tiny models.

Never installed: ``tests/test_backends.py``'s fixture puts ``tests/fakes`` on ``sys.path`` for one test (its
subprocess tests put it first on theirs), and ``tests/fakes/conftest.py`` keeps pytest from collecting it. The
parameter lists, defaults included and written as Unsloth writes them, are copied from the unsloth 2026.10.9
wheel (``tests/gpu`` compares them with an installed Unsloth's):

- ``FastLanguageModel.from_pretrained``: ``unsloth/models/loader.py:1241`` (its decorators keep the signature
  through ``functools.wraps``); ``DEFAULT_DEVICE_MAP`` and ``OFFLOAD_EMBEDDING_AUTO`` are
  ``unsloth/models/loader_utils.py:407-416``.
- ``FastLanguageModel.get_peft_model`` wraps ``FastLlamaModel.get_peft_model`` (``functools.wraps``,
  ``loader.py:1205``), so its signature is ``unsloth/models/llama.py:4569``; ``_DEFAULT_TARGET_MODULES`` is
  ``llama.py:3209``.
- ``for_training`` / ``for_inference``: ``loader.py:1222`` / ``loader.py:1215``.
- ``PatchFastRL``: ``unsloth/models/rl.py:5371`` (run by ``llama.py:5591`` at import).

What the bodies check, as the real loader does: ``dtype`` is converted from ``"float16"``/``"bfloat16"`` only
and must then be ``None`` or a float16/bfloat16/float32 ``torch.dtype`` (``loader.py:1369-1376``). Stricter
than the real one: a keyword that falls into ``**kwargs`` (the real loader hands those to transformers) is a
``TypeError``, so a misspelt option fails here instead of on a GPU.

What they record: ``CALLS`` (name, every parameter's value; a model by its class name, so no record keeps
one alive), ``ALREADY_IMPORTED`` (which of transformers, TRL, PEFT and datasets were imported before this
module was; also appended as JSON to ``$SBLITE_FAKE_UNSLOTH_LOG``),
``MODELS`` (a label and a weak reference per model returned) and, in each ``from_pretrained`` record,
``alive``: the labels of earlier models still alive at that moment. A ``fast_inference`` load attaches a
``FakeEngine`` as ``model.vllm_engine``, as Unsloth attaches its vLLM ``LLM`` (``llama.py:4295``).
``$SBLITE_FAKE_UNSLOTH_STOP=1`` makes ``from_pretrained`` raise ``StopLoad`` (import-order tests stop there).
"""

from __future__ import annotations

import json
import os
import sys
import weakref

#: the modules Unsloth wants imported after itself (``unsloth/_gpu_init.py:20``), and datasets
CRITICAL = ("transformers", "trl", "peft", "datasets")
ALREADY_IMPORTED = [m for m in CRITICAL if m in sys.modules]
if os.environ.get("SBLITE_FAKE_UNSLOTH_LOG"):
    with open(os.environ["SBLITE_FAKE_UNSLOTH_LOG"], "a", encoding="utf-8") as _log:
        _log.write(json.dumps({"event": "import unsloth", "already_imported": ALREADY_IMPORTED}) + "\n")

import torch  # noqa: E402 - after the record: torch itself may come first (the real unsloth needs it)

CALLS: list[tuple[str, dict]] = []
MODELS: list[tuple[str, weakref.ref]] = []

DEFAULT_DEVICE_MAP = "sequential"
OFFLOAD_EMBEDDING_AUTO = "auto"
_DEFAULT_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class StopLoad(RuntimeError):
    """Raised by ``from_pretrained`` under ``$SBLITE_FAKE_UNSLOTH_STOP=1``."""


class FakeEngine:
    """What ``model.vllm_engine`` is after a ``fast_inference`` load (the real one is a vLLM ``LLM``)."""

    def __init__(self, label: str) -> None:
        self.label = label


def _record(name: str, arguments: dict) -> dict:
    """Record a call from its ``locals()`` (taken first thing): every parameter, defaults included. A model
    argument is recorded by its class name: the records must not keep a model alive."""
    arguments = dict(arguments)
    if "model" in arguments:
        arguments["model"] = type(arguments["model"]).__name__
    extra, positional = arguments.pop("kwargs", {}), arguments.pop("args", ())
    if extra or positional:
        raise TypeError(
            f"stand-in unsloth: {name} got {sorted(extra) or positional}, which are not its parameters "
            "(the real one passes them on to transformers)"
        )
    CALLS.append((name, arguments))
    return arguments


def check_dtype(dtype):
    """``dtype`` as ``FastLanguageModel.from_pretrained`` normalises and asserts it (``loader.py:1369``)."""
    if isinstance(dtype, str) and dtype in ["float16", "bfloat16"]:
        dtype = getattr(torch, dtype)
    assert dtype is None or dtype == torch.float16 or dtype == torch.bfloat16 or dtype == torch.float32
    return dtype


def _load(model_name: str):
    """The model at ``model_name`` (a saved tiny model, or an adapter directory: base + trainable adapter)."""
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter_config = Path(model_name) / "adapter_config.json"
    if adapter_config.is_file():
        from peft import PeftModel

        base_dir = json.loads(adapter_config.read_text())["base_model_name_or_path"]
        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        model = PeftModel.from_pretrained(base, model_name, is_trainable=True)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_name, dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(model_name)


class FastLanguageModel:
    @staticmethod
    def from_pretrained(
        model_name = "unsloth/Llama-3.2-1B-Instruct",
        max_seq_length = 2048,
        dtype = None,
        load_in_4bit = True,  # 4-bit QLoRA
        load_in_8bit = False,  # 8-bit LoRA
        load_in_16bit = False,  # 16-bit LoRA
        full_finetuning = False,
        token = None,
        device_map = DEFAULT_DEVICE_MAP,
        # planner options apply only when device_map = "unsloth".
        device_map_planner_kwargs = None,
        rope_scaling = None,
        fix_tokenizer = True,
        trust_remote_code = False,
        use_gradient_checkpointing = "unsloth",
        resize_model_vocab = None,
        revision = None,
        use_exact_model_name = False,
        offload_embedding = OFFLOAD_EMBEDDING_AUTO,
        float32_mixed_precision = None,  # Forces float32 mixed precision
        fast_inference = False,  # uses vLLM
        gpu_memory_utilization = 0.5,
        float8_kv_cache = False,
        random_state = 3407,
        max_lora_rank = 64,
        disable_log_stats = True,
        qat_scheme = None,
        load_in_fp8 = False,  # fp8 LoRA (True, False, 'block')
        unsloth_tiled_mlp = False,
        text_only = False,
        *args,
        on_model_resolved = None,
        **kwargs,
    ):
        arguments = _record("from_pretrained", locals())
        arguments["alive"] = [label for label, ref in MODELS if ref() is not None]
        check_dtype(dtype)
        if os.environ.get("SBLITE_FAKE_UNSLOTH_STOP") == "1":
            raise StopLoad("stand-in unsloth: stopped at from_pretrained ($SBLITE_FAKE_UNSLOTH_STOP=1)")
        model, tokenizer = _load(model_name)
        label = f"model-{len(MODELS) + 1}"
        if fast_inference:
            model.vllm_engine = FakeEngine(f"engine-of-{label}")
        MODELS.append((label, weakref.ref(model)))
        arguments["label"] = label
        return model, tokenizer

    @staticmethod
    def get_peft_model(
        model,
        r = 16,
        target_modules = _DEFAULT_TARGET_MODULES,
        lora_alpha = 16,
        lora_dropout = 0.0,
        bias = "none",
        layers_to_transform = None,
        layers_pattern = None,
        finetune_last_n_layers = None,
        use_gradient_checkpointing = "unsloth",
        random_state = 3407,
        max_seq_length = 2048,  # not used anymore
        use_rslora = False,
        modules_to_save = None,
        init_lora_weights = True,
        loftq_config = {},  # noqa: B006 - the real default
        temporary_location = "_unsloth_temporary_saved_buffers",
        qat_scheme = None,
        target_parameters = None,  # For MoE expert layers (nn.Parameter)
        ensure_weight_tying = None,  # None = auto (tie when we redirect a tied pair)
        offload_layers = None,
        checkpoint_skip_layers = 0,
        **kwargs,
    ):
        _record("get_peft_model", locals())
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(random_state)
        config = LoraConfig(
            task_type="CAUSAL_LM", r=r, target_modules=target_modules, lora_alpha=lora_alpha,
            lora_dropout=lora_dropout, bias=bias, use_rslora=use_rslora,
        )
        return get_peft_model(model, config)

    @staticmethod
    def for_inference(model):
        _record("for_inference", locals())
        model.eval()
        return model

    @staticmethod
    def for_training(model, use_gradient_checkpointing = None):
        _record("for_training", locals())
        model.train()
        return model


def PatchFastRL(algorithm = None, FastLanguageModel = None):  # noqa: N802, N803 - the real names
    CALLS.append(("PatchFastRL", {"algorithm": algorithm, "FastLanguageModel": FastLanguageModel}))


def calls(name: str) -> list[dict]:
    """The recorded arguments of every call to ``name``, in order."""
    return [arguments for called, arguments in CALLS if called == name]

"""The one prepared check for a lent GPU machine: the GPU user's whole path, on random-initialised models.

    bash benchmarks/gpu_check.sh --out "$OUT"      # on the device: carry .whl/ (see ../shared/docs/GPU.md)
    bash benchmarks/gpu_check.sh --dry-run         # anywhere (CI): the same steps on CPU, HF backend, toy sizes

The device has no network, ~64 MiB carried per call, ≤10 min a command and 15 min per task, so every step runs
as its own subprocess with a timeout cut to what is left of ``--budget-s``; a step that fails or runs out of
time is recorded and the rest still run, and the JSON is written whatever happens. Steps:

1. ``wheels``   install the carried wheels (``--wheels``, default ``.whl/``): trl, datasets, unsloth, …
2. ``doctor``   ``sblite doctor`` (the version matrix Unsloth pins)
3. ``models``   random-init models shaped like SmolLM2-135M (Llama) and Qwen2.5-1.5B (Qwen2), with sblite's
                tiny local tokenizer (vocab cut to it so the GGUF export is complete; no weights can travel)
4. ``prepare``  ``sblite prepare`` on the bundled arith problems (reference labels: no sampling model needed)
5. ``train-16`` ``sblite train`` SFT → GRPO, a few steps each, with the unsloth backend and 16-bit LoRA
6. ``train-4``  the same in 4-bit when bitsandbytes imports
7. ``merge``    ``sblite merge`` of the 16-bit run (merged logits checked against the adapter's)
   ``export``   ``sblite export --gguf`` of it (verified by transformers)
8. ``backends`` ``benchmarks/gpu_backends.py``: unsloth vs hf GRPO step time and peak memory, Qwen2.5-1.5B sizes

Every step's output goes to ``OUT/<step>.log``; ``OUT/gpu_check.json`` (and, off dry-run,
``benchmarks/results/gpu_check.json``) holds each step's exit code, seconds and log tail.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from _common import write_json  # noqa: E402

SMOLLM2_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, max_position_embeddings=8192, tie_word_embeddings=True)  # fmt: skip
QWEN25_15B = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                  num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1_000_000.0,
                  tie_word_embeddings=True)  # fmt: skip
TOY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
           max_position_embeddings=2048, tie_word_embeddings=True)  # fmt: skip
#: per-step caps (seconds) before the overall budget cuts them
CAPS = {"wheels": 150, "doctor": 60, "models": 90, "prepare": 60, "train-16": 150, "train-4": 150, "merge": 60,
        "export": 120, "backends": 240}  # fmt: skip


def build_models(out: Path, toy: bool) -> dict[str, str]:
    """Save the two random-init models (and the tokenizer) under ``out``; returns name → directory."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    from sblite.models import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    ids = dict(vocab_size=len(tok), eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
               bos_token_id=tok.bos_token_id)  # fmt: skip
    made = {}
    for name, cls, sizes in (("smollm2-135m-shape", LlamaConfig, SMOLLM2_135M), ("qwen2.5-1.5b-shape", Qwen2Config,
                                                                                   QWEN25_15B)):  # fmt: skip
        torch.manual_seed(0)
        config = cls(**(TOY if toy else sizes), **ids)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32 if toy else torch.bfloat16)
        model.save_pretrained(out / name)
        tok.save_pretrained(out / name)
        made[name] = str(out / name)
    return made


def plan(args, out: Path) -> list[tuple[str, list[str]]]:
    """The steps as (name, argv); the training model is the SmolLM2-shaped one."""
    py, cli = sys.executable, [sys.executable, "-m", "sblite.cli"]
    model, data = out / "models" / "smollm2-135m-shape", out / "data"
    backend = "hf" if args.dry_run else "unsloth"
    train = [*cli, "train", "--recipe", "tiny-cpu", "--backend", backend, "--data", str(data),
             "--set", f"model.name_or_path={model}", "--set", "sft.max_steps=3", "--set", "grpo.max_steps=2",
             "--set", "grpo.log_completions=false", "--set", "sft.save_steps=1000",
             "--set", "grpo.save_steps=1000"]  # fmt: skip
    if not args.dry_run:
        train += ["--set", "model.dtype=bfloat16", "--set", "lora.use_gradient_checkpointing=unsloth"]
    steps = [
        ("wheels", [py, str(HERE / "gpu_check.py"), "--install-wheels", args.wheels]),
        ("doctor", [*cli, "doctor"]),
        ("models", [py, str(HERE / "gpu_check.py"), "--build-models", str(out / "models")]
         + (["--toy"] if args.dry_run else [])),
        ("prepare", [*cli, "prepare", "--dataset", "arith", "--labels", "reference", "--tokenizer", str(model),
                     "--limit", "64", "--out", str(data), "--force"]),
        ("train-16", [*train, "--out", str(out / "run-16")]),
        ("train-4", [*train, "--out", str(out / "run-4"), "--set", "model.load_in_4bit=true"]),
        ("merge", [*cli, "merge", str(out / "run-16"), "--out", str(out / "merged"), "--force"]),
        ("export", [*cli, "export", str(out / "run-16"), "--gguf", "--quant", "f16", "--out", str(out / "gguf"),
                    "--force"]),
        ("backends", [py, str(HERE / "gpu_backends.py"), "--out", str(out / "gpu_backends.json"), "--steps", "4",
                      "--child-timeout", str(CAPS["backends"] // 2 - 10)]
         + (["--toy"] if args.dry_run else ["--wheels", args.wheels])),
    ]  # fmt: skip
    if args.dry_run:  # nothing to install on CPU; 4-bit needs CUDA
        steps = [s for s in steps if s[0] not in ("wheels", "train-4")]
    return steps


def _bitsandbytes() -> bool:
    """Asked after the ``wheels`` step, whose subprocess may just have installed it: forget stale finders."""
    import importlib
    import importlib.util

    importlib.invalidate_caches()
    return importlib.util.find_spec("bitsandbytes") is not None


def run_steps(args) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    deadline = time.monotonic() + args.budget_s
    rows = []
    for name, argv in plan(args, out):
        left = deadline - time.monotonic()
        row: dict = {"step": name}
        if name == "train-4" and not _bitsandbytes():
            row["skipped"] = "bitsandbytes is not installed"
        elif left < 20:
            row["skipped"] = f"out of time ({args.budget_s} s budget)"
        if "skipped" in row:
            rows.append(row)
            continue
        timeout = min(CAPS[name], left)
        log = out / f"{name}.log"
        t0 = time.perf_counter()
        with log.open("w", encoding="utf-8") as fh:
            fh.write("$ " + " ".join(argv) + "\n")
            fh.flush()
            try:
                row["rc"] = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                           timeout=timeout).returncode  # fmt: skip
            except subprocess.TimeoutExpired:
                row["rc"], row["timed_out"] = None, timeout
        row["seconds"] = round(time.perf_counter() - t0, 1)
        row["log_tail"] = log.read_text(encoding="utf-8", errors="replace")[-1500:]
        rows.append(row)
        print(f"{name:<10} {('rc ' + str(row['rc'])) if row.get('rc') is not None else 'TIMEOUT':<10} "
              f"{row['seconds']:>7.1f} s", flush=True)  # fmt: skip
    ok = all(r.get("rc") == 0 or "skipped" in r for r in rows)
    return {"benchmark": "gpu_check", "dry_run": args.dry_run, "budget_s": args.budget_s, "ok": ok, "steps": rows,
            "device": _device()}  # fmt: skip


def _device() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except Exception:  # noqa: BLE001 - reported, never fatal
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, HF backend, toy sizes, no wheels (CI)")
    ap.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "gpu-check-out"))
    ap.add_argument("--wheels", default=str(REPO / ".whl"))
    ap.add_argument("--budget-s", type=float, default=540.0, help="all steps together (a device command ≤ 600 s)")
    ap.add_argument("--install-wheels", metavar="DIR", help=argparse.SUPPRESS)
    ap.add_argument("--build-models", metavar="DIR", help=argparse.SUPPRESS)
    ap.add_argument("--toy", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.install_wheels:
        from gpu_backends import install_wheels

        message = install_wheels(Path(args.install_wheels))
        print(message)
        sys.exit(1 if message.startswith("pip failed") else 0)
    if args.build_models:
        print(json.dumps(build_models(Path(args.build_models), args.toy)))
        return
    result = run_steps(args)
    write_json(Path(args.out) / "gpu_check.json", result)
    if not args.dry_run:
        write_json(HERE / "results" / "gpu_check.json", result)
    print(f"{'all steps passed' if result['ok'] else 'some steps FAILED'} → {Path(args.out) / 'gpu_check.json'}")
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()

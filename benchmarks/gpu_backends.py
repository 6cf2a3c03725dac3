"""Unsloth backend vs HF backend: GRPO step time and peak GPU memory on a random-initialised Qwen2-1.5B.

    python benchmarks/gpu_backends.py                  # on a CUDA machine: ≤ 8 minutes
    python benchmarks/gpu_backends.py --toy            # anywhere: a toy config, HF backend only (a smoke test)

One prepared script for a lent GPU machine with no network: it first installs what the machine lacks from
wheels carried beside it (``--wheels DIR``, default ``.whl/``; see ``../shared/docs/GPU.md``), then builds
a model from Qwen2.5-1.5B's real sizes with random weights (honest for speed and memory, not for accuracy),
saves it locally, and runs the same sblite GRPO recipe once per backend, each in its own process (importing
Unsloth patches transformers and TRL for the whole process). It prints a short table last and writes JSON
to benchmarks/results/gpu_backends.json. A backend that cannot run here is reported with its reason.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_json  # noqa: E402

QWEN25_15B = dict(
    hidden_size=1536,
    intermediate_size=8960,
    num_hidden_layers=28,
    num_attention_heads=12,
    num_key_value_heads=2,
    vocab_size=151936,
    max_position_embeddings=32768,
    rope_theta=1_000_000.0,
    tie_word_embeddings=True,
)
TOY = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
    tie_word_embeddings=True,
)


def install_wheels(wheels: Path) -> str:
    if not wheels.is_dir():
        return f"no wheel dir {wheels}: using what is installed"
    files = sorted(str(p) for p in wheels.glob("*.whl"))
    if not files:
        return f"{wheels} holds no wheels"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "-q", *files],
        capture_output=True,
        text=True,
    )
    return f"installed {len(files)} wheels" if proc.returncode == 0 else f"pip failed: {proc.stderr[-400:]}"


def build_model(out: Path, toy: bool) -> Path:
    """A random-initialised Qwen2 with a real-size config, and the tiny local tokenizer (ids < vocab)."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from sblite.models import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    sizes = dict(TOY, vocab_size=len(tok)) if toy else QWEN25_15B
    config = Qwen2Config(**sizes, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if not toy else torch.float32)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def child(backend: str, model_dir: str, data_dir: str, out: str, steps: int, toy: bool) -> None:
    """Run GRPO with one backend and print one JSON line: step times and peak memory."""
    if backend == "unsloth":
        # before anything imports transformers/trl/peft/datasets: Unsloth patches them at import
        import unsloth  # noqa: F401

    from rich.console import Console

    from sblite.recipes import load_recipe
    from sblite.train.run import run_training

    overrides = [
        f"model.name_or_path={model_dir}",
        f"model.backend={backend}",
        "stages=[grpo]",
        f"data.path={data_dir}",
        f"output_dir={out}",
        f"grpo.max_steps={steps}",
        "grpo.log_completions=false",
        "grpo.save_steps=1000",
        "grpo.num_generations=8",
        "grpo.per_device_train_batch_size=8",
        "grpo.max_completion_length=256",
        "grpo.completion_headroom=1.0",
        "lora.r=32",
        "lora.alpha=32",
        "lora.target_modules=all-linear",
        "model.max_seq_length=1024",
    ]
    if not toy:
        overrides += ["model.dtype=bfloat16", "lora.use_gradient_checkpointing=unsloth"]
    cfg = load_recipe("tiny-cpu", overrides)
    import torch

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    gen_times, after_load = _instrument(cuda)
    run_training(cfg, console=Console(quiet=True))
    rows = [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    times = [r["step_time"] for r in rows if r.get("stage") == "grpo" and "step_time" in r][1:]
    gens = gen_times[1 : 1 + len(times)]  # the first step (compile, warm-up) is left out of both
    train = [s - g for s, g in zip(times, gens, strict=False)] if len(gens) == len(times) else []
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    print("RESULT " + json.dumps({"backend": backend, "step_times": times, "generation_times": gens,
                                  "train_times": train, "after_load_gib": after_load.get("gib"),
                                  "peak_gib": peak}))  # fmt: skip


def _instrument(cuda: bool) -> tuple[list[float], dict]:
    """Time TRL's generation (``GRPOTrainer._generate_and_score_completions``, rollouts + rewards) apart from
    the rest of each step, and read the memory allocated once the model is loaded (at trainer construction).
    Patched on whatever class ``trl.GRPOTrainer`` is by now (Unsloth replaces it at import)."""
    import trl

    cls, gen_times, after_load = trl.GRPOTrainer, [], {}
    generate, init = cls._generate_and_score_completions, cls.__init__

    def timed(self, *a, **kw):
        t0 = time.perf_counter()
        try:
            return generate(self, *a, **kw)
        finally:
            gen_times.append(time.perf_counter() - t0)

    def noted(self, *a, **kw):
        if cuda:
            import torch

            after_load["gib"] = torch.cuda.memory_allocated() / 2**30
        init(self, *a, **kw)

    cls._generate_and_score_completions, cls.__init__ = timed, noted
    return gen_times, after_load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--toy", action="store_true", help="tiny config, HF only: a CPU smoke test")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--child-timeout", type=float, default=240.0, help="seconds per backend run")
    ap.add_argument("--wheels", default=".whl")
    ap.add_argument("--out", default=str(RESULTS / "gpu_backends.json"))
    ap.add_argument(
        "--child", nargs=5, metavar=("BACKEND", "MODEL", "DATA", "OUT", "TOY"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.child:
        backend, model_dir, data_dir, out, toy = args.child
        child(backend, model_dir, data_dir, out, args.steps, toy == "1")
        return

    t0 = time.perf_counter()
    setup = install_wheels(Path(args.wheels)) if not args.toy else "toy run: nothing installed"
    from sblite.backends import cuda_available, unsloth_installed
    from sblite.data.synthetic import write_prepared
    from sblite.models import build_tiny_tokenizer

    tmp = Path(tempfile.mkdtemp(prefix="sblite-gpu-"))
    model_dir = build_model(tmp / "model", args.toy)
    data_dir = write_prepared(tmp / "data", build_tiny_tokenizer(), n=64)
    backends = ["hf"] if args.toy else ["unsloth", "hf"]
    rows = []
    for backend in backends:
        if backend == "unsloth" and not (cuda_available() and unsloth_installed()):
            rows.append({"backend": backend, "skipped": "needs CUDA and unsloth"})
            continue
        cmd = [
            sys.executable,
            __file__,
            "--steps",
            str(args.steps),
            "--child",
            backend,
            str(model_dir),
            str(data_dir),
            str(tmp / f"run-{backend}"),
            "1" if args.toy else "0",
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.child_timeout)
        except subprocess.TimeoutExpired as err:  # recorded, and the JSON is still written
            tail = (err.stderr or b"")[-600:]
            rows.append({"backend": backend, "failed": f"timed out after {args.child_timeout} s: "
                         + (tail.decode(errors="replace") if isinstance(tail, bytes) else str(tail))})
            continue
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            rows.append({"backend": backend, "failed": (proc.stderr or proc.stdout)[-600:]})
            continue
        res = json.loads(line[len("RESULT ") :])
        for key, name in (("step_times", "median_step_s"), ("generation_times", "median_generation_s"),
                          ("train_times", "median_train_s")):
            values = sorted(res.get(key) or [])
            res[name] = values[len(values) // 2] if values else None
        rows.append(res)

    by = {r["backend"]: r for r in rows}
    speedup = None
    if by.get("unsloth", {}).get("median_step_s") and by.get("hf", {}).get("median_step_s"):
        speedup = by["hf"]["median_step_s"] / by["unsloth"]["median_step_s"]
    result = {
        "benchmark": "gpu_backends",
        "toy": args.toy,
        "setup": setup,
        "model": "toy" if args.toy else "Qwen2.5-1.5B sizes, random init",
        "steps": args.steps,
        "rows": rows,
        "hf_over_unsloth_step_time": speedup,
        "wall_s": time.perf_counter() - t0,
        "device": _device(),
    }
    write_json(args.out, result)
    print(f"\n{'backend':<10}{'step s':>9}{'gen s':>8}{'train s':>9}{'load GiB':>10}{'peak GiB':>10}  note")
    for r in rows:
        cells = [f"{r[k]:.3f}" if r.get(k) else "—" for k in ("median_step_s", "median_generation_s", "median_train_s")]
        mem = [f"{r[k]:.1f}" if r.get(k) else "—" for k in ("after_load_gib", "peak_gib")]
        note = r.get("skipped") or (r.get("failed", "")[:60].replace("\n", " ") if "failed" in r else "")
        print(f"{r['backend']:<10}{cells[0]:>9}{cells[1]:>8}{cells[2]:>9}{mem[0]:>10}{mem[1]:>10}  {note}")
    if speedup:
        print(f"Unsloth is {speedup:.2f}× faster per GRPO step than HF on this GPU")
    print(f"→ {args.out}")


def _device() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except Exception:  # noqa: BLE001
        return "unknown"


if __name__ == "__main__":
    main()

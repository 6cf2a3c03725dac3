"""GRPO step-time overhead of sblite vs a bare ``trl.GRPOTrainer`` script, same tiny model, data and reward.

    OMP_NUM_THREADS=1 python benchmarks/train_overhead.py [--steps 30] [--rounds 3]

Both sides train the same LoRA on ``builtin:tiny-random`` with the same GRPO settings and the same
``SelfBudgeterReward``; the bare side is what a user would write by hand with TRL. sblite adds its dataset
building, callbacks (rich progress, metrics.jsonl, zero-signal guard, reward metrics) and checkpoints at the
same interval. Rounds alternate (bare, sblite, bare, …) in one process so drift hits both; the figure is the
median over steps 2..N of TRL's own ``step_time``. Target: ratio ≤ 1.05. JSON → benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
RESULTS = Path(__file__).resolve().parent / "results"


def step_times(log_history: list[dict]) -> list[float]:
    return [h["step_time"] for h in log_history if "step_time" in h][1:]  # step 1 pays for warm-up


def run_bare(cfg, data_dir: Path, out: Path) -> list[float]:
    """What a user writes with TRL alone: model + LoRA + GRPOConfig + the reward, nothing else."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from sblite import protocol
    from sblite.models import resolve_model
    from sblite.rewards import SelfBudgeterReward

    path = resolve_model(cfg.model.name_or_path)
    tok = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(cfg.grpo.seed)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model = get_peft_model(
        model,
        LoraConfig(
            r=cfg.lora.r, lora_alpha=cfg.lora.alpha, target_modules="all-linear", task_type="CAUSAL_LM"
        ),
    )
    rows = [json.loads(line) for line in (data_dir / "grpo.jsonl").read_text().splitlines()]
    ds = Dataset.from_list(
        [
            {"prompt": protocol.build_messages(r["question"]), "answer": r["answer"], "b_max": r["b_max"]}
            for r in rows
        ]
    )
    g = cfg.grpo
    args = GRPOConfig(
        output_dir=str(out),
        use_cpu=True,
        bf16=False,
        learning_rate=g.learning_rate,
        max_steps=g.max_steps,
        per_device_train_batch_size=g.per_device_train_batch_size,
        num_generations=g.num_generations,
        max_completion_length=g.max_completion_length,
        temperature=g.temperature,
        beta=g.beta,
        loss_type=g.loss_type,
        mask_truncated_completions=g.mask_truncated_completions,
        logging_steps=1,
        save_strategy="steps",
        save_steps=g.save_steps,
        report_to="none",
        seed=g.seed,
        disable_tqdm=True,
        log_completions=False,
    )
    reward = SelfBudgeterReward(cfg.reward, tok)
    trainer = GRPOTrainer(
        model=model, reward_funcs=[reward], args=args, train_dataset=ds, processing_class=tok
    )
    trainer.train()
    return step_times(trainer.state.log_history)


def run_sblite(cfg, out: Path) -> list[float]:
    from rich.console import Console

    from sblite.train import run_training

    run_training(cfg.model_copy(update={"output_dir": str(out)}), console=Console(quiet=True))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return step_times([r for r in rows if r.get("stage") == "grpo"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS / "train_overhead.json"))
    args = ap.parse_args()

    from transformers import AutoTokenizer

    from sblite.config import load_recipe
    from sblite.data.synthetic import write_prepared
    from sblite.models import resolve_model

    tmp = Path(tempfile.mkdtemp(prefix="sblite-bench-"))
    tok = AutoTokenizer.from_pretrained(resolve_model("builtin:tiny-random"))
    data = write_prepared(tmp / "data", tok, n=32)
    cfg = load_recipe(
        "tiny-cpu",
        [
            f"grpo.max_steps={args.steps}",
            "stages=[grpo]",
            f"data.path={data}",
            "grpo.log_completions=false",
            "grpo.save_steps=10",
        ],
    )
    bare, sb = [], []
    t0 = time.perf_counter()
    for i in range(args.rounds):
        bare += run_bare(cfg, data, tmp / f"bare{i}")
        sb += run_sblite(cfg, tmp / f"sblite{i}")
        print(
            f"round {i + 1}: bare median {statistics.median(bare):.4f}s  sblite median {statistics.median(sb):.4f}s"
        )
    ratio = statistics.median(sb) / statistics.median(bare)
    result = {
        "benchmark": "train_overhead",
        "what": "GRPO step time, sblite run_training vs bare trl.GRPOTrainer, tiny-cpu recipe",
        "command": " ".join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "bare_median_s": statistics.median(bare),
        "sblite_median_s": statistics.median(sb),
        "bare_mean_s": statistics.fmean(bare),
        "sblite_mean_s": statistics.fmean(sb),
        "ratio_sblite_over_bare": ratio,
        "target": "<= 1.05",
        "wall_s": time.perf_counter() - t0,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "omp_threads": os.environ.get("OMP_NUM_THREADS"),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(
        f"sblite / bare GRPO step time: {ratio:.3f}× (bare {result['bare_median_s']:.4f}s, "
        f"sblite {result['sblite_median_s']:.4f}s, median over {len(bare)} steps each) → {args.out}"
    )


if __name__ == "__main__":
    main()

"""What sblite adds to a GRPO run: wall time per optimizer step of the whole ``sblite.train.run.run_training()``
against the whole bare ``trl.GRPOTrainer`` script a user would write, same model, data, reward and settings.

    OMP_NUM_THREADS=1 python benchmarks/train_overhead.py                      # 20 steps × 3 rounds, ~3 min
    OMP_NUM_THREADS=1 python benchmarks/train_overhead.py --steps 4 --rounds 1 --out /tmp/o.json  # a smoke run

Inputs: the first GSM8K-test questions (``../shared/data/gsm8k/test.jsonl``) whose prompt fits
``data.max_prompt_length`` in the tiny tokenizer (raised to 384: that tokenizer is near character-level), so
sblite drops none and both sides train on the same prompts; gold = the number after ``####``, ``b_max`` =
``--b-max``. Model and settings: the ``tiny-cpu`` recipe (``builtin:tiny-random``, LoRA, CPU), GRPO stage
only, ``--steps`` steps, a checkpoint every ``--save-steps``.

Each run is a fresh process (``--child``), so each side pays for its own imports and nothing is warm from the
other. Both children import torch, transformers, trl, peft and datasets before their clock starts; then

- **sblite** times ``load_recipe`` + ``run_training()``: recipe validation, data loading and checks, run
  dir, provenance, model + LoRA load, dataset building, callbacks (rich progress, metrics.jsonl, zero-signal
  guard, reward metrics), checkpoints, the final adapter save;
- **bare** times a plain TRL script: tokenizer + model + ``peft.get_peft_model``, the JSONL read into a
  ``datasets.Dataset`` of conversational prompts (system + user messages, rendered by TRL), ``GRPOConfig``
  with the same values, ``GRPOTrainer(reward_funcs=[SelfBudgeterReward])``, ``train()``, ``save_model()``.

Figures per run, each divided by the optimizer steps done (``trainer.state.global_step``): ``whole`` (the
timed span above, model load included), ``train_loop`` (only ``GRPOTrainer.train``, timed by the same
wrapper on both sides: per-step work, callbacks, logging and checkpoint saves, no load or final save) and
``process`` (the child's wall time seen from the parent, interpreter start and every import included).
Rounds alternate the order (bare first, then sblite first, …) so drift hits both; the ratio is sblite / bare
of the medians over rounds. The ratio of the minima (each side's least disturbed run) is kept beside it: on
a shared machine the spread between rounds can exceed the overhead. TRL's own ``step_time`` median is a
diagnostic only. Target: ``whole`` ratio ≤ 1.05.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from _common import RESULTS, SHARED, write_json  # noqa: E402

RECIPE = "tiny-cpu"
#: The tiny tokenizer is near character-level: the instruction alone is ~155 tokens, GSM8K prompts 200-630.
MAX_PROMPT = 384


def recipe_overrides(data_dir: Path, steps: int, save_steps: int) -> list[str]:
    return [
        "stages=[grpo]",
        f"data.path={data_dir}",
        f"data.max_prompt_length={MAX_PROMPT}",
        f"grpo.max_steps={steps}",
        f"grpo.save_steps={save_steps}",
    ]


# ------------------------------------------------------------------------------------------ the children

_TIMES: dict = {}


def _time_grpo_train() -> None:
    """Wrap ``trl.GRPOTrainer.train`` (the same wrapper on both sides) to time the training loop alone."""
    import trl

    original = trl.GRPOTrainer.train

    def train(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            _TIMES["train_loop_s"] = time.perf_counter() - t0
            _TIMES["steps"] = self.state.global_step
            _TIMES["trl_step_times"] = [h["step_time"] for h in self.state.log_history if "step_time" in h]

    trl.GRPOTrainer.train = train


def child_sblite(settings: dict, out: Path) -> None:
    from rich.console import Console

    from sblite.recipes import load_recipe
    from sblite.train.run import run_training

    cfg = load_recipe(RECIPE, settings["overrides"] + [f"output_dir={out}"])
    run_training(cfg, console=Console(quiet=True))


def child_bare(settings: dict, out: Path) -> None:
    """What a user writes with TRL alone. Values are plain literals handed over by the parent."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from sblite.rewards import RewardConfig, SelfBudgeterReward

    s = settings
    tok = AutoTokenizer.from_pretrained(s["model_path"])
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    torch.manual_seed(s["seed"])
    model = AutoModelForCausalLM.from_pretrained(s["model_path"], dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **s["lora"]))
    rows = [json.loads(line) for line in Path(s["grpo_jsonl"]).read_text(encoding="utf-8").splitlines()]
    instruction = s["system_prompt"]
    dataset = Dataset.from_list(
        [
            {
                "prompt": [
                    {"role": "system", "content": instruction},
                    {"role": "user", "content": r["question"]},
                ],
                "answer": r["answer"],
                "b_max": r["b_max"],
            }
            for r in rows
        ]
    )
    args = GRPOConfig(output_dir=str(out), **s["grpo_config"])
    reward = SelfBudgeterReward(RewardConfig(**s["reward"]), tok)
    trainer = GRPOTrainer(
        model=model, reward_funcs=[reward], args=args, train_dataset=dataset, processing_class=tok
    )
    trainer.train()
    trainer.save_model(str(out / "final"))


def child_main(side: str, settings_path: Path, out: Path) -> None:
    import datasets  # noqa: F401  (the heavy imports both sides share, before either clock starts)
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401

    settings = json.loads(settings_path.read_text(encoding="utf-8"))
    _time_grpo_train()
    t0 = time.perf_counter()
    (child_sblite if side == "sblite" else child_bare)(settings, out)
    whole = time.perf_counter() - t0
    print("RESULT " + json.dumps({"side": side, "whole_s": whole, **_TIMES}), flush=True)


# -------------------------------------------------------------------------------------------- the parent


def build_inputs(work: Path, n: int, b_max: int, tokenizer, cfg) -> Path:
    """GSM8K-test questions whose prompt fits ``data.max_prompt_length`` → a prepared-shaped dir."""
    from sblite import protocol

    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, line in enumerate((SHARED / "gsm8k" / "test.jsonl").open(encoding="utf-8")):
        rec = json.loads(line)
        messages = protocol.build_messages(rec["question"], instruction_in_user=cfg.model.instruction_in_user)
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        if protocol.count_tokens(text, tokenizer) > cfg.data.max_prompt_length:
            continue
        gold = rec["answer"].rsplit("####", 1)[1].strip().replace(",", "")
        rows.append({"id": f"gsm8k-test-{i}", "source": "gsm8k-test", "question": rec["question"],
                     "answer": gold, "b_max": b_max, "level": None, "difficulty": 0.5})  # fmt: skip
        if len(rows) == n:
            break
    if len(rows) < n:
        raise SystemExit(f"only {len(rows)} GSM8K-test prompts fit data.max_prompt_length; lower --prompts")
    lines = "".join(json.dumps(r) + "\n" for r in rows)
    (data / "grpo.jsonl").write_text(lines, encoding="utf-8")
    (data / "sft.jsonl").write_text("", encoding="utf-8")
    (data / "rejects.jsonl").write_text("", encoding="utf-8")
    (data / "report.json").write_text(json.dumps({"counts": {"read": len(rows), "kept": len(rows)}}))
    return data


def bare_settings(cfg, data: Path) -> dict:
    """The recipe's resolved values as plain literals: what the bare script's author would type."""
    import dataclasses

    import trl

    from sblite import protocol
    from sblite.models import resolve_model
    from sblite.rewards import RewardConfig

    g = cfg.grpo
    instruction = protocol.SYSTEM_PROMPT
    fields = {f.name for f in dataclasses.fields(trl.GRPOConfig)}
    # transformers >= 5 dropped warmup_ratio: a float warmup_steps < 1 is a ratio there
    warmup = (
        {"warmup_ratio": g.warmup_ratio} if "warmup_ratio" in fields else {"warmup_steps": g.warmup_ratio}
    )
    return {
        "model_path": str(resolve_model(cfg.model.name_or_path)),
        "seed": g.seed,
        "system_prompt": instruction,
        "grpo_jsonl": str(data / "grpo.jsonl"),
        "lora": {
            "r": cfg.lora.r,
            "lora_alpha": cfg.lora.alpha,
            "lora_dropout": cfg.lora.dropout,
            "target_modules": cfg.lora.target_modules,
            "bias": "none",
        },
        "reward": {k: getattr(cfg.reward, k) for k in RewardConfig.model_fields},
        "grpo_config": {
            "use_cpu": True,
            "bf16": False,
            "fp16": False,
            "learning_rate": g.learning_rate,
            "max_steps": g.max_steps,
            "per_device_train_batch_size": g.per_device_train_batch_size,
            "gradient_accumulation_steps": g.gradient_accumulation_steps,
            "lr_scheduler_type": g.lr_scheduler_type,
            "weight_decay": g.weight_decay,
            "max_grad_norm": g.max_grad_norm,
            "optim": g.optim,
            **warmup,
            "num_generations": g.num_generations,
            "max_completion_length": g.max_completion_length,
            "temperature": g.temperature,
            "top_p": g.top_p,
            "beta": g.beta,
            "epsilon": g.epsilon,
            "epsilon_high": g.epsilon_high if g.epsilon_high is not None else g.epsilon,
            "num_iterations": g.num_iterations,
            "loss_type": g.loss_type,
            "scale_rewards": g.scale_rewards,
            "mask_truncated_completions": g.mask_truncated_completions,
            "log_completions": g.log_completions,
            "num_completions_to_print": g.num_completions_to_print,
            "logging_steps": g.logging_steps,
            "save_strategy": "steps",
            "save_steps": g.save_steps,
            "save_total_limit": g.save_total_limit,
            "seed": g.seed,
            "data_seed": g.seed,
            "report_to": "none",
            "disable_tqdm": True,
        },
    }


def run_child(side: str, settings_path: Path, out: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", side, str(settings_path), str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    process_s = time.perf_counter() - t0
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        sys.exit(f"{side} run failed (exit {proc.returncode}):\n{(proc.stderr or proc.stdout)[-4000:]}")
    res = json.loads(line[len("RESULT ") :])
    steps = res["steps"]
    step_times = res.pop("trl_step_times")[1:]  # step 1 pays for warm-up
    return {
        **res,
        "process_s": process_s,
        "whole_per_step_s": res["whole_s"] / steps,
        "train_loop_per_step_s": res["train_loop_s"] / steps,
        "process_per_step_s": process_s / steps,
        "setup_s": res["whole_s"] - res["train_loop_s"],
        "trl_step_time_median_s": statistics.median(step_times) if step_times else None,
    }


FIGURES = (
    "whole_per_step_s",
    "train_loop_per_step_s",
    "process_per_step_s",
    "setup_s",
    "trl_step_time_median_s",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--save-steps", type=int, default=10)
    ap.add_argument("--prompts", type=int, default=32, help="GSM8K-test questions to train on")
    ap.add_argument(
        "--b-max", type=int, default=48, help="b_max of every prompt (≤ tiny-cpu's completion cap)"
    )
    ap.add_argument("--out", default=str(RESULTS / "train_overhead.json"))
    ap.add_argument("--child", nargs=3, metavar=("SIDE", "SETTINGS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        side, settings_path, out = args.child
        child_main(side, Path(settings_path), Path(out))
        return

    from transformers import AutoTokenizer

    from sblite.models import resolve_model
    from sblite.recipes import load_recipe

    tmp = Path(tempfile.mkdtemp(prefix="sblite-overhead-"))
    base = load_recipe(RECIPE, recipe_overrides(tmp / "data", args.steps, args.save_steps))
    tok = AutoTokenizer.from_pretrained(resolve_model(base.model.name_or_path))
    data = build_inputs(tmp, args.prompts, args.b_max, tok, base)
    settings = {**bare_settings(base, data), "overrides": recipe_overrides(data, args.steps, args.save_steps)}
    settings_path = tmp / "settings.json"
    settings_path.write_text(json.dumps(settings, indent=2), encoding="utf-8")

    runs: dict[str, list[dict]] = {"bare": [], "sblite": []}
    t0 = time.perf_counter()
    for i in range(args.rounds):
        order = ("bare", "sblite") if i % 2 == 0 else ("sblite", "bare")
        for side in order:
            runs[side].append(run_child(side, settings_path, tmp / f"{side}{i}"))
        b, s = runs["bare"][-1], runs["sblite"][-1]
        print(
            f"round {i + 1} ({order[0]} first): whole/step bare {b['whole_per_step_s']:.3f}s sblite "
            f"{s['whole_per_step_s']:.3f}s; train loop/step bare {b['train_loop_per_step_s']:.3f}s sblite "
            f"{s['train_loop_per_step_s']:.3f}s; process bare {b['process_s']:.1f}s sblite {s['process_s']:.1f}s",
            flush=True,
        )
    for side, rs in runs.items():
        steps = {r["steps"] for r in rs}
        if steps != {args.steps}:
            sys.exit(f"{side} ran {sorted(steps)} optimizer steps, expected {args.steps}: not comparable")

    med = {side: {f: statistics.median(r[f] for r in rs) for f in FIGURES if rs[0][f] is not None}
           for side, rs in runs.items()}  # fmt: skip
    low = {side: {f: min(r[f] for r in rs) for f in FIGURES if rs[0][f] is not None}
           for side, rs in runs.items()}  # fmt: skip

    def ratio_of(stat: dict) -> dict:
        return {
            f.removesuffix("_s"): stat["sblite"][f] / stat["bare"][f]
            for f in FIGURES
            if f in stat["sblite"] and f in stat["bare"] and f != "setup_s"
        }

    ratios = ratio_of(med)
    result = {
        "benchmark": "train_overhead",
        "what": "wall time per GRPO optimizer step: whole sblite run_training() vs a whole bare trl.GRPOTrainer "
        "script (same tiny-cpu model, GSM8K-test prompts, SelfBudgeterReward, steps and save interval)",
        "headline": "ratio_sblite_over_bare.whole_per_step",
        "ratio_sblite_over_bare": ratios,
        "median_over_rounds": med,
        "ratio_of_min_over_rounds": ratio_of(low),
        "min_over_rounds": low,
        "target": {"whole_per_step": "<= 1.05"},
        "steps_per_run": args.steps,
        "save_steps": args.save_steps,
        "rounds": args.rounds,
        "prompts": args.prompts,
        "b_max": args.b_max,
        "recipe": RECIPE,
        "recipe_overrides": recipe_overrides(Path("DATA"), args.steps, args.save_steps),
        "runs": runs,
        "bare_settings": {
            k: v for k, v in settings.items() if k not in ("overrides", "grpo_jsonl", "model_path")
        },
        "wall_s": time.perf_counter() - t0,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "omp_threads": os.environ.get("OMP_NUM_THREADS"),
        },
        "versions": _versions(),
    }
    write_json(args.out, result)
    w, tl = ratios["whole_per_step"], ratios["train_loop_per_step"]
    print(
        f"sblite / bare wall time per GRPO step: whole run {w:.3f}× (bare {med['bare']['whole_per_step_s']:.3f}s, "
        f"sblite {med['sblite']['whole_per_step_s']:.3f}s); training loop only {tl:.3f}× "
        f"(bare {med['bare']['train_loop_per_step_s']:.3f}s, sblite {med['sblite']['train_loop_per_step_s']:.3f}s); "
        f"whole process {ratios['process_per_step']:.3f}×; medians over {args.rounds} rounds of {args.steps} steps "
        f"→ {args.out}"
    )


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("torch", "transformers", "trl", "peft", "datasets"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


if __name__ == "__main__":
    main()

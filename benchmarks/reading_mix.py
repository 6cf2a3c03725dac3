"""Does a budget-reading mix make a pre-filled budget set the length? A plain PyTorch loop, not TRL.

    OMP_NUM_THREADS=2 python benchmarks/reading_mix.py --reading-questions 40 --draws 20   # ~25 min here
    OMP_NUM_THREADS=2 python benchmarks/reading_mix.py --quick                               # checks the script

``cold_start.py``'s ``reading-draws`` variant (sblite's SFT through TRL's ``SFTTrainer``, group_by_length) lost
all budget reading (first-token TV 0.026, every pre-fill → 24.5 tokens). This script trains the *same kinds of
rows* with a hand-written LoRA loop, to tell the rows from the trainer:

- full rows: ``--full-questions`` bundled arith questions, each worked solution at the five renderings
  ``answer … explained`` as pre-filled rows (budget = its true length, given as context) plus the reference
  rendering as a self-mode row: ``protocol.encode_training_example``, exactly what ``data.renderings`` trains;
- budget-reading rows (``protocol.encode_budget_reading``, K=3 solution tokens, no prompt): every rendering of
  ``--reading-questions`` questions at its own length, plus ``--draws`` per question at budgets drawn
  log-uniformly over [½ × its shortest, 1.5 × its longest] reading into the rendering nearest in ratio (what
  ``sft.budget_reading_tokens`` + ``sft.budget_reading_samples`` build);
- each step is one batch of 8 drawn from the full rows with probability ``--mix`` (else from the reading rows);
  AdamW, lr 1e-3 decaying linearly to 0, LoRA r=16 on every linear layer, seed 0.

Then greedy decoding (sblite's decoder) of ``--test`` arith-test questions with each ``--budgets`` value
pre-filled, and in self mode: mean solution tokens (``protocol.count_solution_tokens``), share within ±50% of
the forced budget, accuracy; the slope of mean length on the budget. JSON + markdown →
benchmarks/results/reading_mix.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, RESULTS, write_json  # noqa: E402

LEVELS = ("answer", "reference", "steps", "stated", "explained")
K = 3


def build_rows(tok, n_full: int, n_read: int, draws_per: int, rng: random.Random):
    from sblite import protocol
    from sblite.data.labels import budget_for
    from sblite.data.synthetic import render_solution

    rows = [json.loads(x) for x in (REPO / "data" / "arith" / "train.jsonl").read_text().splitlines()]
    random.Random(0).shuffle(rows)

    def rend(r):
        return [(v, *budget_for(render_solution(r, v), tok)) for v in LEVELS]

    full = []
    for r in rows[:n_full]:
        for v, _, c in rend(r):
            full.append(protocol.encode_training_example(tok, r["question"], c, prefilled=True, instruction_in_user=True))
            if v == "reference":
                full.append(protocol.encode_training_example(tok, r["question"], c, instruction_in_user=True))
    reading = []
    for r in rows[:n_read]:
        rs = rend(r)
        reading += [protocol.encode_budget_reading(tok, c, K) for _, _, c in rs]
        lo, hi = min(b for _, b, _ in rs) / 2, 1.5 * max(b for _, b, _ in rs)
        for _ in range(draws_per):
            n = max(1, round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))
            _, _, c = min(rs, key=lambda x: abs(math.log(n / x[1])))
            reading.append(protocol.encode_budget_reading(tok, protocol.with_budget(c, n), K))
    return full, reading


def train(model, tok, full, reading, *, steps: int, mix: float, rng: random.Random, log: list) -> object:
    import torch
    from peft import LoraConfig, get_peft_model

    model.train()
    pm = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)
    bs, t0 = 8, time.time()
    for step in range(steps):
        src = full if rng.random() < mix else reading
        batch = [src[i] for i in rng.sample(range(len(src)), bs)]
        width = max(len(i) for i, _ in batch)
        ids = torch.full((bs, width), tok.pad_token_id or 0)
        labels = torch.full((bs, width), -100)
        att = torch.zeros((bs, width), dtype=torch.long)
        for j, (i, m) in enumerate(batch):
            ids[j, : len(i)] = torch.tensor(i)
            att[j, : len(i)] = 1
            labels[j, : len(i)] = torch.tensor([t if mm else -100 for t, mm in zip(i, m, strict=True)])
        loss = pm(input_ids=ids, attention_mask=att, labels=labels).loss
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
        if step % 50 == 0 or step == steps - 1:
            kind = "full" if src is full else "reading"
            log.append({"step": step, "batch": kind, "loss": loss.item(), "seconds": time.time() - t0})
            print(f"step {step} {kind} loss {loss.item():.3f} {time.time() - t0:.0f}s", flush=True)
    pm.eval()
    merged = pm.merge_and_unload()
    merged.eval()
    return merged


def evaluate(model, tok, budgets: list[int], n_test: int, max_new: int) -> dict:
    from sblite import protocol
    from sblite.eval.metrics import ols
    from sblite.generate.hf import generate_batch

    qs = [json.loads(x) for x in (REPO / "data" / "arith" / "test.jsonl").read_text().splitlines()][:n_test]
    kw = dict(max_new_tokens=max_new, temperature=0.0, batch_size=16, stop_strings=[protocol.SOLUTION_CLOSE])
    sweep = {}
    for b in budgets:
        gens = generate_batch(model, tok, [protocol.render_prompt(tok, q["question"], budget=b, instruction_in_user=True)
                                           for q in qs], **kw)  # fmt: skip
        lens = [protocol.count_solution_tokens(g[0].token_ids, tok, forced_budget=b) for g in gens]
        right = [protocol.parse_completion(protocol.prefill(b) + g[0].text).answer == q["answer"] for g, q in zip(gens, qs, strict=True)]
        sweep[b] = {"mean_tokens": sum(lens) / len(lens), "within_50": sum(0.5 * b <= n <= 1.5 * b for n in lens) / len(lens),
                    "accuracy": sum(right) / len(qs), "first_text": gens[0][0].text[:120]}  # fmt: skip
        print(b, json.dumps(sweep[b]), flush=True)
    xs = [float(b) for b in budgets]
    slope, _, r2 = ols(xs, [sweep[b]["mean_tokens"] for b in budgets])
    gens = generate_batch(model, tok, [protocol.render_prompt(tok, q["question"], instruction_in_user=True) for q in qs],
                          **kw)  # fmt: skip
    parsed = [protocol.parse_completion(g[0].text) for g in gens]
    pairs = [(p.budget, protocol.count_solution_tokens(g[0].token_ids, tok)) for p, g in zip(parsed, gens, strict=True)]
    kept = [(b, n) for b, n in pairs if b and n is not None]
    return {
        "sweep": {str(b): v for b, v in sweep.items()},
        "slope": slope, "r2": r2,
        "within_50": sum(v["within_50"] for v in sweep.values()) / len(sweep),
        "accuracy": sum(v["accuracy"] for v in sweep.values()) / len(sweep),
        "self": {"budget_tokens": pairs, "accuracy": sum(p.answer == q["answer"] for p, q in zip(parsed, qs, strict=True)) / len(qs),
                 "within_50": sum(0.5 * b <= n <= 1.5 * b for b, n in kept) / max(1, len(kept)),
                 "format": len(kept) / len(qs)},
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--full-questions", type=int, default=40)
    ap.add_argument("--reading-questions", type=int, default=300)
    ap.add_argument("--draws", type=int, default=5, help="budget-reading rows at drawn budgets per question")
    ap.add_argument("--mix", type=float, default=0.3, help="share of steps that train a batch of full rows")
    ap.add_argument("--budgets", default="8,16,32,64,128")
    ap.add_argument("--test", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=192)
    ap.add_argument("--quick", action="store_true", help="4 steps, 2 questions each, 2 test questions")
    ap.add_argument("--out", default=str(RESULTS / "reading_mix"))
    args = ap.parse_args()
    if args.quick:
        args.steps, args.full_questions, args.reading_questions, args.test, args.max_new_tokens = 4, 2, 2, 2, 16
    import torch

    from sblite.generate.loading import load_model, resolve_model_spec

    torch.manual_seed(0)
    model, tok = load_model(resolve_model_spec("builtin:smollm2-135m"), dtype="float32", device="cpu")
    rng = random.Random(0)
    full, reading = build_rows(tok, args.full_questions, args.reading_questions, args.draws, rng)
    print(f"{len(full)} full rows, {len(reading)} budget-reading rows", flush=True)
    t0, log = time.time(), []
    model = train(model, tok, full, reading, steps=args.steps, mix=args.mix, rng=rng, log=log)
    t_train = time.time() - t0
    budgets = [int(b) for b in args.budgets.split(",")]
    res = evaluate(model, tok, budgets, args.test, args.max_new_tokens)
    out = Path(args.out)
    write_json(out.with_suffix(".json"), {
        "benchmark": "reading_mix",
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "rows": {"full": len(full), "reading": len(reading)},
        "train_log": log, "seconds": {"train": t_train, "total": time.time() - t0},
        **res,
    })  # fmt: skip
    s = res["self"]
    lines = [
        "# Budget-reading mix in a plain LoRA loop: does a pre-filled budget set the length?",
        "",
        f"SmolLM2-135M-Instruct; {len(full)} full rows ({args.full_questions} questions × 5 renderings + self row), "
        f"{len(reading)} budget-reading rows ({args.reading_questions} questions, {args.draws} drawn budgets each); "
        f"{args.steps} steps of 8, {args.mix:.0%} of them full-row batches; greedy on {args.test} arith-test questions. "
        f"Training {t_train / 60:.0f} min.",
        "",
        "| pre-filled budget | " + " | ".join(str(b) for b in budgets) + " | slope (R²) | ±50% | accuracy |",
        "| --- | " + " | ".join("---:" for _ in budgets) + " | ---: | ---: | ---: |",
        "| mean solution tokens | " + " | ".join(f"{res['sweep'][str(b)]['mean_tokens']:.1f}" for b in budgets)
        + f" | {res['slope']:.3f} ({res['r2']:.2f}) | {res['within_50']:.0%} | {res['accuracy']:.0%} |",
        "",
        f"Self mode: accuracy {s['accuracy']:.0%}, format {s['format']:.0%}, within ±50% of its own budget "
        f"{s['within_50']:.0%}.",
    ]  # fmt: skip
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Reproduce SelfBudgeter on this CPU: SmolLM2-135M on graded arithmetic, the paper's recipe against sblite's.

    OMP_NUM_THREADS=2 python benchmarks/reproduce_cpu.py --train-questions 24 --eval-questions 40 \
        --sweep-questions 16 --held-out-questions 20 --grpo-steps 16 --guard off  # the table: results/reproduce_cpu.md says how long
    OMP_NUM_THREADS=2 python benchmarks/reproduce_cpu.py --quick         # minutes: a smoke test of the script

``--rows ours,no-stating`` trains only the named rows (the base rows always run): a second seed of a few rows
without the whole table. ``--reading-samples`` defaults to 30 (results/reproduce_seeds_rs30.md: pre-fill within
±50% 86% / 84% at seeds 0 / 1, against 82% / 62% with 10), ``--reading-prompt`` is on (``--no-reading-prompt``
turns it off; results/reproduce_seeds_both_fixes.md: slope 0.80 / 0.81 at seeds 0 / 1, against 0.64 / 0.94),
``--share-prompts`` is on (every SFT on prefix-shared packed batches, budget rows ordered by question: the table
from scratch ≈79 min instead of ≈160; ``--no-share-prompts`` gives the padded batches of
results/reproduce_cpu_before_sharing.md). The work dir caches by row name, not by arguments: a changed switch
needs a fresh ``--work``.

Rows (each a library call of the CLI's own functions; the work dir caches every finished step):

- ``base (plain prompt)`` / ``base (brief prompt)``: the untrained model, and what asking for brevity buys;
- ``paper SFT``: the paper's cold start — the base model sampled (T=0.8) under its plain instruction, one
  correct answer per question (``--styles plain --targets shortest``), budget = its token length;
- ``our SFT``: sampled under plain *and* brief instructions, every distinct correct answer a row
  (``--targets all``), plus each worked solution re-said at ``--levels`` as pre-filled rows
  (``data.renderings``), the renderings ``--self-renderings`` written as self rows instead
  (``data.self_renderings``: the budget the model states for itself is that rendering's length for the
  question it reads), ``--stating-rows`` copies of each self row cut after its budget with loss on the budget
  only (``sft.budget_stating_rows``), those stating rows also for ``--stating-questions`` more bundled
  questions that are neither sampled nor rendered otherwise (``data.stating_questions``), and the budget-reading rows of ``sft.budget_reading_tokens``
  (``--reading-tokens``) at ``sft.budget_reading_samples`` drawn budgets per question (``--reading-samples``),
  each with its question's prompt under ``--reading-prompt`` (``sft.budget_reading_prompt``);
- ``+ GRPO``: budget-guided GRPO from our SFT adapter (``--grpo-steps``, the recipe's α schedule);
- ``+ pre-filled GRPO``: the same with ``grpo.prefill_fraction`` of the prompts carrying a forced budget;
- ablations, each our SFT without one switch: − stating rows (and so the stating questions, which train only as
  stating rows), − stating questions, − self rows (and so both), − renderings (and so all three), − reading
  rows, − reading prompt (the reading rows without their question); with
  ``--paper-ablations`` also the paper's GRPO ablations (no budget penalty, fixed α).

Every trained row trains in ``--dtype`` (``model.dtype``; bfloat16 by default: ``benchmarks/results/sft_dtype_ab.md``
compares it with float32 on our SFT). Preload tcmalloc
(``LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4``, recorded in the JSON's ``command_env``):
``benchmarks/cpu_train_speed.py`` measures both. With both, the first command above gives
``benchmarks/results/reproduce_cpu.{json,md}`` (our SFT 448k tokens, ≈23 min of the call). Keep the ``checked``
level: a pre-filled length stops at the longest rendering taught, so without it 128 gets ≈90 tokens.

Every trained row is evaluated greedily on ``arith-test`` in self mode (compression against the plain base on
the same questions), with a pre-filled budget sweep (``--budgets``), and in self mode on the held-out sets
``--held-out`` (GSM8K-test, SVAMP from ``../shared/data``; skipped with a note when absent). Each trained row's
sweep (which also holds the brief base's mean length on the sweep's questions, rounded, unless
``--no-brief-budget``: "beats brief" compares there, as the demo does) is repeated under ``--guard``
(``eval.budget_guard``, default ``band``): the budget enforced at decode time. The frontier plot puts the base
models as points and each trained row's sweep as a curve. Results: benchmarks/results/reproduce_cpu.{json,md}
and ``reproduce_cpu/*.png``, with the exact command and seeds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, prepare_arith_samples, stage_timer, write_json  # noqa: E402

TARGETS = {
    "prefill_slope": "0.8 - 1.2 (with R²)",
    "prefill_adherence_50": ">= 0.80",
    "adherence_50": ">= 0.90 (own budget)",
    "spearman_budget_level": ">= 0.6",
    "compression": ">= 0.50 at no accuracy loss (accuracy_delta >= 0)",
    "beats_brief": "accuracy at the pre-fill nearest the brief base's length >= the brief base's, on the sweep's questions",
    "grpo_vs_sft": "accuracy after GRPO >= after our SFT",
}


@dataclass(frozen=True)
class Row:
    """One trained model: which prepared data, which recipe overrides, and (GRPO) which SFT row it starts from."""

    key: str  # what ``--rows`` names it by
    name: str
    data: str  # key of the prepared directories
    overrides: tuple[str, ...] = ()
    start_from: str | None = None  # a GRPO row's SFT row


def share_prompts(args, row: Row) -> tuple[str, ...]:
    """``--share-prompts``: an SFT row's batches packed with their shared prompts computed once
    (``sft.pack_shared_prompts``, exact), and where it has budget rows under group_by_length, those ordered by
    question so batches share prompts (``sft.budget_rows_by_question``, which changes the batches)."""
    if not args.share_prompts or "stages=[sft]" not in row.overrides:
        return ()
    grouped = "sft.trl_args.train_sampling_strategy=group_by_length" in row.overrides
    return ("sft.pack_shared_prompts=true", *(["sft.budget_rows_by_question=true"] if grouped else []))


def rows_for(args) -> list[Row]:
    """The trained rows. ``our SFT`` is every cold-start switch at once (renderings, reading rows, and with
    ``--self-renderings`` self rows, with ``--stating-rows`` stating rows); each ablation drops one switch (a
    switch that needs a dropped one goes with it: stating rows need self rows, self rows need renderings)."""
    unprompted = (f"sft.budget_reading_tokens={args.reading_tokens}",
                  f"sft.budget_reading_samples={args.reading_samples}", "sft.trl_args.train_sampling_strategy=group_by_length")
    reading = (*unprompted, *(["sft.budget_reading_prompt=true"] if args.reading_prompt else []))
    stating = (f"sft.budget_stating_rows={args.stating_rows}",) if args.self_renderings and args.stating_rows else ()
    prefill = (f"grpo.prefill_fraction={args.prefill_fraction}", f"grpo.prefill_range=[{args.prefill_range}]")
    ours = "ours-stating" if args.self_renderings and args.stating_questions else "ours-self" if args.self_renderings \
        else "ours"
    rows = [
        Row("paper", "paper SFT", "paper", ("stages=[sft]",)),
        Row("ours", "our SFT", ours, ("stages=[sft]", *reading, *stating)),
        Row("grpo", "+ GRPO", ours, ("stages=[grpo]",), start_from="our SFT"),
        Row("prefill-grpo", "+ pre-filled GRPO", ours, ("stages=[grpo]", *prefill), start_from="our SFT"),
        # stating questions train only as stating rows: without those they go too
        *([Row("no-stating", "ablation: our SFT − stating rows", "ours-self", ("stages=[sft]", *reading))]
          if stating else []),
        *([Row("no-stating-questions", "ablation: our SFT − stating questions", "ours-self",
               ("stages=[sft]", *reading, *stating))] if ours == "ours-stating" else []),
        *([Row("no-self", "ablation: our SFT − self rows", "ours", ("stages=[sft]", *reading))]
          if args.self_renderings else []),
        Row("no-renderings", "ablation: our SFT − renderings", "sampled", ("stages=[sft]", *reading)),
        Row("no-reading", "ablation: our SFT − reading rows", ours, ("stages=[sft]", *stating)),
        *([Row("no-prompt", "ablation: our SFT − reading prompt", ours,
               ("stages=[sft]", *unprompted, *stating))] if args.reading_prompt else []),
    ]  # fmt: skip
    if args.paper_ablations:
        rows += [
            Row("no-penalty", "ablation: + GRPO, no budget penalty", ours, ("stages=[grpo]", "reward.r_b=0"),
                "our SFT"),
            Row("fixed-alpha", "ablation: + GRPO, fixed α", ours, ("stages=[grpo]", "reward.alpha_schedule=constant",
                f"reward.alpha_start={args.fixed_alpha}", f"reward.alpha_end={args.fixed_alpha}"), "our SFT"),
        ]  # fmt: skip
    return select_rows(rows, args.rows)


def select_rows(rows: list[Row], keys: str) -> list[Row]:
    """The rows ``--rows`` names (comma-separated keys; ``all``: every row), in table order. An unknown key, or a
    GRPO row without the SFT row it starts from, is refused: a partial table is asked for, never made up.

    >>> rows = [Row("ours", "our SFT", "d"), Row("grpo", "+ GRPO", "d", start_from="our SFT")]
    >>> [r.key for r in select_rows(rows, "grpo,ours")], [r.key for r in select_rows(rows, "all")]
    (['ours', 'grpo'], ['ours', 'grpo'])
    """
    if keys == "all":
        return rows
    want = [k.strip() for k in keys.split(",") if k.strip()]
    known = {r.key: r for r in rows}
    unknown = [k for k in want if k not in known]
    if unknown or not want:
        raise SystemExit(f"--rows {keys!r}: unknown {', '.join(unknown) or '(none given)'}; "
                         f"choose from all, {', '.join(known)}")  # fmt: skip
    chosen = [r for r in rows if r.key in want]
    names = {r.name for r in chosen}
    orphans = [r.key for r in chosen if r.start_from and r.start_from not in names]
    if orphans:
        need = {r.key for r in rows if r.name in {known[k].start_from for k in orphans}}
        raise SystemExit(f"--rows {keys!r}: {', '.join(orphans)} start from {', '.join(sorted(need))}; add it")
    return chosen


def on_sweep_questions(work: Path, sweep_name: str, name: str) -> dict:
    """Eval ``name``'s summary on the sweep's own questions (the first ``--sweep-questions`` of the eval's), from
    the two evals' records: "beats brief" and the frontier's points compare on the same questions, not a
    16-question sweep against a base on all 40."""
    from sblite.eval.metrics import summary_on

    sweep = eval_records(work, "arith-test", sweep_name)
    return summary_on(eval_records(work, "arith-test", name), {r["qid"] for r in sweep})


def trained_size(run: Path) -> dict:
    """A run's last logged optimizer step and trained tokens (TRL's ``num_tokens``), from its metrics.jsonl."""
    last: dict = {}
    for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if "num_tokens" in rec:
            last = rec
    return {"steps": last.get("step"), "tokens": last.get("num_tokens")}


def eval_dir(work: Path, dataset: str, name: str) -> Path:
    """Where the eval called ``name`` on ``dataset`` writes (and, as the work dir's cache, is found again)."""
    return work / "eval" / _slug(f"{dataset}-{name}")


def eval_records(work: Path, dataset: str, name: str) -> list[dict]:
    """The per-answer records of the finished eval called ``name`` on ``dataset`` (its results.json)."""
    path = eval_dir(work, dataset, name) / "results.json"
    return json.loads(path.read_text(encoding="utf-8"))["records"]


def _slug(name: str) -> str:
    """A row name as a directory name: "+ pre-filled GRPO" → "plus_pre-filled_GRPO"."""
    return name.replace(" ", "_").replace(":", "").replace("−", "no").replace("+", "plus")


def _finished_eval(opts) -> dict | None:
    """The summary of an earlier ``run_eval`` with exactly these options, or None."""
    from dataclasses import asdict, fields

    path = Path(opts.out) / "results.json"
    if not path.is_file():
        return None
    done = json.loads(path.read_text(encoding="utf-8"))
    want = {k: v for k, v in asdict(opts).items() if k not in ("model", "dataset", "mode", "sources")}
    # an option the earlier run did not have yet had its default then
    got = {f.name: done["options"].get(f.name, f.default) for f in fields(opts) if f.name in want}
    # the out dir is named after the row, whose run dir is fixed: dataset, mode and options decide
    return done["summary"] if (done["dataset"], done["mode"], got) == (opts.dataset, opts.mode, want) else None


def _n(x, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/sblite-reproduce")
    ap.add_argument("--train-questions", type=int, default=120)
    ap.add_argument("--eval-questions", type=int, default=60)
    ap.add_argument("--sweep-questions", type=int, default=30)
    ap.add_argument("--held-out", default="gsm8k-test,svamp", help="self-mode evals beyond arith-test ('' skips)")
    ap.add_argument("--held-out-questions", type=int, default=30)
    ap.add_argument("-k", type=int, default=4)
    ap.add_argument("--sft-epochs", type=float, default=3.0)
    ap.add_argument("--grpo-steps", type=int, default=24)
    ap.add_argument("--levels", default="answer,short,reference,steps,stated,explained,checked",
                    help="our SFT's data.renderings")
    ap.add_argument("--self-renderings", default="reference",
                    help="our SFT's data.self_renderings: these renderings as self rows ('' for none, which also "
                         "drops the stating rows)")
    ap.add_argument("--stating-rows", type=int, default=2, help="our SFT's sft.budget_stating_rows (0: none)")
    ap.add_argument("--stating-questions", type=int, default=0,
                    help="our SFT's data.stating_questions: that many more bundled questions (after the first "
                         "--train-questions) as budget-stating rows only (0: none; results/reproduce_cpu_stating.md "
                         "uses 96)")
    ap.add_argument("--reading-tokens", type=int, default=3, help="our SFT's sft.budget_reading_tokens")
    ap.add_argument("--reading-samples", type=int, default=30, help="our SFT's sft.budget_reading_samples")
    ap.add_argument("--share-prompts", action=argparse.BooleanOptionalAction, default=True,
                    help="every SFT row on prefix-shared packed batches (sft.pack_shared_prompts), its budget rows "
                         "ordered by question (sft.budget_rows_by_question): results/sft_packing.json "
                         "(--no-share-prompts: TRL's padded batches in random order, as reproduce_cpu_before_sharing)")
    ap.add_argument("--reading-prompt", action=argparse.BooleanOptionalAction, default=True,
                    help="our SFT's sft.budget_reading_prompt: each budget-reading row carries its question "
                         "(--no-reading-prompt: the tags and K tokens alone, results/reproduce_seeds_rs30.md)")
    ap.add_argument("--prefill-fraction", type=float, default=0.5)
    ap.add_argument("--prefill-range", default="8,160")
    ap.add_argument("--paper-ablations", action="store_true", help="also GRPO without budget penalty / fixed α")
    ap.add_argument("--fixed-alpha", type=float, default=1.0)
    ap.add_argument("--budgets", default="8,16,32,64,128")
    ap.add_argument("--no-brief-budget", dest="brief_budget", action="store_false",
                    help="do not add the brief base's mean length on the sweep's questions (rounded) to the "
                         "sweep's --budgets")
    ap.add_argument("--guard", default="band", choices=["off", "cap", "band"],
                    help="also sweep each trained row with this eval.budget_guard (off: no guarded sweeps)")
    ap.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"],
                    help="model.dtype of every trained row (bfloat16: bf16 autocast where the CPU has native bf16, "
                         "benchmarks/results/cpu_train_speed.json; evaluation stays float32)")
    ap.add_argument("--max-new-tokens", type=int, default=192)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", default="all",
                    help="the trained rows, comma-separated: paper, ours, grpo, prefill-grpo, no-stating, no-self, "
                         "no-renderings, no-reading, no-prompt (with --paper-ablations also no-penalty, fixed-alpha); the "
                         "base rows always run")
    ap.add_argument("--quick", action="store_true", help="tiny settings: checks the script, not the method")
    ap.add_argument("--out", default=str(RESULTS / "reproduce_cpu"))
    return ap


def main() -> None:
    args = build_parser().parse_args()
    trained = rows_for(args)  # an unknown --rows key fails here, before minutes of sampling
    if args.quick:
        args.train_questions, args.eval_questions, args.sweep_questions, args.held_out_questions = 16, 6, 4, 4
        args.grpo_steps, args.sft_epochs, args.max_new_tokens, args.k = 1, 1.0, 64, 2

    from rich.console import Console

    from sblite.data.readers import resolve_source
    from sblite.eval import metrics
    from sblite.eval.plots import plot_frontier
    from sblite.eval.run import EvalOptions, markdown_table, run_eval
    from sblite.recipes import load_recipe
    from sblite.train.run import run_training

    console = Console()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    timed, timings = stage_timer(console)
    reused: list[str] = []  # steps a finished earlier call left in the work dir (their time is not in timings_s)
    model = "builtin:smollm2-135m"
    levels = tuple(args.levels.split(","))

    # --- data: one sampling run (plain + brief) feeds all three prepared dirs through prepare's sample cache
    data_opts = {
        "ours": dict(styles=("plain", "brief"), targets="all", renderings=levels),
        **({"ours-self": dict(styles=("plain", "brief"), targets="all", renderings=levels,
                              self_renderings=tuple(args.self_renderings.split(",")))} if args.self_renderings else {}),
        **({"ours-stating": dict(styles=("plain", "brief"), targets="all", renderings=levels,
                                 self_renderings=tuple(args.self_renderings.split(",")),
                                 stating_questions=args.stating_questions)}
           if args.self_renderings and args.stating_questions else {}),
        "sampled": dict(styles=("plain", "brief"), targets="all"),
        "paper": dict(styles=("plain",), targets="shortest"),
    }
    prepared, reports = {}, {}
    for key, extra in data_opts.items():
        prepared[key] = work / f"prepared-{key}"
        if key != "ours" and not (prepared[key] / ".cache").exists() and (prepared["ours"] / ".cache").is_dir():
            shutil.copytree(prepared["ours"] / ".cache", prepared[key] / ".cache")
        reports[key] = timed(f"prepare {key}", lambda k=key, e=extra: prepare_arith_samples(
            prepared[k], limit=args.train_questions, k=args.k, max_new_tokens=args.max_new_tokens, seed=args.seed,
            console=console, force=True, **e)).report  # fmt: skip

    # --- training
    runs: dict[str, Path] = {}
    for row in trained:
        run = work / _slug(row.name)
        stage = "grpo" if "stages=[grpo]" in row.overrides else "sft"
        extra = [f"model.adapter={runs[row.start_from] / 'sft'}"] if row.start_from else []
        if (run / stage / "adapter_config.json").is_file():  # finished earlier: the work dir is a cache
            reused.append(f"train {row.name}")
        else:
            cfg = load_recipe("smollm2-135m", [
                f"data.path={prepared[row.data]}", f"output_dir={run}", f"sft.num_train_epochs={args.sft_epochs}",
                f"grpo.max_steps={args.grpo_steps}", f"sft.seed={args.seed}", f"grpo.seed={args.seed}",
                "grpo.num_completions_to_print=0", f"model.dtype={args.dtype}", *row.overrides, *extra,
                *share_prompts(args, row)])  # fmt: skip
            timed(f"train {row.name}", lambda c=cfg, r=run: run_training(c, resume=r.exists(), console=console))
        runs[row.name] = run

    # --- evaluation
    budgets = [int(b) for b in args.budgets.split(",")]
    held_out = [d for d in args.held_out.split(",") if d]
    missing = {}
    for d in held_out:
        if resolve_source(d).path is None:  # not in ../shared/data (or $SBLITE_DATA): the hub is not reachable here
            missing[d] = "no local copy (../shared/data or $SBLITE_DATA)"
            console.print(f"[yellow]held-out {d} skipped: {missing[d]}")
    held_out = [d for d in held_out if d not in missing]
    common = dict(max_new_tokens=args.max_new_tokens, batch_size=16, seed=args.seed, instruction_in_user=True)

    def ev(name: str, dataset: str, limit: int, **kw):
        opts = EvalOptions(dataset=dataset, limit=limit, out=str(eval_dir(work, dataset, name)),
                           **common, **kw)  # fmt: skip
        done = _finished_eval(opts)
        if done is not None:  # the same eval of the same (cached) run finished earlier: the work dir is a cache
            reused.append(f"eval {name} on {dataset}")
            console.print(f"eval {name} on {dataset}: cached ({opts.out}/results.json)")
            return done
        return timed(f"eval {name} on {dataset}", lambda: run_eval(opts, console))["summary"]

    datasets = {"arith-test": args.eval_questions, **{d: args.held_out_questions for d in held_out}}
    table: dict[str, dict[str, dict]] = {d: {} for d in datasets}
    baselines: dict[str, str] = {}
    for d, n in datasets.items():
        table[d]["base (plain prompt)"] = ev("base", d, n, model=model, mode="none")
        baselines[d] = str(eval_dir(work, d, "base") / "results.json")
        table[d]["base (brief prompt)"] = ev("base brief", d, n, model=model, mode="none", style="brief",
                                             baseline=baselines[d])  # fmt: skip
        for name, run in runs.items():
            table[d][name] = ev(name, d, n, model=str(run), mode="self", baseline=baselines[d])
    if args.brief_budget:  # "beats brief" compares at a pre-fill near the brief base's own length: sweep it too
        brief_records = eval_records(work, "arith-test", "base brief")
        budgets = sorted({*budgets, metrics.length_budget(brief_records, args.sweep_questions)})
    sweeps = {name: ev(f"{name} sweep", "arith-test", args.sweep_questions, model=str(run), mode="prefill",
                       budgets=budgets, baseline=baselines["arith-test"]) for name, run in runs.items()}  # fmt: skip
    guarded = {} if args.guard == "off" else {
        f"{name} · guard {args.guard}": ev(f"{name} sweep guard {args.guard}", "arith-test", args.sweep_questions,
                                           model=str(run), mode="prefill", budgets=budgets, budget_guard=args.guard,
                                           baseline=baselines["arith-test"])
        for name, run in runs.items()}  # fmt: skip

    # --- targets, per trained row
    arith = table["arith-test"]
    # every sweep runs on the same questions
    on_sweep = {n: on_sweep_questions(work, f"{trained[0].name} sweep", e)
                for n, e in (("base (plain prompt)", "base"), ("base (brief prompt)", "base brief"))}  # fmt: skip
    brief = on_sweep["base (brief prompt)"]
    reached = {}
    for name in [*runs, *guarded]:
        row = name.split(" · guard ")[0]
        o, s = arith[row]["overall"], {**sweeps, **guarded}[name]["overall"]
        reached[name] = {
            "prefill_slope": s["slope"], "prefill_r2": s["r2"], "prefill_adherence_50": s["adherence_50"],
            "adherence_50": o["adherence_50"], "spearman_budget_level": o["spearman_budget_level"],
            "compression": o.get("compression"), "accuracy_delta": o.get("accuracy_delta"),
            "beats_brief": metrics.beats_brief(brief, {**sweeps, **guarded}[name]),
        }  # fmt: skip
    grpo_vs_sft = {r.name: {"accuracy": arith[r.name]["overall"]["accuracy"], "from": r.start_from,
                            "sft": arith[r.start_from]["overall"]["accuracy"]}
                   for r in trained if r.start_from}  # fmt: skip

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_frontier(
        on_sweep,
        {**sweeps, **guarded}, out / "frontier.png",
        f"accuracy vs tokens · SmolLM2-135M · arith-test ({args.sweep_questions} q per budget)")  # fmt: skip
    result = write_json(out.with_suffix(".json"), {
        "benchmark": "reproduce_cpu",
        "args": vars(args),
        "rows": {r.name: {"data": r.data, "overrides": list(r.overrides), "start_from": r.start_from}
                 for r in trained},
        "timings_s": {**timings, "total": time.perf_counter() - t0},
        "reused_from_work_dir": reused,
        "prepared": {k: r.get("counts", r) | ({"renderings": r["renderings"]} if "renderings" in r else {})
                     for k, r in reports.items()},
        "table": {d: {n: s["overall"] for n, s in rows.items()} for d, rows in table.items()},
        "by_level": {n: s["by_level"] for n, s in arith.items()},
        "prefill_sweeps": sweeps,
        "guarded_sweeps": guarded,
        "held_out_missing": missing,
        "targets": TARGETS,
        "reached": reached,
        "grpo_vs_sft": grpo_vs_sft,
        "trained": {name: trained_size(run) for name, run in runs.items()},
    }, default=str)  # fmt: skip

    md = [
        "# SelfBudgeter on SmolLM2-135M (CPU reproduction)",
        "",
        f"Command: `{result['command']}` ("
        + ", ".join(f"{k}={v}" for k, v in result["command_env"].items()) + ", "
        f"seed {args.seed}); {result['timings_s']['total'] / 60:.0f} min"
        + (f" ({len(reused)} steps reused from an earlier call's work dir)" if reused else "") + ". Training data: bundled `arith`, "
        f"{args.train_questions} questions, k={args.k} samples per style at T=0.8; our SFT adds the renderings "
        f"{args.levels} and {args.reading_tokens}-token budget-reading rows ({args.reading_samples} drawn budgets per "
        "question" + (", each with its question's prompt: `sft.budget_reading_prompt`" if args.reading_prompt else "")
        + ")" + (f", writes the renderings {args.self_renderings} as self rows (`data.self_renderings`: "
                       "their budget is trained)" if args.self_renderings else "")
        + (f" with {args.stating_rows} budget-stating copies each (`sft.budget_stating_rows`)"
           if args.self_renderings and args.stating_rows else "")
        + (f", and the budget-stating rows of {args.stating_questions} more questions (`data.stating_questions`)"
           if args.self_renderings and args.stating_questions else "")
        + "; each ablation drops one of those"
        + ("; every SFT on prefix-shared packed batches, budget rows ordered by question (`sft.pack_shared_prompts`, "
           "`sft.budget_rows_by_question`)" if args.share_prompts else "")
        + f". Training in {args.dtype} (`model.dtype`); greedy evaluation in "
        "float32.",
        "",
    ]
    for d, rows in table.items():
        md += [f"## {d} ({datasets[d]} questions, self mode)", "", markdown_table(
            [(n, s["overall"]) for n, s in rows.items()], "model"), ""]  # fmt: skip
    md += [f"## Pre-filled budgets on arith-test ({args.sweep_questions} questions per budget)", "",
           "| model | " + " | ".join(f"{b}" for b in budgets) + " | slope | R² | ±50% of forced | accuracy |",
           "| --- | " + " | ".join("---:" for _ in budgets) + " | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for n, s in {**sweeps, **guarded}.items():
        by, o = s["by_prefill_budget"], s["overall"]
        md.append(f"| {n} | " + " | ".join(f"{by[str(b)]['mean_tokens']:.1f}" for b in budgets)
                  + f" | {o['slope']:.3f} | {o['r2']:.3f} | {100 * o['adherence_50']:.0f}% | {100 * o['accuracy']:.0f}% |")  # fmt: skip
    md += ["", f"Cells: mean solution tokens at each pre-filled budget. Frontier: `{out.name}/frontier.png`."
           + (f" Rows `· guard {args.guard}`: the same model under `eval.budget_guard={args.guard}` "
              "(sblite/generate/guard.py), which enforces the budget while decoding: what the guard makes of the "
              "model, not what the model learned. Self-mode columns of those rows repeat the unguarded model's."
              if guarded else ""), "",
           "## Targets", "", "| row | " + " | ".join(TARGETS) + " |", "| --- |" + " --- |" * len(TARGETS)]  # fmt: skip
    for n, r in reached.items():
        bb = r["beats_brief"]
        g = grpo_vs_sft.get(n)
        md.append(
            f"| {n} | {_n(r['prefill_slope'])} (R² {_n(r['prefill_r2'])}) | {_n(r['prefill_adherence_50'])} | "
            f"{_n(r['adherence_50'])} | {_n(r['spearman_budget_level'])} | {_n(r['compression'])} "
            f"(Δacc {_n(r['accuracy_delta'])}) | pre-fill {bb['budget']}: {_n(bb['accuracy'])} at "
            f"{_n(bb['tokens'], 0)} tok vs {_n(bb['brief_accuracy'])} at {_n(bb['brief_tokens'], 0)} | "
            + (f"{_n(g['accuracy'])} vs {_n(g['sft'])}" if g else "—") + " |"
        )  # fmt: skip
    if missing:
        md += ["", "Held-out sets not found here: " + "; ".join(f"{d}: {e}" for d, e in missing.items())]
    (out.with_suffix(".md")).write_text("\n".join(md) + "\n", encoding="utf-8")
    console.print("\n".join(md), markup=False)


if __name__ == "__main__":
    main()

"""``sblite demo`` end to end on the tiny random model: every stage runs, the report says what was trained and
on how many questions each part was measured. (The tiny model never answers right, so its SFT rows come from
the renderings: the self rows of ``data.self_renderings`` are what it learns its own budget from.) The demo's
cold-start switches reach the trainer: its stating rows are rows the SFT steps over, its dtype the recipe's."""

from __future__ import annotations

import dataclasses
import json

from sblite.data.prepared import load_prepared
from sblite.demo import DemoOptions, run_demo


def test_demo_runs_every_stage_and_reports_its_sizes(tmp_path, tiny_model_dir):
    out = tmp_path / "demo"
    opts = DemoOptions(out=str(out), model="builtin:tiny-random", train_questions=6, k=2, eval_questions=5,
                       sweep_questions=3, sft_epochs=1.0, grpo_steps=1, max_new_tokens=24, prefill_budgets=(8, 16),
                       renderings=("short", "reference"), self_renderings=("reference",), stating_rows=2, stating_length="own",
                       stating_questions=3, reading_samples=2, dtype="bfloat16", tag_weight=2.0)  # fmt: skip
    summary = run_demo(opts)

    sft = load_prepared(out / "prepared").sft
    assert sorted((r["rendering"], r["prefilled"]) for r in sft) == [("reference", False)] * 9 + [("short", True)] * 6
    assert [r["id"] for r in sft if r.get("stating")] == [f"arith-train-{i:05d}" for i in (6, 7, 8)]
    assert (out / "run" / "sft" / "adapter_config.json").is_file() and (out / "run" / "grpo").is_dir()
    # 12 prepared rows, 2 stating rows for each of the 6 self rows, a reading row for each prepared row and 2
    # drawn-budget reading rows per question: 12 + 12 + 12 + 12 = 48 rows; the 3 stating questions' 2 stating
    # rows each: 54 rows, 7 steps of the recipe's batch of 8
    sft_steps = [m for m in map(json.loads, (out / "run" / "metrics.jsonl").open()) if m["stage"] == "sft"]
    assert max(m["step"] for m in sft_steps) == 7
    resolved = (out / "run" / "recipe.resolved.yaml").read_text()
    assert "dtype: bfloat16" in resolved and "budget_tag_weight: 2.0" in resolved
    assert "budget_stating_length: own" in resolved
    assert summary["trained"]["questions"] == 5 and summary["base_brief"]["questions"] == 5
    by_budget = summary["prefill_sweep"]["by_prefill_budget"]
    # the sweep also holds the brief base's mean length on its 3 problems (DemoOptions.brief_budget)
    brief_len = round(summary["beats_brief"]["brief_tokens"])
    assert summary["brief_budget"] == brief_len
    assert set(by_budget) == {"8", "16", str(brief_len)} and {b["questions"] for b in by_budget.values()} == {3}
    assert {b["questions"] for b in summary["prefill_sweep_guarded"]["by_prefill_budget"].values()} == {3}
    assert (out / "frontier.png").stat().st_size > 0 and summary["export"]["gguf"].endswith(".gguf")

    report = (out / "report.md").read_text(encoding="utf-8")
    assert report.startswith("# sblite demo: SelfBudgeter on builtin:tiny-random (CPU)")
    assert "re-said as short (pre-filled rows" in report and "reference with its length as the budget" in report
    assert "each self row's budget weighing 2× in the loss" in report
    assert "2 copies of each self row cut after its budget" in report and report.count(", in bfloat16.") == 1
    assert "the budget-stating rows of 3 more questions, not sampled (`data.stating_questions`)" in report
    assert "budget-reading rows (3 solution tokens each, 2 drawn budgets per question" in report
    assert "on each of the first 3 held-out problems" in report and "| budget 16 | 3 |" in report
    # "beats brief" sets the sweep against the brief base on the sweep's 3 problems, not its 5
    beats = summary["beats_brief"]
    assert beats["questions"] == 3 and str(beats["budget"]) in by_budget
    assert "on the same 3 problems: the brief-prompt base is right on" in report
    assert f"Budget {brief_len} is the brief-prompt base's mean length on these problems" in report
    assert json.loads((out / "demo.json").read_text())["options"]["self_renderings"] == ["reference"]

    # --force over that folder trains anew: the finished stages of the run above are not resumed
    run_demo(dataclasses.replace(opts, sft_epochs=2.0, force=True))
    sft_steps = [m for m in map(json.loads, (out / "run" / "metrics.jsonl").open()) if m["stage"] == "sft"]
    assert [m["step"] for m in sft_steps if "loss" in m] == list(range(1, 15))

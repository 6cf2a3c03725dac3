"""The budget guard (sblite/generate/guard.py): lengths it enforces, measured as ``sblite eval`` measures them.

The tiny random model never closes a solution on its own, so it shows the ceiling through the real decoders;
a scripted "model" that wants to answer at once shows the floor, and one that states its own budget shows
self mode.
"""

from __future__ import annotations

import math

import pytest

from sblite import protocol
from sblite.generate.guard import FLOOR, BudgetGuard, GuardTokens, guards_for
from sblite.generate.hf import eos_token_ids, generate_batch, load_for_inference


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_for_inference(str(tiny_model_dir))


@pytest.mark.parametrize("mode", ["cap", "band"])
@pytest.mark.parametrize("engine", ["compact", "hf"])
def test_a_rambling_model_is_landed_at_its_pre_filled_budget(tiny, mode, engine):
    model, tok = tiny
    budgets = [16, 24, 40, 64]
    prompts = [protocol.render_prompt(tok, "What is 2 + 3?", budget=b) for b in budgets]
    kw = dict(max_new_tokens=120, temperature=0.0, batch_size=4, stop_strings=[protocol.SOLUTION_CLOSE])
    free = generate_batch(model, tok, prompts, engine=engine, **kw)
    guarded = generate_batch(model, tok, prompts, engine=engine, budget_guard=mode, **kw)
    for b, [f], [g] in zip(budgets, free, guarded, strict=True):
        assert protocol.count_solution_tokens(f.token_ids, tok, forced_budget=b) > b + 40  # unguarded: runs on
        n = protocol.count_solution_tokens(g.token_ids, tok, forced_budget=b)
        assert b - 2 <= n <= b, (b, n, g.text)
        parsed = protocol.parse_completion(protocol.prefill(b) + g.text)
        assert parsed.ok and g.text.endswith(protocol.SOLUTION_CLOSE) and "\\boxed{" in g.text
        assert g.finish_reason == "stop" and 0 < g.forced_tokens < n


def test_both_decoders_write_the_same_guarded_tokens(tiny):
    model, tok = tiny
    prompts = [protocol.render_prompt(tok, q, budget=b) for q, b in [("7 * 8?", 20), ("What is 2 + 3?", 48)]]
    kw = dict(max_new_tokens=80, temperature=0.0, batch_size=2, budget_guard="band")
    a = generate_batch(model, tok, prompts, engine="compact", **kw)
    b = generate_batch(model, tok, prompts, engine="hf", stop_strings=[protocol.SOLUTION_CLOSE], **kw)
    assert [g[0].token_ids for g in a] == [g[0].token_ids for g in b]
    assert [g[0].forced_tokens for g in a] == [g[0].forced_tokens for g in b]


def _scripted(tok, guard: BudgetGuard, script: str, *, limit: int = 300) -> list[int]:
    """Decode with a "model" that always wants the next token of ``script`` (then a filler word), through
    ``guard.constrain`` on real logits: a masked wish is retried on the next step, the filler written instead."""
    import torch

    want = protocol.encode(tok, script)
    filler = protocol.encode(tok, " so")[0]
    ids: list[int] = []
    pos = 0
    eos = tok.eos_token_id
    while not guard.done and len(ids) < limit:
        logits = torch.zeros(len(tok))
        logits[filler] = 1.0
        logits[want[pos] if pos < len(want) else eos] = 5.0
        pick = int(guard.constrain(logits).argmax())
        if pick == eos:
            break
        ids.append(pick)
        guard.observe(pick)
        if pos < len(want) and pick == want[pos]:
            pos += 1
    return ids


@pytest.mark.parametrize(
    "mode,budget,floor",
    [
        ("cap", 64, None),  # no floor: the model's own short answer stands
        ("band", 64, math.ceil(FLOOR * 64)),
        ("band", 128, math.ceil(FLOOR * 128)),
    ],
)
def test_the_band_keeps_a_terse_model_writing_until_its_floor(tiny, mode, budget, floor):
    _, tok = tiny
    tokens = GuardTokens.for_tokenizer(tok, [tok.eos_token_id])
    guard = BudgetGuard(tokens, tok, mode, budget=budget)
    ids = _scripted(tok, guard, " \\boxed{5}</solution>")
    n = protocol.count_solution_tokens(ids, tok, forced_budget=budget)
    short = protocol.count_solution_tokens(protocol.encode(tok, " \\boxed{5}</solution>"), tok, forced_budget=budget)
    if floor is None:  # the guard only finishes the "</solution>" the model began
        assert n == short and guard.forced_count < len(tokens.close)
    else:
        assert floor <= n <= budget, (n, tok.decode(ids))
    assert tok.decode(ids).endswith(protocol.SOLUTION_CLOSE)


@pytest.mark.parametrize("mode", ["cap", "band"])
def test_an_answer_ended_without_its_closing_tag_is_closed(tiny, mode):
    _, tok = tiny
    # the budget holds the whole script, so only the missing closing tag is the guard's
    guard = BudgetGuard(GuardTokens.for_tokenizer(tok, [tok.eos_token_id]), tok, mode, budget=64)
    ids = _scripted(tok, guard, " so 2 + 3 = 5 and the answer is \\boxed{5}")  # then EOS, no </solution>
    text = tok.decode(ids)
    assert text.endswith(protocol.SOLUTION_CLOSE) and guard.done and guard.forced_count > 0
    parsed = protocol.parse_completion(protocol.prefill(64) + text)
    assert parsed.ok and parsed.answer == "5"


def test_self_mode_lands_at_the_budget_the_model_states(tiny):
    _, tok = tiny
    [guard] = guards_for(tok, [protocol.render_prompt(tok, "7 * 8?")], "cap", [tok.eos_token_id], 1)
    ids = _scripted(tok, guard, "<budget>30</budget><solution>" + " and" * 80)
    assert guard.budget == 30
    n = protocol.count_solution_tokens(ids, tok)
    assert 28 <= n <= 30
    assert protocol.parse_completion(tok.decode(ids)).ok


def test_a_guard_needs_a_known_mode(tiny):
    _, tok = tiny
    assert guards_for(tok, ["x"], "off", eos_token_ids(tiny[0], tok), 1) is None
    with pytest.raises(ValueError, match="cap, band"):
        guards_for(tok, ["x"], "strict", [tok.eos_token_id], 1)  # type: ignore[arg-type]


def test_eval_refuses_a_guard_it_cannot_honour(tiny_model_dir, tmp_path):
    from rich.console import Console

    from sblite.eval.run import EvalError, EvalOptions, run_eval

    opts = EvalOptions(model=str(tiny_model_dir), dataset="arith-test", out=str(tmp_path), mode="none", limit=2,
                       max_new_tokens=8, budget_guard="cap")  # fmt: skip
    with pytest.raises(EvalError, match="no budget to enforce"):
        run_eval(opts, Console(quiet=True))


def test_eval_cli_records_what_the_guard_wrote(tiny_model_dir, tmp_path):
    import json

    from typer.testing import CliRunner

    from sblite.cli import app

    out = tmp_path / "ev"
    res = CliRunner().invoke(app, ["eval", "--model", str(tiny_model_dir), "--dataset", "arith-test", "--out",
                                   str(out), "--mode", "prefill", "--budgets", "16,32", "--limit", "2",
                                   "--max-new-tokens", "80", "--budget-guard", "cap"])  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads((out / "results.json").read_text())
    assert data["options"]["budget_guard"] == "cap"
    recs = data["records"]
    assert data["guard_tokens"] == sum(r["guard_tokens"] for r in recs) > 0
    assert all(r["length"] <= r["prefill_budget"] and r["format_ok"] for r in recs)

"""The SelfBudgeter reward: each branch of the formula, the α schedule, dominance, fuzzing, the TRL wrappers."""

from __future__ import annotations

import math
import pickle
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sblite import config as C
from sblite import protocol as P
from sblite import rewards as R
from sblite.protocol import Reason, count_solution_tokens, parse_b_max, render_completion
from sblite.rewards import (
    REWARDS,
    RewardConfig,
    SelfBudgeterReward,
    alpha_at,
    approx_token_count,
    budget_penalty,
    build_reward_funcs,
    score_budget,
    score_completion,
)

CFG = RewardConfig()
FLOOR = min(CFG.r_f, CFG.r_b + CFG.sW_min)
CEIL = CFG.sC_max


def ok_text(budget: int, answer: str = "42", body: str = "6*7 = ") -> str:
    return render_completion(budget, f"{body}\\boxed{{{answer}}}")


# ------------------------------------------------------------------------------------------------ config


def test_reward_config_is_the_config_class_with_paper_defaults():
    assert RewardConfig is C.RewardConfig
    c = RewardConfig()
    assert (c.r_f, c.r_b, c.sC_min, c.sC_max, c.sW_min, c.sW_max) == (-1.0, -0.5, 0.5, 1.0, -0.5, 0.0)
    assert (c.alpha_start, c.alpha_end) == (6.0, 0.1)


def test_reward_config_rejects_broken_dominance_and_says_what_to_change():
    with pytest.raises(ValueError, match="sC_min") as err:
        RewardConfig(r_b=-0.8)
    assert "r_b" in str(err.value) and "sW_max" in str(err.value)


# ------------------------------------------------------------------------------------------------- alpha


@pytest.mark.parametrize(
    "step, total, want",
    [
        (0, 100, 6.0),
        (100, 100, 0.1),
        (50, 100, 3.05),
        (250, 100, 0.1),
        (-5, 100, 6.0),
        (5, 0, 6.0),
        (5, None, 6.0),
    ],
)
def test_alpha_schedule(step, total, want):
    assert alpha_at(step, total, CFG) == pytest.approx(want)


def test_alpha_constant_schedule_and_trainer_state():
    const = RewardConfig(alpha_schedule="constant", alpha_start=0.4)
    assert alpha_at(90, 100, const) == 0.4
    reward = SelfBudgeterReward(CFG)
    text = ok_text(100)
    for state, alpha in [(None, 6.0), (SimpleNamespace(global_step=0, max_steps=10), 6.0),
                         (SimpleNamespace(global_step=10, max_steps=10), 0.1),
                         (SimpleNamespace(global_step=3, max_steps=0), 6.0)]:  # fmt: skip
        bd = reward.breakdowns(None, [text], trainer_state=state, answer=["42"])[0]
        assert bd.alpha == pytest.approx(alpha)


# --------------------------------------------------------------------------------------- scalar branches


@pytest.mark.parametrize(
    "budget, b_max, want",
    [
        (100, 100, 0.0),
        (101, 100, -0.5),
        (5, math.inf, 0.0),
        (10**5, None, 0.0),
        (10, "inf", 0.0),
        (10, "9", -0.5),
    ],
)
def test_budget_penalty(budget, b_max, want):
    assert budget_penalty(budget, parse_b_max(b_max), CFG) == want


@pytest.mark.parametrize(
    "value, want",
    [(None, math.inf), ("inf", math.inf), ("Infinity", math.inf), (float("inf"), math.inf), (7, 7.0),
     ("12", 12.0), (" 12 ", 12.0), (12.0, 12.0), (1, 1.0),
     # not a budget: an error, never "no cap" (the old converters read these as inf, or 0 as 0)
     (0, None), (-3, None), ("0", None), ("", None), ("abc", None), (float("nan"), None), (3.5, None),
     (True, None), (float("-inf"), None), ([5], None)],
)  # fmt: skip
def test_parse_b_max_is_the_one_rule(value, want):
    if want is None:
        with pytest.raises(ValueError, match="not a positive whole number"):
            parse_b_max(value)
    else:
        assert parse_b_max(value) == want


def test_a_bad_b_max_column_fails_the_reward_instead_of_meaning_no_cap():
    with pytest.raises(ValueError, match="b_max 0"):
        SelfBudgeterReward(CFG)(completions=[ok_text(30)], answer=["42"], b_max=[0])


@pytest.mark.parametrize(
    "length, budget, alpha, correct, want",
    [
        (90, 100, 0.1, True, 1.0),  # correct, at b_best = (1 - α) b: sC_max
        (110, 100, 0.1, False, 0.0),  # wrong, at b_best = (1 + α) b: sW_max
        (100, 100, 0.1, True, 0.75),  # |l - b_best| = α b: half way
        (100, 100, 0.1, False, -0.25),
        (110, 100, 0.1, True, 0.5),  # the far tolerance edge: cos(π) → s_min, continuous with outside
        (90, 100, 0.1, False, -0.5),
        (111, 100, 0.1, True, 0.5),  # outside the tolerance: s_min
        (89, 100, 0.1, True, 0.5),
        (0, 100, 0.1, True, 0.5),
        (0, 100, 0.1, False, -0.5),
        (10**9, 100, 0.1, False, -0.5),
        (0, 10, 6.0, True, 0.5 + 0.5 * (1 + math.cos(math.pi * 5 / 12)) / 2),  # α=6: b_best = -5b
        (70, 10, 6.0, False, 0.0),  # α=6, wrong, l = 7b = b_best
        (1, 1, 0.0, True, 0.75),  # α → 0: only l = b is inside, half way to b_best
        (2, 1, 0.0, True, 0.5),
    ],
)
def test_score_budget_branches(length, budget, alpha, correct, want):
    assert score_budget(length, budget, alpha, correct, CFG) == pytest.approx(want)


def test_score_budget_guards_budget_and_alpha():
    for b in (0, -3):
        assert math.isfinite(score_budget(1, b, 0.5, True, CFG))
    assert score_budget(1, 1, float("nan"), True, CFG) == 0.75
    assert score_budget(float("inf"), 5, 0.5, False, CFG) == CFG.sW_min


# ------------------------------------------------------------------------------------------ completions


def test_score_completion_sums_penalty_and_preb():
    r = score_completion(ok_text(100), "42", b_max=50, alpha=0.1, solution_tokens=90)
    assert (r.format_ok, r.correct, r.budget, r.length, r.reason) == (True, True, 100, 90, "ok")
    assert (r.budget_penalty, r.preb, r.total) == (-0.5, 1.0, 0.5)
    w = score_completion(ok_text(100, "41"), "42", b_max=None, alpha=0.1, solution_tokens=110)
    assert (w.correct, w.budget_penalty, w.total) == (False, 0.0, 0.0)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", Reason.EMPTY),
        ("\\boxed{42}", Reason.MISSING_BUDGET),
        ("hi <budget>5</budget><solution>\\boxed{42}</solution>", Reason.TEXT_BEFORE_BUDGET),
        ("<budget>5</budget><budget>5</budget><solution>x</solution>", Reason.MULTIPLE_BUDGET),
        ("<budget>5<solution>x</solution>", Reason.UNCLOSED_BUDGET),
        ("<budget>3.7</budget><solution>x</solution>", Reason.BUDGET_NOT_INTEGER),
        ("<budget>-5</budget><solution>x</solution>", Reason.BUDGET_NOT_POSITIVE),
        ("<budget>0</budget><solution>x</solution>", Reason.BUDGET_NOT_POSITIVE),
        ("<budget>" + "1" + "0" * 30 + "</budget><solution>x</solution>", Reason.BUDGET_ABSURD),
        ("<budget>5</budget>\\boxed{42}", Reason.MISSING_SOLUTION),
        ("<budget>5</budget>so<solution>x</solution>", Reason.TEXT_BETWEEN_TAGS),
        ("<budget>5</budget><solution>a<solution>b</solution>", Reason.MULTIPLE_SOLUTION),
        ("<budget>5</budget><solution>\\boxed{42}", Reason.UNCLOSED_SOLUTION),
        ("<budget>5</budget><solution>x</solution> extra", Reason.TEXT_AFTER_SOLUTION),
    ],
)
def test_format_failures_score_r_f_with_a_reason(text, reason):
    r = score_completion(text, "42", alpha=1.0)
    assert (r.total, r.format_ok, r.reason, r.budget_penalty, r.preb) == (CFG.r_f, False, reason, 0.0, 0.0)


def test_accuracy_is_measured_on_malformed_output_too():
    assert score_completion("<budget>5</budget><solution>\\boxed{42}", "42", alpha=1.0).correct
    assert not score_completion("<budget>5</budget><solution>\\boxed{4", "42", alpha=1.0).correct


def test_solution_tokens_fallback_is_the_documented_estimate():
    text = ok_text(20, body="Seven sixes: 6+6+6+6+6+6+6 = ")
    r = score_completion(text, "42", alpha=1.0)
    assert r.length == approx_token_count(text.split("</budget>", 1)[1]) > 0


def test_dominance_over_a_grid():
    """A correct answer, even over budget and off its target, never scores below the best wrong answer."""
    budgets = [1, 2, 7, 50, 300, 4096]
    lengths = [0, 1, 3, 10, 45, 100, 299, 300, 301, 1000, 10**6]
    alphas = [1e-3, 0.1, 0.5, 1.0, 3.0, 6.0]
    for cfg in (
        CFG,
        RewardConfig(r_b=-0.25, sC_min=0.25, sW_max=0.0),
        RewardConfig(sW_min=-2.0, sW_max=-0.7),
    ):
        for a in alphas:
            right = [score_budget(n, b, a, True, cfg) + cfg.r_b for b in budgets for n in lengths]
            wrong = [score_budget(n, b, a, False, cfg) for b in budgets for n in lengths]
            assert min(right) >= max(wrong)


# --------------------------------------------------------------------------------------------- fuzzing

_PIECES = ["<budget>", "</budget>", "<solution>", "</solution>", "\\boxed{", "}", "{", "42", "-5", "3.7",
           "1" + "0" * 30, " ", "\n", "é", "∑", "🙂", "\x00", "\\frac{1}{2}", "0.5", "$", "####", "\\",
           "answer is", "<budget>12</budget>", "<solution>\\boxed{42}</solution>", "x" * 500]  # fmt: skip
_BODY = [p for p in _PIECES if "<" not in p] + ["\\boxed{42}", "\\boxed{0.5}"]
_GOLDS = ["42", "\\frac{1}{2}", "0", None]
_CAPS = [None, 1, 5, 100, math.inf, "inf", "300"]  # valid inputs only: a bad b_max is an error (parse_b_max)
_ALPHAS = [0.01, 0.1, 0.5, 1.0, 3.0, 6.0]


def _text_from(bs: bytes) -> str:
    """Bytes → text: raw UTF-8 (any unicode, broken too), a string of protocol pieces, or a well-formed
    completion around pieces (so the formula's branches are fuzzed, not only the format failures)."""
    mode, rest = (bs[0] % 3, bs[1:]) if bs else (0, b"")
    if mode == 0:
        return rest.decode("utf-8", errors="replace")
    if mode == 1:
        return "".join(_PIECES[b % len(_PIECES)] for b in rest)
    body = "".join(_BODY[b % len(_BODY)] for b in rest[1:])
    return render_completion(1 + (rest[0] if rest else 0) * 37, body)


# One binary draw per example: Hypothesis's per-argument overhead would otherwise dominate 10,000 cases.
@given(data=st.binary(min_size=4, max_size=40))
@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_fuzz_any_text_scores_a_finite_float_with_a_reason(data):
    gold, cap, alpha = _GOLDS[data[0] % 4], _CAPS[data[1] % 7], _ALPHAS[data[2] % 6]
    tokens = None if data[3] % 3 == 0 else data[3] * 40_000
    text = _text_from(data[4:])
    r = score_completion(text, gold, b_max=cap, alpha=alpha, solution_tokens=tokens, config=CFG)
    assert math.isfinite(r.total) and FLOOR <= r.total <= CEIL
    assert isinstance(r.reason, str) and r.reason
    assert r.format_ok == (r.reason == "ok")
    assert r.total == (r.budget_penalty + r.preb if r.format_ok else CFG.r_f)


_TEXTS = st.one_of(
    st.binary(max_size=14).map(_text_from),
    st.text(max_size=40),
    st.builds(
        "<budget>{}</budget><solution>{}</solution>".format, st.integers(-10, 10**6), st.text(max_size=20)
    ),
)


@given(texts=st.lists(_TEXTS, min_size=1, max_size=6), conversational=st.booleans())
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_fuzz_every_registry_reward(texts, conversational):
    comps = [[{"role": "assistant", "content": t}] for t in texts] if conversational else texts
    for func in build_reward_funcs(C.RewardSection(funcs=list(REWARDS)), max_completion_length=64):
        out = func(
            prompts=["q"] * len(texts),
            completions=comps,
            answer=["42"] * len(texts),
            b_max=[None] * len(texts),
        )
        assert len(out) == len(texts) and all(isinstance(x, float) and math.isfinite(x) for x in out)


def test_pathological_strings():
    cases = ["", "x" * 2_000_000, "<budget>" * 10_000, "{" * 100_000 + "\\boxed{", "<budget>5</budget><solution>"
             + "\\boxed{" * 5_000 + "</solution>", "<budget>\u00a012\u00a0</budget><solution>\\boxed{42}</solution>"]  # fmt: skip
    for text in cases:
        r = score_completion(text, "42", alpha=0.5)
        assert math.isfinite(r.total) and r.reason


# ------------------------------------------------------------------------------------------ TRL wrapper


def test_plain_and_conversational_completions_agree_and_extra_columns_are_ignored():
    reward = SelfBudgeterReward(CFG)
    texts = [ok_text(30), ok_text(30, "41"), "no format \\boxed{42}"]
    plain = reward(prompts=["q"] * 3, completions=texts, answer=["42"] * 3, b_max=[None, 5, "inf"])
    chat = reward(
        prompts=[[{"role": "user", "content": "q"}]] * 3,
        completions=[[{"role": "assistant", "content": t}] for t in texts],
        answer=["42"] * 3,
        b_max=[None, 5, "inf"],
        level=[1, 2, 3],
        unknown_column=["a", "b", "c"],
        trainer_state=None,
    )
    assert plain == chat and plain[2] == CFG.r_f
    assert plain[0] > plain[1]


def test_gold_from_trl_solution_column_and_numeric_answers():
    reward = SelfBudgeterReward(CFG)
    a = reward(completions=[ok_text(30)], answer=[42])
    b = reward(completions=[ok_text(30)], solution=["6 times 7\n#### 42"])
    assert a == b and a[0] > 0


def test_lengths_come_from_completion_ids_with_the_protocol_helper(tiny_tokenizer):
    reward = SelfBudgeterReward(CFG, tiny_tokenizer)
    text = ok_text(12, body="six sevens are forty-two, so ")
    ids = tiny_tokenizer.encode(text, add_special_tokens=False) + [tiny_tokenizer.eos_token_id]
    bd = reward.breakdowns(["q"], [text], completion_ids=[ids], answer=["42"])[0]
    assert bd.length == count_solution_tokens(ids, tiny_tokenizer) > 0
    no_ids = reward.breakdowns(["q"], [text], answer=["42"])[0]
    assert abs(no_ids.length - bd.length) <= 1  # text re-tokenised: the same solution, the same count


@pytest.mark.parametrize(
    "completion, want_ok, want_budget",
    [
        ("6*7 = \\boxed{42}</solution>", True, 20),
        # given 20, it writes its own budget: scored as a format failure, never against its own 500
        ("<budget>500</budget><solution>6*7 = \\boxed{42}</solution>", False, None),
        ("</solution>", True, 20),  # an empty solution still has a length: the tag's tokens
    ],
)
def test_the_reward_scores_the_budget_the_model_was_given(tiny_tokenizer, completion, want_ok, want_budget):
    reward = SelfBudgeterReward(CFG, tiny_tokenizer)
    prompt = P.render_prompt(tiny_tokenizer, "What is 6*7?", budget=20)
    ids = P.encode(tiny_tokenizer, completion) + [tiny_tokenizer.eos_token_id]
    bd = reward.breakdowns([prompt], [completion], completion_ids=[ids], answer=["42"])[0]
    assert (bd.format_ok, bd.budget, bd.forced_budget) == (want_ok, want_budget, 20)
    if not want_ok:
        assert bd.total == CFG.r_f and bd.reason == Reason.MULTIPLE_BUDGET
        return
    # the length is the one protocol measure: the pre-fill's tokens after </budget>, then the generated ones
    whole = P.encode(tiny_tokenizer, P.prefill(20)) + ids
    assert bd.length == P.count_solution_tokens(whole, tiny_tokenizer) == (
        P.count_solution_tokens(ids, tiny_tokenizer, forced_budget=20)
    )
    # the same completion scored from its text alone (no ids) gets the same length
    assert reward.breakdowns([prompt], [completion], answer=["42"])[0].length == bd.length
    # and metrics say what share was forced and how far from the forced budget it landed
    logged = {}
    reward(prompts=[prompt, "q"], completions=[completion, ok_text(5)], completion_ids=[ids, P.encode(
        tiny_tokenizer, ok_text(5))], answer=["42", "42"], log_metric=logged.__setitem__)
    assert logged["sblite/prefilled_share"] == 0.5
    assert logged["sblite/prefill_abs_err"] == abs(bd.length - 20)


def test_a_conversational_assistant_prefill_is_refused(tiny_tokenizer):
    """TRL 1.16 renders a trailing assistant message as a closed turn: the model never sees that budget."""
    prompt = [{"role": "user", "content": "q"}, {"role": "assistant", "content": P.prefill(20)}]
    with pytest.raises(ValueError, match="closed turn"):
        SelfBudgeterReward(CFG, tiny_tokenizer)(prompts=[prompt], completions=["x"], answer=["1"])


def test_a_failing_tokenizer_fails_the_reward_instead_of_guessing(tiny_tokenizer):
    class Broken:
        all_special_ids = []

        def decode(self, *a, **k):
            raise RuntimeError("tokenizer broke")

        def encode(self, *a, **k):
            raise RuntimeError("tokenizer broke")

    with pytest.raises(RuntimeError, match="tokenizer broke"):
        SelfBudgeterReward(CFG, Broken())(prompts=["q"], completions=[ok_text(5)], completion_ids=[[1, 2, 3]],
                                          answer=["42"])


def test_an_exception_inside_a_reward_is_counted_and_warned_once(caplog):
    class Exploding(R.baselines.FormatReward):
        __name__ = "exploding_reward"

        def value(self, b, text, ids):
            if "junk" in text:
                raise ZeroDivisionError("boom")
            return 1.0

    func = Exploding(CFG)
    logged = {}
    with caplog.at_level("WARNING", logger="sblite.rewards"):
        for _ in range(2):
            out = func(completions=["junk", ok_text(5), "junk"], answer=["42"] * 3, log_metric=logged.__setitem__)
    assert out == [CFG.r_f, 1.0, CFG.r_f]
    assert logged["sblite/reward_errors/exploding_reward"] == 2.0 and func.errors == 4
    warned = [r for r in caplog.records if "raised on a completion" in r.getMessage()]
    assert len(warned) == 1 and "ZeroDivisionError: boom" in warned[0].getMessage()


def test_every_reward_pickles_and_keeps_its_name(tiny_tokenizer):
    funcs = build_reward_funcs(
        C.RewardSection(funcs=list(REWARDS)), tiny_tokenizer, max_completion_length=128
    )
    names = [f.__name__ for f in funcs]
    assert names == [f"{n}_reward" for n in REWARDS]
    for func in funcs:
        clone = pickle.loads(pickle.dumps(func))
        assert clone.__name__ == func.__name__
        args = {"prompts": ["q"], "completions": [ok_text(9)], "answer": ["42"], "b_max": [3]}
        assert clone(**args) == func(**args)


def test_unknown_reward_name():
    with pytest.raises(ValueError, match="known rewards"):
        build_reward_funcs(SimpleNamespace(funcs=["nope"]))


def test_build_reward_funcs_passes_the_constants_and_schedule():
    section = C.RewardSection(funcs=["selfbudgeter"], r_f=-2.0, alpha_schedule="constant", alpha_start=0.3)
    (func,) = build_reward_funcs(section)
    assert func.config.r_f == -2.0 and func(completions=["junk"], answer=["1"]) == [-2.0]
    state = SimpleNamespace(global_step=9, max_steps=10)
    assert func.breakdowns(None, [ok_text(5)], trainer_state=state, answer=["42"])[0].alpha == 0.3


@pytest.mark.parametrize(
    "name, text, ids_len, want",
    [
        ("format", ok_text(5), None, 1.0),
        ("format", "junk", None, 0.0),
        ("accuracy", "junk \\boxed{42}", None, 1.0),
        ("accuracy", ok_text(5, "41"), None, 0.0),
        ("budget_penalty_only", ok_text(5), None, -0.5),  # b_max = 3 below
        ("budget_penalty_only", "junk", None, -1.0),
        ("soft_overlong", "x", 80, 0.0),
        ("soft_overlong", "x", 90, -0.5),  # L = 100, cache = 20
        ("soft_overlong", "x", 101, -1.0),
        ("cosine", ok_text(5), 0, 1.0),
        ("cosine", ok_text(5), 100, 0.5),
        ("cosine", ok_text(5, "41"), 0, -1.0),
        ("cosine", ok_text(5, "41"), 100, -0.5),
        ("cosine", ok_text(5), 50, 0.75),
    ],
)
def test_comparison_rewards(name, text, ids_len, want):
    (func,) = build_reward_funcs(C.RewardSection(funcs=[name]), max_completion_length=100)
    ids = None if ids_len is None else [[7] * ids_len]
    assert func(completions=[text], completion_ids=ids, answer=["42"], b_max=[3]) == [pytest.approx(want)]


def test_l1_exact_and_preb_only():
    (l1,) = build_reward_funcs(C.RewardSection(funcs=["l1_exact"]))
    (preb,) = build_reward_funcs(C.RewardSection(funcs=["preb_only"]))
    bd = l1.breakdowns(None, [ok_text(1000)], answer=["42"])[0]
    assert l1(completions=[ok_text(1000)], answer=["42"]) == [
        pytest.approx(1.0 - 3e-4 * abs(1000 - bd.length))
    ]
    assert preb(completions=[ok_text(1000)], answer=["42"], b_max=[1]) == [pytest.approx(bd.preb)]


# ------------------------------------------------------------------------------------------------ metrics


def test_component_metrics_reach_log_metric_and_the_callback():
    reward = SelfBudgeterReward(CFG)
    logged: dict[str, list[float]] = {}
    extra: dict[str, list] = {}
    texts = [ok_text(10), ok_text(10, "41"), "junk", ok_text(500)]
    reward(
        prompts=["q"] * 4,
        completions=texts,
        answer=["42"] * 4,
        b_max=[100, 100, 100, 100],
        trainer_state=SimpleNamespace(global_step=5, max_steps=10),
        log_metric=lambda k, v: logged.setdefault(k, []).append(v),
        log_extra=lambda k, v: extra.setdefault(k, v),
    )
    m = {k: v[0] for k, v in logged.items()}
    assert m["sblite/format_rate"] == 0.75 and m["sblite/accuracy"] == 0.5
    assert m["sblite/budget_penalty_rate"] == pytest.approx(1 / 3)
    assert m["sblite/budget_mean"] == pytest.approx(520 / 3) and m["sblite/alpha"] == pytest.approx(3.05)
    assert {"sblite/preb_mean", "sblite/length_mean"} <= set(m)
    assert reward.last_metrics == m and extra["format"][2] == Reason.MISSING_BUDGET

    from sblite.train.callbacks import RewardMetricsCallback

    cb = RewardMetricsCallback([reward])
    state = SimpleNamespace(global_step=1, log_history=[{"loss": 1.0, "step": 1}])
    logs = {"loss": 1.0, "sblite/accuracy": 0.123}
    cb.on_log(None, state, None, logs=logs)
    assert logs["sblite/accuracy"] == 0.123  # TRL's own value wins
    assert logs["sblite/format_rate"] == 0.75 and state.log_history[-1]["sblite/format_rate"] == 0.75
    assert reward.drain_metrics() == {}


def test_metrics_callback_is_a_trainer_callback():
    from transformers import TrainerCallback

    from sblite.train.callbacks import RewardMetricsCallback

    assert issubclass(RewardMetricsCallback, TrainerCallback)
    assert pickle.loads(pickle.dumps(RewardMetricsCallback([]))).reward_funcs == []

"""The budget protocol: rendering, parsing (table-driven and fuzzed), gold answers and token counting."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sblite import protocol as P
from sblite.protocol import Reason

OK = "<budget>40</budget><solution>6*7 = \\boxed{42}</solution>"


def test_render_then_parse_round_trips():
    text = P.render_completion(17, "so the answer is \\boxed{\\frac{1}{2}}")
    p = P.parse_completion(text)
    assert (p.ok, p.budget, p.answer) == (True, 17, "\\frac{1}{2}")
    assert p.solution == "so the answer is \\boxed{\\frac{1}{2}}"


@given(budget=st.integers(1, P.MAX_BUDGET), solution=st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_round_trip_any_solution_without_tags(budget, solution):
    if any(tag in solution for tag in ("<budget>", "</budget>", "<solution>", "</solution>")):
        return
    p = P.parse_completion(P.render_completion(budget, solution))
    assert p.ok and p.budget == budget and p.solution == solution


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", Reason.EMPTY),
        ("   \n", Reason.EMPTY),
        ("6*7 = \\boxed{42}", Reason.MISSING_BUDGET),
        ("Sure! <budget>40</budget><solution>x</solution>", Reason.TEXT_BEFORE_BUDGET),
        ("<budget>4</budget><budget>5</budget><solution>x</solution>", Reason.MULTIPLE_BUDGET),
        ("<budget>4</budget></budget><solution>x</solution>", Reason.MULTIPLE_BUDGET),
        ("<budget>40<solution>x</solution>", Reason.UNCLOSED_BUDGET),
        ("<budget>3.7</budget><solution>x</solution>", Reason.BUDGET_NOT_INTEGER),
        ("<budget>forty</budget><solution>x</solution>", Reason.BUDGET_NOT_INTEGER),
        ("<budget></budget><solution>x</solution>", Reason.BUDGET_NOT_INTEGER),
        ("<budget>-5</budget><solution>x</solution>", Reason.BUDGET_NOT_POSITIVE),
        ("<budget>0</budget><solution>x</solution>", Reason.BUDGET_NOT_POSITIVE),
        ("<budget>" + "1" + "0" * 30 + "</budget><solution>x</solution>", Reason.BUDGET_ABSURD),
        (f"<budget>{P.MAX_BUDGET + 1}</budget><solution>x</solution>", Reason.BUDGET_ABSURD),
        ("<budget>" + "9" * 5000 + "</budget><solution>x</solution>", Reason.BUDGET_ABSURD),
        ("<budget>40</budget>", Reason.MISSING_SOLUTION),
        ("<budget>40</budget>so <solution>x</solution>", Reason.TEXT_BETWEEN_TAGS),
        ("<budget>40</budget><solution>x<solution>y</solution>", Reason.MULTIPLE_SOLUTION),
        ("<budget>40</budget><solution>x</solution></solution>", Reason.MULTIPLE_SOLUTION),
        ("<budget>40</budget><solution>6*7 = \\boxed{42}", Reason.UNCLOSED_SOLUTION),
        ("<budget>40</budget><solution>x</solution> more words", Reason.TEXT_AFTER_SOLUTION),
    ],
)
def test_malformed_completions_get_a_precise_reason(text, reason):
    p = P.parse_completion(text)
    assert not p.ok
    assert p.reason == reason
    assert p.detail


def test_whitespace_around_tags_and_budget_is_accepted():
    p = P.parse_completion("\n <budget> 40 </budget>\n<solution>x \\boxed{1}</solution>\n")
    assert p.ok and p.budget == 40 and p.answer == "1"


def test_malformed_completion_still_yields_its_answer_and_budget():
    p = P.parse_completion("<budget>40</budget><solution>6*7 = \\boxed{42}")
    assert p.reason == Reason.UNCLOSED_SOLUTION and p.answer == "42" and p.budget == 40


@pytest.mark.parametrize(
    "text, expected",
    [
        ("\\boxed{42}", "42"),
        ("a \\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\boxed{1} and an unclosed \\boxed{2", "1"),
        ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),
        ("\\fbox{7}", "7"),
        ("\\boxed {5}", "5"),
        ("no box here", None),
        ("\\boxed{", None),
        ("}}}{{{\\boxed{x", None),
    ],
)
def test_extract_boxed_takes_the_last_brace_matched_box(text, expected):
    assert P.extract_boxed(text) == expected


@pytest.mark.parametrize(
    "gold, expected",
    [
        ("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72", "72"),
        ("#### 1,234", "1234"),
        ("The answer is $\\boxed{\\frac{3}{4}}$.", "\\frac{3}{4}"),
        ("  17 ", "17"),
        (51.0, "51"),
        (27, "27"),
        (0.5, "0.5"),
        ("", None),
        ("####", None),
        (float("nan"), None),
        (True, None),
        (None, None),
    ],
)
def test_parse_gold(gold, expected):
    assert P.parse_gold(gold) == expected


@pytest.mark.parametrize("bad", [0, -1, P.MAX_BUDGET + 1, 3.5, "12", True, None])
def test_prefill_rejects_bad_budgets(bad):
    with pytest.raises(ValueError, match="budget must be an integer"):
        P.prefill(bad)


def test_prefill_is_the_head_of_a_rendered_completion():
    assert P.render_completion(64, "x").startswith(P.prefill(64))
    assert P.parse_completion(P.prefill(64) + "6*7=\\boxed{42}</solution>").budget == 64


# A grammar of near-miss completions: real tags and numbers in random orders, plus arbitrary text.
_pieces = st.sampled_from(
    [
        "<budget>",
        "</budget>",
        "<solution>",
        "</solution>",
        "\\boxed{",
        "}",
        "{",
        "42",
        "-5",
        "3.7",
        "1" + "0" * 30,
        " ",
        "\n",
        "é",
        "答案",
        "\\",
        "####",
        "",
    ]
)
_completions = st.one_of(
    st.text(max_size=300), st.lists(st.one_of(_pieces, st.text(max_size=5)), max_size=40).map("".join)
)


@given(text=_completions)
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_parse_never_raises_and_always_explains_a_rejection(text):
    p = P.parse_completion(text)
    if p.ok:
        assert p.reason is None and isinstance(p.budget, int) and 1 <= p.budget <= P.MAX_BUDGET
        assert p.solution is not None
        # an accepted completion re-renders to itself, modulo surrounding whitespace
        assert P.parse_completion(P.render_completion(p.budget, p.solution)).ok
    else:
        assert p.reason in Reason.ALL and p.detail


def test_parse_is_linear_on_huge_adversarial_input():
    text = "<budget>5</budget><solution>" + "\\boxed{" * 50_000 + "</solution>"
    assert P.parse_completion(text).ok
    assert P.extract_boxed("{" * 100_000 + "\\boxed{1}") == "1"


# ---------------------------------------------------------------------------------------------- tokens


def test_count_solution_tokens_counts_after_the_budget_tag(tiny_tokenizer):
    tok = tiny_tokenizer
    solution = "<solution>2 + 3 = 5, so \\boxed{5}</solution>"
    ids = tok.encode("<budget>12</budget>" + solution, add_special_tokens=False)
    n = P.count_solution_tokens(ids + [tok.eos_token_id, tok.pad_token_id], tok)
    # the boundary token may merge across the tag; the count matches the solution's own tokens within one
    assert abs(n - P.count_tokens(solution, tok)) <= 1
    assert tok.decode(ids[len(ids) - n :]).endswith("</solution>")
    assert "</budget>" not in tok.decode(ids[len(ids) - n :])


def test_count_solution_tokens_prefilled_and_missing_tag(tiny_tokenizer):
    tok = tiny_tokenizer
    ids = tok.encode("2 + 3 = \\boxed{5}</solution>", add_special_tokens=False)
    # after a forced budget: the pre-fill's own tokens after </budget> count too, as if the model wrote them
    tail = P.count_solution_tokens(P.encode(tok, P.prefill(7)), tok)
    assert tail >= 1 and P.count_solution_tokens(ids + [tok.eos_token_id], tok, forced_budget=7) == len(ids) + tail
    assert P.count_solution_tokens(ids, tok) is None
    assert P.count_solution_tokens([], tok) is None


def test_solution_text():
    assert P.solution_text(OK) == "<solution>6*7 = \\boxed{42}</solution>"
    assert P.solution_text("no tag") == "no tag"


def test_render_prompt_uses_the_models_chat_template(tiny_tokenizer):
    text = P.render_prompt(tiny_tokenizer, "What is 2+3?")
    assert text.startswith("<|im_start|>system\n" + P.SYSTEM_PROMPT)
    assert text.endswith("<|im_start|>assistant\n")
    assert "What is 2+3?" in text
    prefilled = P.render_prompt(tiny_tokenizer, "What is 2+3?", budget=30)
    assert prefilled == text + "<budget>30</budget><solution>"
    folded = P.render_prompt(tiny_tokenizer, "Q?", instruction_in_user=True)
    assert "system" not in folded and P.SYSTEM_PROMPT in folded


@pytest.mark.parametrize("in_user", [False, True])
def test_budget_chat_template_renders_the_training_prompt(tiny_tokenizer, in_user):
    """The template baked into an exported model (GGUF's ``selfbudgeter``) gives a plain question the
    prompt training used."""
    import jinja2

    tmpl = P.budget_chat_template(tiny_tokenizer.chat_template, P.SYSTEM_PROMPT, in_user=in_user)
    got = (
        jinja2.Environment()
        .from_string(tmpl)
        .render(messages=[{"role": "user", "content": "What is 2 + 3?"}], add_generation_prompt=True)
    )
    assert got == P.render_prompt(tiny_tokenizer, "What is 2 + 3?", instruction_in_user=in_user)


class _NoSystemTokenizer:
    """A chat template that raises on a system turn (as Gemma's does)."""

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        if any(m["role"] == "system" for m in messages):
            raise ValueError("System role not supported")
        return "".join(f"[{m['role']}] {m['content']}\n" for m in messages) + "[assistant] "


def test_render_prompt_falls_back_when_the_template_has_no_system_role():
    text = P.render_prompt(_NoSystemTokenizer(), "Q?")
    assert text.startswith("[user] " + P.SYSTEM_PROMPT) and text.endswith("[assistant] ")


# ------------------------------------------------------------------ templates that force an opener (R1's <think>)

@pytest.fixture(scope="module")
def r1_tokenizer(make_r1_tokenizer):
    tok = make_r1_tokenizer()
    assert tok.apply_chat_template([{"role": "user", "content": "q"}], tokenize=False,
                                   add_generation_prompt=True).endswith("<｜Assistant｜><think>\n")
    return tok


@pytest.mark.parametrize("budget", [None, 48])
def test_r1_prompts_end_at_the_assistant_header_without_the_forced_think(r1_tokenizer, budget):
    text = P.render_prompt(r1_tokenizer, "What is 2+3?", budget=budget)
    tail = "<｜Assistant｜>" + (P.prefill(budget) if budget else "")
    assert text.endswith(tail) and "<think>" not in text


@pytest.mark.parametrize("in_user", [False, True])
def test_r1_training_examples_start_with_the_exact_inference_prompt(r1_tokenizer, in_user):
    """SFT trains on header + completion (R1's template renders a finished assistant turn without <think>);
    the prompt eval/generate/GRPO sample from must be that same header, token for token."""
    completion = P.render_completion(12, "2 + 3 = 5. The answer is \\boxed{5}.")
    ids, mask = P.encode_training_example(r1_tokenizer, "What is 2+3?", completion, instruction_in_user=in_user)
    prompt = P.encode_prompt(r1_tokenizer, P.render_prompt(r1_tokenizer, "What is 2+3?", instruction_in_user=in_user))
    assert ids[: len(prompt)] == prompt and mask[: len(prompt)] == [0] * len(prompt)
    assert r1_tokenizer.decode(ids[len(prompt):]).startswith("<budget>12</budget><solution>")
    assert r1_tokenizer.decode(ids).endswith("<｜end▁of▁sentence｜>")


@pytest.mark.parametrize("in_user", [False, True])
def test_the_exported_r1_budget_template_renders_the_same_prompt(r1_tokenizer, in_user):
    """The GGUF's ``selfbudgeter`` template (``budget_chat_template``) drops the forced opener too, so a served
    model sees what it was trained on."""
    baked = P.budget_chat_template(r1_tokenizer.chat_template, P.SYSTEM_PROMPT, in_user=in_user)
    served = r1_tokenizer.apply_chat_template([{"role": "user", "content": "What is 2+3?"}], tokenize=False,
                                              add_generation_prompt=True, chat_template=baked)
    assert served == P.render_prompt(r1_tokenizer, "What is 2+3?", instruction_in_user=in_user)
    assert served.endswith("<｜Assistant｜>") and "<think>" not in served


@pytest.mark.parametrize("prefilled", [False, True])
def test_a_prefilled_training_example_masks_the_budget_tag_and_keeps_the_ids(tiny_tokenizer, prefilled):
    completion = P.render_completion(7, "2 + 3 = 5. \\boxed{5}")
    plain_ids, plain_mask = P.encode_training_example(tiny_tokenizer, "What is 2+3?", completion)
    ids, mask = P.encode_training_example(tiny_tokenizer, "What is 2+3?", completion, prefilled=prefilled)
    given = P.encode_prompt(tiny_tokenizer, P.render_prompt(tiny_tokenizer, "What is 2+3?", budget=7))
    assert ids == plain_ids and ids[: len(given)] == given
    first = mask.index(1)
    assert first == (len(given) if prefilled else plain_mask.index(1)) and all(mask[first:])
    with pytest.raises(ValueError, match="pre-filled example needs"):
        P.encode_training_example(tiny_tokenizer, "What is 2+3?", "\\boxed{5}", prefilled=True)


def test_a_budget_reading_row_is_the_prefill_and_the_first_solution_tokens_only(tiny_tokenizer):
    completion = P.render_completion(42, "Let me read the problem carefully. \\boxed{5}")
    ids, mask = P.encode_budget_reading(tiny_tokenizer, completion, 3)
    given = P.encode(tiny_tokenizer, P.prefill(42))
    full = P.encode_completion(tiny_tokenizer, completion)
    assert ids == full[: len(given) + 3] and mask == [0] * len(given) + [1] * 3
    with pytest.raises(ValueError, match="budget-reading row needs"):
        P.encode_budget_reading(tiny_tokenizer, "\\boxed{5}", 3)

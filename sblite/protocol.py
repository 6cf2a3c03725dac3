"""The budget protocol: the single source of truth for SelfBudgeter's output format.

A budgeted completion reads

    <budget>312</budget><solution> ...reasoning... \\boxed{42}</solution>

Everything that writes, reads or measures that format goes through this module: the prompts that ask for
it (``build_messages``, ``render_prompt``), the SFT targets (``render_completion``), the parser used by the
reward and by evaluation (``parse_completion``), the pre-fill string that forces a user budget
(``prefill``) and its reader (``split_prefill``), the one ``b_max`` rule (``parse_b_max``), the token ids of
prompts and completions at the pre-fill boundary (``encode_prompt``, ``encode_completion``,
``encode_training_example``), and the length measure every stage shares (``count_solution_tokens``: tokens
after ``</budget>``, a forced budget's ``<solution>`` included). Keeping one definition means a budget learned
in SFT, rewarded in GRPO and checked in ``sblite eval`` is the same number, over the same ids.

Nothing here imports torch or transformers; a tokenizer is any object with ``encode``/``decode``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

BUDGET_OPEN, BUDGET_CLOSE = "<budget>", "</budget>"
SOLUTION_OPEN, SOLUTION_CLOSE = "<solution>", "</solution>"

#: Budgets above this are "absurd": longer than any context window sblite trains or serves.
MAX_BUDGET = 262_144

SYSTEM_PROMPT = (
    "First decide how many tokens you need to solve the problem and write that number as "
    "<budget>N</budget>. Then write your solution inside <solution></solution>, using about N tokens, "
    "and put the final answer in \\boxed{}."
)
#: Plain prompting without the budget format: the base model's own length (``sblite eval --mode none``).
PLAIN_SYSTEM_PROMPT = "Solve the problem step by step and put the final answer in \\boxed{}."
#: A terse instruction: the same model's short answers (``sblite prepare --styles plain,brief``).
BRIEF_SYSTEM_PROMPT = "Answer in one short line and put the final answer in \\boxed{}."
#: Sampling styles for ``prepare --labels sample``: each draws k answers under its own instruction, so the
#: cold-start data holds long and short correct answers to one question, each labelled with its own length.
SAMPLE_STYLES = {"plain": PLAIN_SYSTEM_PROMPT, "brief": BRIEF_SYSTEM_PROMPT}


class Reason:
    """Why a completion is malformed. Values are stable strings: they are logged, counted and tested."""

    EMPTY = "empty"
    MISSING_BUDGET = "missing_budget"
    TEXT_BEFORE_BUDGET = "text_before_budget"
    MULTIPLE_BUDGET = "multiple_budget"
    UNCLOSED_BUDGET = "unclosed_budget"
    BUDGET_NOT_INTEGER = "budget_not_integer"
    BUDGET_NOT_POSITIVE = "budget_not_positive"
    BUDGET_ABSURD = "budget_absurd"
    MISSING_SOLUTION = "missing_solution"
    TEXT_BETWEEN_TAGS = "text_between_tags"
    MULTIPLE_SOLUTION = "multiple_solution"
    UNCLOSED_SOLUTION = "unclosed_solution"
    TEXT_AFTER_SOLUTION = "text_after_solution"

    ALL = (
        EMPTY,
        MISSING_BUDGET,
        TEXT_BEFORE_BUDGET,
        MULTIPLE_BUDGET,
        UNCLOSED_BUDGET,
        BUDGET_NOT_INTEGER,
        BUDGET_NOT_POSITIVE,
        BUDGET_ABSURD,
        MISSING_SOLUTION,
        TEXT_BETWEEN_TAGS,
        MULTIPLE_SOLUTION,
        UNCLOSED_SOLUTION,
        TEXT_AFTER_SOLUTION,
    )


@dataclass(frozen=True, slots=True)
class ParsedCompletion:
    """What ``parse_completion`` read. ``ok`` is the format check; ``answer`` is filled even when the format
    fails (from the last ``\\boxed{}`` anywhere), so accuracy can be measured on malformed output too."""

    ok: bool
    reason: str | None = None
    detail: str = ""
    budget: int | None = None
    solution: str | None = None
    answer: str | None = None


class TokenizerLike(Protocol):
    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = ...) -> str: ...


# --------------------------------------------------------------------------------------------- rendering


def render_completion(budget: int, solution: str) -> str:
    """The SFT target for a response of ``budget`` solution tokens.

    >>> render_completion(12, "2 + 3 = 5, so \\\\boxed{5}")
    '<budget>12</budget><solution>2 + 3 = 5, so \\\\boxed{5}</solution>'
    """
    return f"{prefill(budget)}{solution}{SOLUTION_CLOSE}"


def with_budget(completion: str, budget: int) -> str:
    """``completion`` stating ``budget`` instead of its own: the same solution under another pre-filled budget.

    >>> with_budget("<budget>12</budget><solution>\\\\boxed{5}</solution>", 40)
    '<budget>40</budget><solution>\\\\boxed{5}</solution>'
    """
    return prefill(budget)[: -len(SOLUTION_OPEN)] + solution_text(completion)


def prefill(budget: int) -> str:
    """The text a decoder is seeded with to force ``budget``: the model then writes only the solution.

    >>> prefill(64)
    '<budget>64</budget><solution>'
    """
    if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= MAX_BUDGET:
        raise ValueError(f"budget must be an integer in 1..{MAX_BUDGET}, got {budget!r}")
    return f"{BUDGET_OPEN}{budget}{BUDGET_CLOSE}{SOLUTION_OPEN}"


_PREFILL_TAIL_RE = re.compile(r"<budget>(\d+)</budget><solution>\Z")


def split_prefill(text: str) -> tuple[str, int | None]:
    """``(text before a trailing pre-fill, its budget)``; ``(text, None)`` when ``text`` does not end in one.

    The one reader of a forced budget: the reward, generation and training all ask it what a prompt forced.

    >>> split_prefill("…assistant\\n<budget>64</budget><solution>")
    ('…assistant\\n', 64)
    >>> split_prefill("…assistant\\n")
    ('…assistant\\n', None)
    """
    m = _PREFILL_TAIL_RE.search(text) if isinstance(text, str) else None
    if m is None or not 1 <= int(m.group(1)) <= MAX_BUDGET:
        return text, None
    return text[: m.start()], int(m.group(1))


def parse_b_max(value: Any) -> float:
    """The one ``b_max`` rule: a positive whole number of tokens, or no cap (``math.inf``).

    No cap is written ``null`` (None) or infinity (``inf``). A positive integer-valued number or numeric
    string is a cap. Everything else — 0, negatives, fractions, NaN, booleans, other strings — is not a
    budget, and raises ``ValueError`` (a reader names the file and line; nothing is ever read as "no cap").

    >>> parse_b_max(120), parse_b_max("300"), parse_b_max(None), parse_b_max(float("inf"))
    (120.0, 300.0, inf, inf)
    >>> parse_b_max(0)
    Traceback (most recent call last):
    ...
    ValueError: b_max 0 is not a positive whole number of tokens or null (no cap)
    """
    if value is None:
        return math.inf
    num: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        num = float(value)
    elif isinstance(value, str):
        try:
            num = float(value.strip())
        except ValueError:
            num = None
    if num is not None and num == math.inf:
        return math.inf
    if num is None or not math.isfinite(num) or num < 1 or not num.is_integer():
        raise ValueError(f"b_max {value!r} is not a positive whole number of tokens or null (no cap)")
    return num


def build_messages(
    question: str, *, system_prompt: str | None = SYSTEM_PROMPT, instruction_in_user: bool = False
) -> list[dict[str, str]]:
    """Chat messages for one question. ``instruction_in_user`` folds the instruction into the user turn,
    for chat templates without a system role (or small models that follow it better there)."""
    if not system_prompt:
        return [{"role": "user", "content": question}]
    if instruction_in_user:
        return [{"role": "user", "content": f"{system_prompt}\n\n{question}"}]
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": question}]


#: what a template's generation prompt may force the model to open with, beyond its assistant-turn header
#: (DeepSeek-R1-Distill: ``<｜Assistant｜><think>\n``). sblite's format puts the budget first instead.
FORCED_OPENERS = ("<think>\n", "<think>")
_PROBE = "\x00sblite-answer\x00"


def _without_forced_opener(tokenizer: Any, messages: list[dict[str, str]], prompt: str) -> str:
    """``prompt`` (a generation prompt) with a forced opener such as R1's ``<think>\n`` removed.

    The budget comes first in sblite's format (``<budget>N</budget><solution>…``), and the template renders a
    finished assistant turn as header + content with no ``<think>`` (R1's cuts everything up to
    ``</think>``), so SFT trains on header + completion. The prompt must end at that same header, or the
    model would be sampled in a context it was never trained in and open with ``<think>`` (a format
    failure). Reasoning goes inside ``<solution>``. Nothing changes for templates whose generation prompt
    is exactly the header (ChatML and most others)."""
    if not prompt.endswith(FORCED_OPENERS):
        return prompt
    turn = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": _PROBE}], tokenize=False)
    header = turn[: turn.find(_PROBE)] if _PROBE in turn else None
    for opener in FORCED_OPENERS:
        if header is not None and prompt == header + opener:
            return header
    return prompt


def _chat(
    tokenizer: Any,
    question: str,
    *,
    system_prompt: str | None,
    instruction_in_user: bool,
    answer: str | None = None,
) -> str:
    """The chat template's text for ``question`` (ending where the assistant speaks, or with ``answer`` as a
    closed assistant turn). A template that rejects a system role is retried with the instruction in the user
    turn."""

    def apply(in_user: bool) -> str:
        messages = build_messages(question, system_prompt=system_prompt, instruction_in_user=in_user)
        if answer is None:
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return _without_forced_opener(tokenizer, messages, text)
        messages.append({"role": "assistant", "content": answer})
        return tokenizer.apply_chat_template(messages, tokenize=False)

    try:
        return apply(instruction_in_user)
    except Exception:  # noqa: BLE001 - templates raise arbitrary errors for an unsupported system role
        if instruction_in_user or not system_prompt:
            raise
        return apply(True)


def render_prompt(
    tokenizer: Any,
    question: str,
    *,
    budget: int | None = None,
    system_prompt: str | None = SYSTEM_PROMPT,
    instruction_in_user: bool = False,
) -> str:
    """The prompt text for ``question`` in the model's own chat template, ending where the assistant speaks.

    With ``budget`` the assistant turn is pre-filled with ``prefill(budget)``: the text ends inside the open
    assistant turn (no end-of-turn, no second header), and the model continues with the solution. A template
    that rejects a system role is retried with the instruction in the user turn. Tokenize the result with
    ``encode_prompt``.
    """
    text = _chat(tokenizer, question, system_prompt=system_prompt, instruction_in_user=instruction_in_user)
    return text + prefill(budget) if budget is not None else text


def _drop_forced_opener_source(template: str) -> str:
    r"""The template source with a generation prompt's forced opener (R1's ``'<｜Assistant｜><think>\\n'``)
    cut, as ``render_prompt`` cuts it from rendered prompts; other templates come back unchanged.

    >>> _drop_forced_opener_source("{%- if add_generation_prompt -%}{{'<｜Assistant｜><think>\\n'}}{%- endif %}")
    "{%- if add_generation_prompt -%}{{'<｜Assistant｜>'}}{%- endif %}"
    """
    lines = template.split("\n")
    for i, line in enumerate(lines):
        if "add_generation_prompt" in line:
            for opener in ("<think>\\n'", '<think>\\n"', "<think>'", '<think>"'):
                if opener in line:
                    lines[i] = line.replace(opener, opener[-1])
                    break
    return "\n".join(lines)


def budget_chat_template(template: str, instruction: str, *, in_user: bool) -> str:
    """``template`` with SelfBudgeter's instruction added when the conversation does not bring a system
    message: as a system message, or (``in_user``) in front of the first user turn, as training did.
    Baked into an exported model (GGUF's ``selfbudgeter`` template), a plain question renders the same
    prompt ``render_prompt`` gives, including without a forced ``<think>`` opener.

    >>> t = budget_chat_template("{{ messages[0]['content'] }}", "Be brief.", in_user=False)
    >>> t.startswith("{%- if messages[0]['role'] != 'system' -%}")
    True
    >>> t.endswith("{{ messages[0]['content'] }}")
    True
    >>> '"Be brief."' in t  # the instruction as a JSON string, which is a valid Jinja string literal
    True
    """
    text = json.dumps(instruction)  # a valid Jinja string literal
    template = _drop_forced_opener_source(template)
    if in_user:
        head = (
            "{%- set ns = namespace(m=[]) -%}{%- for m in messages -%}"
            "{%- if loop.first and m['role'] == 'user' -%}"
            "{%- set ns.m = ns.m + [{'role': 'user', 'content': " + text + " + '\\n\\n' + m['content']}] -%}"
            "{%- else -%}{%- set ns.m = ns.m + [m] -%}{%- endif -%}{%- endfor -%}{%- set messages = ns.m -%}"
        )
    else:
        head = (
            "{%- if messages[0]['role'] != 'system' -%}"
            "{%- set messages = [{'role': 'system', 'content': " + text + "}] + messages -%}{%- endif -%}"
        )
    return head + template


def encode_training_example(
    tokenizer: Any,
    question: str,
    completion: str,
    *,
    system_prompt: str | None = SYSTEM_PROMPT,
    instruction_in_user: bool = False,
    prefilled: bool = False,
) -> tuple[list[int], list[int]]:
    """``(input_ids, completion_mask)`` of one SFT example: the prompt ``render_prompt`` gives, then the
    completion as ``encode_completion`` splits it, then the template's end of turn; the mask is 1 on what the
    model writes (completion and end of turn). ``prefilled``: the example is a pre-filled one, its
    ``<budget>N</budget><solution>`` is context the user wrote (mask 0), and only the solution is learned.

    These are the ids the model sees at inference, token for token: in self mode the prompt alone, with a
    pre-filled budget the prompt plus ``<budget>N</budget><solution>``. Raises ``ValueError`` when the template
    renders the assistant turn differently from its generation prompt (training would then show the model a
    context it is never sampled in).
    """
    opts = {"system_prompt": system_prompt, "instruction_in_user": instruction_in_user}
    prompt = _chat(tokenizer, question, **opts)
    full = _chat(tokenizer, question, answer=completion, **opts)
    if not full.startswith(prompt + completion):
        at = next((i for i, (a, b) in enumerate(zip(full, prompt + completion, strict=False)) if a != b), None)
        at = min(len(full), len(prompt + completion)) if at is None else at
        raise ValueError(
            "the chat template renders an assistant turn differently from its generation prompt "
            f"(generation prompt + answer reads {(prompt + completion)[max(0, at - 20) : at + 20]!r}, the "
            f"rendered turn {full[max(0, at - 20) : at + 20]!r}); use a template whose generation prompt is "
            "the start of its assistant turn"
        )
    head, tail = encode(tokenizer, prompt), encode(tokenizer, full[len(prompt) + len(completion) :])
    split = split_completion_ids(tokenizer, completion)
    if split is None and prefilled:
        raise ValueError("a pre-filled example needs a completion that opens with <budget>N</budget><solution>")
    tags, solution = split if split is not None else ([], encode(tokenizer, completion))
    given = len(tags) if prefilled else 0
    body = tags + solution
    return head + body + tail, [0] * (len(head) + given) + [1] * (len(body) - given + len(tail))


def encode_budget_stating(
    tokenizer: Any, question: str, completion: str, *, system_prompt: str | None = SYSTEM_PROMPT,
    instruction_in_user: bool = False,
) -> tuple[list[int], list[int]]:
    """``(input_ids, completion_mask)`` of a budget-stating row: ``encode_training_example``'s ids cut after
    ``<budget>N</budget><solution>``, the mask 1 on those tags only. It trains just the budget the model states
    for the question it reads, which a full row averages into the loss of its whole solution."""
    ids, mask = encode_training_example(tokenizer, question, completion, system_prompt=system_prompt,
                                        instruction_in_user=instruction_in_user)  # fmt: skip
    _, end = budget_tag_span(tokenizer, completion, mask, what="a budget-stating row")
    return ids[:end], mask[:end]


def budget_tag_span(tokenizer: Any, completion: str, mask: list[int], *, what: str) -> tuple[int, int]:
    """``[start, end)`` of ``<budget>N</budget><solution>`` in a self row's ids, given the row's completion mask
    (``encode_training_example``): the first ids it trains. ``what`` names the row in the error for a completion
    without those tags."""
    split = split_completion_ids(tokenizer, completion)
    if split is None:
        raise ValueError(f"{what} needs a completion that opens with <budget>N</budget><solution>")
    start = mask.index(1)
    return start, start + len(split[0])


def encode_budget_reading(
    tokenizer: Any, completion: str, k: int, question: str | None = None, *,
    system_prompt: str | None = SYSTEM_PROMPT, instruction_in_user: bool = False,
) -> tuple[list[int], list[int]]:
    """``(input_ids, completion_mask)`` of a budget-reading row: ``<budget>N</budget><solution>`` alone (no
    prompt, ids as ``encode_completion`` splits them) then the first ``k`` solution tokens, the mask 1 on
    those only. It trains just the choice the number makes at the start of the solution. With ``question``
    (``sft.budget_reading_prompt``) the row opens with that question's prompt: ``encode_training_example``'s
    pre-filled ids cut after the same ``k`` tokens, so the choice can depend on the question too."""
    split = split_completion_ids(tokenizer, completion)
    if split is None:
        raise ValueError("a budget-reading row needs a completion that opens with <budget>N</budget><solution>")
    tags, solution = split[0], split[1][:k]
    if question is None:
        return tags + solution, [0] * len(tags) + [1] * len(solution)
    ids, mask = encode_training_example(tokenizer, question, completion, prefilled=True, system_prompt=system_prompt,
                                        instruction_in_user=instruction_in_user)  # fmt: skip
    end = mask.index(1) + len(solution)
    return ids[:end], mask[:end]


# --------------------------------------------------------------------------------------------- parsing

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_INT_RE = re.compile(r"\s*\+?(\d+)\s*")


def _brace_matches(text: str) -> dict[int, int]:
    """Map each ``{`` index to its matching ``}`` index in one linear pass (escaped ``\\{`` ignored)."""
    stack: list[int] = []
    match: dict[int, int] = {}
    prev = ""
    for i, ch in enumerate(text):
        if prev == "\\":
            prev = ""  # an escaped brace is not structure; "\\\\" escapes the backslash itself
            continue
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            match[stack.pop()] = i
        prev = ch
    return match


def extract_boxed(text: str) -> str | None:
    """Content of the last brace-matched ``\\boxed{...}`` (or ``\\fbox{...}``); None when there is none.

    An unclosed last ``\\boxed{`` falls back to the closed one before it.

    >>> extract_boxed(r"so \\boxed{\\frac{1}{2}} and not \\boxed{3")
    '\\\\frac{1}{2}'
    """
    starts = [m.end() - 1 for m in _BOXED_RE.finditer(text)]
    if not starts:
        return None
    match = _brace_matches(text)
    for open_idx in reversed(starts):
        close_idx = match.get(open_idx)
        if close_idx is not None:
            return text[open_idx + 1 : close_idx].strip()
    return None


def parse_gold(text: str | int | float) -> str | None:
    """The gold answer from a dataset field: GSM8K ``#### N``, else the last ``\\boxed{}``, else the text.

    >>> parse_gold("48/2 = 24 clips in May.\\n#### 72")
    '72'
    >>> parse_gold(r"The answer is $\\boxed{\\frac{3}{4}}$.")
    '\\\\frac{3}{4}'
    >>> parse_gold(51.0)
    '51'
    """
    if isinstance(text, bool):
        return None
    if isinstance(text, int | float):
        if text != text or text in (float("inf"), float("-inf")):
            return None
        return str(int(text)) if float(text).is_integer() else repr(float(text))
    if not isinstance(text, str):
        return None
    if "####" in text:
        ans = text.rsplit("####", 1)[1].strip().replace(",", "")
        return ans or None
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed or None
    ans = text.strip()
    return ans or None


def _fail(reason: str, detail: str, text: str, budget: int | None = None) -> ParsedCompletion:
    return ParsedCompletion(ok=False, reason=reason, detail=detail, budget=budget, answer=extract_boxed(text))


def _parse_budget(raw: str) -> tuple[int | None, str | None, str]:
    if len(raw) > 64:
        return None, Reason.BUDGET_ABSURD, f"budget is {len(raw)} characters long"
    m = _INT_RE.fullmatch(raw)
    if m is None:
        stripped = raw.strip()
        if re.fullmatch(r"-\s*\d+", stripped):
            return None, Reason.BUDGET_NOT_POSITIVE, f"budget {stripped!r} is negative"
        return None, Reason.BUDGET_NOT_INTEGER, f"budget {stripped!r} is not a whole number"
    digits = m.group(1)
    if len(digits) > len(str(MAX_BUDGET)) or int(digits) > MAX_BUDGET:
        return (
            None,
            Reason.BUDGET_ABSURD,
            f"budget {digits[:12]}{'…' if len(digits) > 12 else ''} > {MAX_BUDGET}",
        )
    value = int(digits)
    if value < 1:
        return None, Reason.BUDGET_NOT_POSITIVE, "budget is 0"
    return value, None, ""


def parse_completion(text: str) -> ParsedCompletion:
    """Parse a budgeted completion; never raises. A rejected completion carries a ``Reason`` and a detail.

    Leading and trailing whitespace is allowed; anything else outside the two tags is a format error.
    For a completion generated after ``prefill(b)``, parse ``prefill(b) + completion``.

    >>> p = parse_completion("<budget>40</budget><solution>6*7 = \\\\boxed{42}</solution>")
    >>> p.ok, p.budget, p.answer
    (True, 40, '42')
    >>> parse_completion("<budget>3.7</budget><solution>x</solution>").reason
    'budget_not_integer'
    """
    if not isinstance(text, str) or not text.strip():
        return ParsedCompletion(ok=False, reason=Reason.EMPTY, detail="completion is empty")
    n_open = text.count(BUDGET_OPEN)
    if n_open == 0:
        return _fail(Reason.MISSING_BUDGET, "no <budget> tag", text)
    if n_open > 1 or text.count(BUDGET_CLOSE) > 1:
        return _fail(Reason.MULTIPLE_BUDGET, f"{n_open} <budget> tags", text)
    start = text.index(BUDGET_OPEN)
    if text[:start].strip():
        return _fail(Reason.TEXT_BEFORE_BUDGET, f"text before <budget>: {text[:start].strip()[:40]!r}", text)
    close = text.find(BUDGET_CLOSE, start)
    if close < 0:
        return _fail(Reason.UNCLOSED_BUDGET, "<budget> is never closed", text)
    budget, reason, detail = _parse_budget(text[start + len(BUDGET_OPEN) : close])
    if reason is not None:
        return _fail(reason, detail, text)
    rest = text[close + len(BUDGET_CLOSE) :]
    sol_open = rest.find(SOLUTION_OPEN)
    if sol_open < 0:
        return _fail(Reason.MISSING_SOLUTION, "no <solution> after </budget>", text, budget)
    if rest[:sol_open].strip():
        return _fail(Reason.TEXT_BETWEEN_TAGS, "text between </budget> and <solution>", text, budget)
    body = rest[sol_open + len(SOLUTION_OPEN) :]
    if body.count(SOLUTION_OPEN) or body.count(SOLUTION_CLOSE) > 1:
        return _fail(Reason.MULTIPLE_SOLUTION, "more than one <solution> block", text, budget)
    sol_close = body.find(SOLUTION_CLOSE)
    if sol_close < 0:
        return _fail(Reason.UNCLOSED_SOLUTION, "<solution> is never closed", text, budget)
    tail = body[sol_close + len(SOLUTION_CLOSE) :]
    if tail.strip():
        return _fail(
            Reason.TEXT_AFTER_SOLUTION, f"text after </solution>: {tail.strip()[:40]!r}", text, budget
        )
    solution = body[:sol_close]
    return ParsedCompletion(ok=True, budget=budget, solution=solution, answer=extract_boxed(solution))


def cut_after_solution(text: str) -> str:
    """``text`` up to and including the first ``</solution>``: what a decoder stopping on that string means.

    A stop string can end inside a token, so the decoded text may run a few characters past it.

    >>> cut_after_solution("<budget>5</budget><solution>x</solution><|im")
    '<budget>5</budget><solution>x</solution>'
    """
    idx = text.find(SOLUTION_CLOSE)
    return text if idx < 0 else text[: idx + len(SOLUTION_CLOSE)]


# --------------------------------------------------------------------------------------------- token ids
#
# The model must see the same ids at the pre-fill boundary in training and at inference. Byte-level BPEs merge
# ``<solution>``'s closing ``>`` with what follows (SmolLM2: ``'>\\'`` before ``\\boxed``), so a training
# sequence tokenized whole would never show the model the lone ``'>'`` a pre-filled prompt ends in. sblite
# therefore tokenizes the prefill string ``<budget>N</budget><solution>`` apart from the text before it and
# after it, everywhere: SFT sequences (``encode_completion``), budget labels, GRPO and eval/generate prompts
# (``encode_prompt``) and the solution-length count (``count_solution_tokens``).

_PREFILL_HEAD_RE = re.compile(r"\s*<budget>\d+</budget><solution>")


def encode(tokenizer: TokenizerLike, text: str) -> list[int]:
    """Ids of ``text`` alone: no BOS/EOS added."""
    return list(tokenizer.encode(text, add_special_tokens=False)) if text else []


def encode_prompt(tokenizer: TokenizerLike, prompt: str) -> list[int]:
    """Ids of a rendered prompt; a trailing pre-fill (``prefill(N)``) is tokenized apart from the template."""
    head, budget = split_prefill(prompt)
    return encode(tokenizer, head) + (encode(tokenizer, prefill(budget)) if budget is not None else [])


def split_completion_ids(tokenizer: TokenizerLike, completion: str) -> tuple[list[int], list[int]] | None:
    """``(tag ids, solution ids)`` of a completion that opens with ``<budget>N</budget><solution>``, each
    tokenized apart (the split every SFT sequence and pre-fill uses); None for any other text."""
    m = _PREFILL_HEAD_RE.match(completion)
    if m is None:
        return None
    return encode(tokenizer, completion[: m.end()]), encode(tokenizer, completion[m.end() :])


def encode_completion(tokenizer: TokenizerLike, completion: str) -> list[int]:
    """Ids of a budgeted completion as the model writes it: ``<budget>N</budget><solution>`` apart from the
    solution, so its last token is the same ``'>'`` a pre-filled prompt ends in. Other text: tokenized whole.
    """
    split = split_completion_ids(tokenizer, completion)
    return encode(tokenizer, completion) if split is None else split[0] + split[1]


# --------------------------------------------------------------------------------------------- lengths


def count_tokens(text: str, tokenizer: TokenizerLike) -> int:
    """Token count of ``text`` alone (no BOS/EOS)."""
    return len(tokenizer.encode(text, add_special_tokens=False))


def solution_text(completion: str) -> str:
    """The text after the first ``</budget>`` (the whole text when there is none): what a budget pays for."""
    idx = completion.find(BUDGET_CLOSE)
    return completion if idx < 0 else completion[idx + len(BUDGET_CLOSE) :]


def count_solution_tokens(
    completion_ids: Sequence[int], tokenizer: Any, *, forced_budget: int | None = None
) -> int | None:
    """Solution tokens of a generated completion: the tokens after ``</budget>``, trailing EOS/PAD excluded.

    The one length measure of train, eval and generate. With ``forced_budget`` the completion was generated
    after ``prefill(forced_budget)``: it is counted as the ids of that pre-fill followed by the generated ids,
    exactly as if the model had written the tags itself (so ``<solution>``'s tokens count in both modes).
    Returns None when ``</budget>`` never appears. The boundary is found on decoded text (binary search over
    prefixes), so it holds whatever way the tokenizer split the tag.
    """
    ids = [int(i) for i in completion_ids]
    special = set(getattr(tokenizer, "all_special_ids", None) or ())
    while ids and ids[-1] in special:
        ids.pop()
    if forced_budget is not None:
        ids = encode(tokenizer, prefill(forced_budget)) + ids
    if BUDGET_CLOSE not in tokenizer.decode(ids, skip_special_tokens=False):
        return None
    lo, hi = 1, len(ids)  # smallest k such that decode(ids[:k]) contains the tag
    while lo < hi:
        mid = (lo + hi) // 2
        if BUDGET_CLOSE in tokenizer.decode(ids[:mid], skip_special_tokens=False):
            hi = mid
        else:
            lo = mid + 1
    return len(ids) - lo

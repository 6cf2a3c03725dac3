"""The budget guard: a decoding policy that makes a budget bind, whatever the model learned.

    sblite eval --model runs/demo --mode prefill --budgets 8,16,32,64,128 --budget-guard band
    sblite generate "…" --model runs/demo --budget 40 --budget-guard cap

A SelfBudgeter model states (or is pre-filled with) a budget and is *trained* to land near it; at small scale
it often does not (benchmarks/results/reproduce_cpu.md). The guard enforces the budget at decode time, in the
spirit of s1's "budget forcing" and ThinkPrune's hard cap, with the answer kept gradeable:

- both: an end of sequence before ``</solution>`` is turned into ``</solution>``, so a guarded solution is
  always closed and gradeable.
- ``cap``: when the solution nears its budget the guard lands it. If a ``\\boxed{}`` answer is already
  written it appends ``</solution>``; otherwise it writes ``\\boxed{``, lets the model fill in the answer
  (at most ``ANSWER_TOKENS`` tokens, closed with ``}`` if it runs on) and then appends ``</solution>``. The
  landing starts early enough that the solution ends at the budget.
- ``band``: ``cap``, and before ``FLOOR`` × budget the solution may not end: EOS and every token that could
  begin ``</solution>`` are masked, so the model has to keep writing.

The budget is the pre-filled one (``protocol.split_prefill`` of the prompt) or, in self mode, the one the
model writes (read the moment ``</budget>`` is generated). Solution tokens are counted exactly as
``protocol.count_solution_tokens`` counts them (everything after ``</budget>``, tags included), so what the
guard enforces is what ``sblite eval`` measures. Forced tokens are part of the completion and are counted.

Owns only the per-sequence policy (``BudgetGuard``) and the per-tokenizer token sets (``GuardTokens``); the
decoders that apply it are ``hf._decode_compact`` (batches) and ``logits_processor`` (``model.generate``,
used by the live ``sblite generate``). Imports no heavy library at module level.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sblite import protocol

GuardMode = Literal["off", "cap", "band"]
GUARD_MODES: tuple[str, ...] = ("off", "cap", "band")
#: ``band``: the solution may not end before this share of its budget (±50% adherence holds above 0.5)
FLOOR = 0.6
#: tokens the model may spend on the answer inside a guard-written ``\boxed{``
ANSWER_TOKENS = 8
_BUDGET_RE = re.compile(re.escape(protocol.BUDGET_OPEN) + r"\s*(\d+)\s*" + re.escape(protocol.BUDGET_CLOSE))


@dataclass(frozen=True)
class GuardTokens:
    """What a guard needs from one tokenizer: the ids it writes and the ids that could end a solution."""

    close: tuple[int, ...]  # "</solution>"
    boxed: tuple[int, ...]  # " \boxed{"
    brace: tuple[int, ...]  # "}"
    enders: tuple[int, ...]  # EOS ids and every token containing "</" or ending in "<"
    eos: int  # what a landed sequence writes when its decoder runs on (``model.generate``)
    eos_ids: tuple[int, ...]  # every id that ends a sequence
    prefill_tail: dict[int, int]  # budget → solution tokens a pre-fill already holds (its "<solution>")

    @classmethod
    def for_tokenizer(cls, tokenizer: Any, eos: Sequence[int]) -> GuardTokens:
        vocab = len(tokenizer)
        texts = tokenizer.batch_decode([[i] for i in range(vocab)], skip_special_tokens=False)
        enders = {int(e) for e in eos} | {i for i, t in enumerate(texts) if "</" in t or t.endswith("<")}
        return cls(
            close=tuple(protocol.encode(tokenizer, protocol.SOLUTION_CLOSE)),
            boxed=tuple(protocol.encode(tokenizer, " \\boxed{")),
            brace=tuple(protocol.encode(tokenizer, "}")),
            enders=tuple(sorted(enders)),
            eos=int(eos[0]),
            eos_ids=tuple(int(e) for e in eos),
            prefill_tail={},
        )

    def prefill_tokens(self, tokenizer: Any, budget: int) -> int:
        """Solution tokens already in ``prefill(budget)`` (``<solution>``'s ids), as the length measure counts."""
        if budget not in self.prefill_tail:
            self.prefill_tail[budget] = (
                protocol.count_solution_tokens([], tokenizer, forced_budget=budget) or 0
            )
        return self.prefill_tail[budget]


class BudgetGuard:
    """One sequence's guard. Before each token ask ``forced()`` (the one token allowed, or None) and
    ``banned()`` (token ids masked now); after it, ``observe(token)``. ``done`` means the solution is closed:
    the decoder stops the sequence there (finish reason "stop")."""

    def __init__(self, tokens: GuardTokens, tokenizer: Any, mode: GuardMode, *, budget: int | None) -> None:
        if mode not in ("cap", "band"):
            raise ValueError(f"budget guard mode must be one of cap, band; got {mode!r}")
        self.tokens, self.tokenizer, self.mode = tokens, tokenizer, mode
        self.budget = budget
        self.n = (
            tokens.prefill_tokens(tokenizer, budget) if budget is not None else 0
        )  # solution tokens so far
        self.ids: list[int] = []  # generated ids (self mode: from the start; after the budget: the solution)
        self.queue: list[int] = []  # ids the guard writes next
        self.answer_left: int | None = None  # tokens left for the answer inside a guard-written \boxed{
        self.answer_from = 0  # index in ids where that answer starts
        self.done = False
        self.forced_count = 0  # tokens the guard wrote (recorded with the generation)
        self._closing = False  # the queue ends in "</solution>"
        self.seen = 0  # tokens observed
        if budget is not None:
            self._plan("")

    # ------------------------------------------------------------------------------------------ policy
    def forced(self) -> int | None:
        if self.done:
            return self.tokens.eos
        return self.queue[0] if self.queue else None

    def banned(self) -> tuple[int, ...]:
        if self.budget is None or self.done or self.queue:
            return ()
        if self.answer_left is not None:  # inside the guard's \boxed{: the answer, then "}"
            return self.tokens.enders
        if self.mode == "band" and self.n < math.ceil(FLOOR * self.budget):
            return self.tokens.enders
        return ()

    def observe(self, token: int) -> None:
        token = int(token)
        self.seen += 1
        self.ids.append(token)
        if self.done:
            return
        if self.queue:
            self.forced_count += 1
            self.queue.pop(0)
            self.n += 1
            if not self.queue and self._closing:
                self.done = True
            return
        if self.budget is None:  # self mode: wait for the model's own "<budget>N</budget>"
            m = _BUDGET_RE.search(self.tokenizer.decode(self.ids, skip_special_tokens=False))
            if m is not None:
                self.budget, self.ids = max(1, int(m.group(1))), []
                self._plan("")
            return
        self.n += 1
        text = self.tokenizer.decode(self.ids, skip_special_tokens=False)
        if protocol.SOLUTION_CLOSE in text:  # the model closed the solution itself
            self.done = True
            return
        if token == self.tokens.close[0] and self.answer_left is None and len(self.tokens.close) > 1:
            self._close(())  # the model began "</solution>": the guard finishes it
            self.queue = self.queue[1:]
            return
        if self.answer_left is not None:
            self.answer_left -= 1
            answer = self.tokenizer.decode(self.ids[self.answer_from :], skip_special_tokens=False)
            if "}" in answer:
                self._close(())
            elif (
                self.answer_left <= 0
                or self.n + len(self.tokens.brace) + len(self.tokens.close) >= self.budget
            ):
                self._close(self.tokens.brace)
            return
        self._plan(text)

    def _plan(self, text: str) -> None:
        """Start the landing when what is left of the budget only just holds it."""
        assert self.budget is not None
        close = len(self.tokens.close)
        landing = len(self.tokens.boxed) + 2 + len(self.tokens.brace) + close  # a short answer, then the tags
        if self.n + close >= self.budget and protocol.extract_boxed(text) is not None:
            self._close(())
        elif self.n + landing >= self.budget and protocol.extract_boxed(text) is None:
            self.queue = list(self.tokens.boxed)
            self.answer_left = ANSWER_TOKENS
            self.answer_from = len(self.ids) + len(self.tokens.boxed)

    def _close(self, before: tuple[int, ...]) -> None:
        self.answer_left = None
        self.queue = [*before, *self.tokens.close]
        self._closing = True

    # ------------------------------------------------------------------------------------------ logits
    def constrain(self, logits: Any) -> Any:
        """``logits`` (one row, a torch tensor) with this step's policy applied, in place."""
        forced = self.forced()
        if forced is not None:
            keep = logits[forced].clone()
            logits.fill_(float("-inf"))
            logits[forced] = keep if math.isfinite(float(keep)) else 0.0
            return logits
        banned = self.banned()
        if banned:
            logits[list(i for i in banned if i < logits.shape[-1])] = float("-inf")
        elif self.budget is not None and self.answer_left is None:
            # free to end: an EOS becomes "</solution>"'s first token (observe forces the rest), so a guarded
            # solution is always closed and gradeable; max, not a sum, so greedy picks it only where it picked EOS
            eos = [i for i in self.tokens.eos_ids if i < logits.shape[-1]]
            first = self.tokens.close[0]
            logits[first] = logits[[first, *eos]].max()
            logits[eos] = float("-inf")
        return logits


def guards_for(
    tokenizer: Any, prompts: Sequence[str], mode: GuardMode, eos: Sequence[int], n: int
) -> list[BudgetGuard] | None:
    """``n`` guards per prompt (each knows its prompt's pre-filled budget), or None for ``mode == "off"``."""
    if mode == "off":
        return None
    if mode not in GUARD_MODES:
        raise ValueError(f"budget guard mode must be one of {', '.join(GUARD_MODES)}; got {mode!r}")
    tokens = GuardTokens.for_tokenizer(tokenizer, eos)
    return [
        BudgetGuard(tokens, tokenizer, mode, budget=protocol.split_prefill(p)[1])
        for p in prompts
        for _ in range(n)
    ]


def logits_processor(guards: list[BudgetGuard], prompt_len: int) -> Any:
    """The guards behind ``model.generate``: a transformers ``LogitsProcessor`` with one guard per row, fed
    each row's last token on every call after the first (``prompt_len`` is the padded prompt's length)."""
    from transformers import LogitsProcessor

    class GuardLogitsProcessor(LogitsProcessor):
        def __call__(self, input_ids: Any, scores: Any) -> Any:
            if input_ids.shape[1] > prompt_len:
                for g, tok in zip(guards, input_ids[:, -1].tolist(), strict=True):
                    if not g.done:
                        g.observe(tok)
            for row, g in enumerate(guards):
                g.constrain(scores[row])
            return scores

    return GuardLogitsProcessor()

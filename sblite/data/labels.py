"""Budget labels and difficulty for prepared questions (SelfBudgeter Phase 1).

Two labelling modes produce the same thing, a ``Label`` per question: ``b_max`` (a budget in the target
model's tokens, or None for "infinity") and, when a correct response exists, the SFT completion
``<budget>b_max</budget><solution>…</solution>``.

- ``reference`` (offline): the dataset's reference solution, rewritten to end in ``\\boxed{answer}`` (GSM8K:
  the ``<<calc>>`` annotations and the ``#### N`` line become "The answer is \\boxed{N}."; a solution whose
  last ``\\boxed{}`` is not the gold answer gets that sentence appended). Questions without a reference
  solution get ``b_max = None`` (GRPO only).
- ``sample`` (the paper's): k responses per question from the base model, prompted *without* the budget
  format; each is verified with ``sblite.verify.is_correct``. A response cut at ``max_new_tokens`` counts
  as wrong (it never finished). ``b_max`` is the budget of the shortest correct response, and that response
  becomes the SFT target (``targets="all"``: every distinct correct response does, each labelled with its
  own length, so one question teaches several budget → length pairs). ``styles`` samples k responses under
  each of several instructions (``protocol.SAMPLE_STYLES``: plain step-by-step and brief), pooled. A correct response with no ``\\boxed{}`` gets " The answer is \\boxed{gold}."
  appended first, so every SFT target ends in a boxed answer. Generations are appended to a cache file as
  each batch finishes, so a killed run resumes without redoing finished questions.

Budget measure: ``budget_for(solution)`` is the number of tokens after ``</budget>`` when the completion is
tokenised as SFT trains on it (``protocol.encode_completion``: the tags apart from the solution), exactly what
``protocol.count_solution_tokens`` measures at training and evaluation time, forced budget or not. It
can be one less than ``count_tokens("<solution>…</solution>")`` because BPE vocabularies merge the ``><``
between the tags (Qwen2 does).

Difficulty (always a float in [0, 1]; higher is harder), first that applies:
1. sample mode: ``1 - pass_rate`` over the k samples;
2. a dataset level (MATH 1–5): ``(level - 1) / (max_level - 1)``;
3. a reference solution in GSM8K style (one step per line before ``####``):
   ``(min(steps, 9) - 1) / 8``, so 1 step → 0.0 and 9+ steps → 1.0;
4. otherwise 0.5 ("unknown").

This module owns labels and difficulty; it must not read datasets, build the sampling engine
(``sblite.data.engines``) or write the prepared files (``sblite.data.prepare``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sblite.data.fields import Row
from sblite.protocol import (
    PLAIN_SYSTEM_PROMPT,
    count_solution_tokens,
    encode_completion,
    extract_boxed,
    parse_completion,
    render_completion,
    render_prompt,
)

_CALC_RE = re.compile(r"<<[^<>]*>>")
MAX_STEPS = 9
UNKNOWN_DIFFICULTY = 0.5


@dataclass
class Label:
    """The labelling result for one question."""

    b_max: int | None
    completion: str | None = None  # the SFT target; None when no correct response exists
    #: every SFT target (``targets="all"``: each distinct correct response, shortest first; else [completion])
    completions: list[str] = field(default_factory=list)
    difficulty: float = UNKNOWN_DIFFICULTY
    difficulty_source: str = "unknown"
    extra: dict[str, Any] = field(default_factory=dict)  # sample mode: pass_rate, lengths, k


# ------------------------------------------------------------------------------------------- budgets


def budget_for(solution: str, tokenizer: Any) -> tuple[int, str]:
    """``(budget, completion)`` with ``completion = render_completion(budget, solution)`` and ``budget`` its
    own ``count_solution_tokens`` (tokens after ``</budget>``), found as a fixed point.

    The tokens after the tag do not depend on the digits before it in byte-level BPEs, so this settles
    after one check; the loop guards tokenizers where they would.
    """
    budget = 1
    for _ in range(4):
        completion = render_completion(budget, solution)
        ids = encode_completion(tokenizer, completion)  # the ids SFT trains on
        n = count_solution_tokens(ids, tokenizer)
        if n is None or n < 1:
            raise ValueError("the tokenizer lost the </budget> tag")
        if n == budget:
            return budget, completion
        budget = n
    return budget, render_completion(budget, solution)


def rendered_targets(row: Row, tokenizer: Any, renderings: Sequence[str]) -> list[tuple[str, int, str]]:
    """``(rendering, budget, completion)`` for each of ``renderings`` (``synthetic.VERBOSITY`` names): the
    row's worked solution said at that length, labelled with its own ``budget_for``. These become pre-filled
    SFT rows (``data.renderings``): one question, several budgets, each paired with the length it buys.
    ``ValueError`` when the row has no solution in the arithmetic generator's format."""
    from sblite.data.synthetic import render_solution

    if not row.solution:
        raise ValueError("the row has no reference solution")
    worked = {"answer": row.answer, "solution": row.solution}
    return [(v, *budget_for(render_solution(worked, v), tokenizer)) for v in renderings]


def answers_match_exactly(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    norm = lambda s: re.sub(r"\s+", "", s).strip("$").replace("\\!", "").replace(",", "")  # noqa: E731
    return norm(a) == norm(b)


def with_boxed_answer(text: str, gold: str) -> str:
    """``text`` with " The answer is \\boxed{gold}." appended unless it already has a non-empty ``\\boxed{}``."""
    if extract_boxed(text):
        return text
    sep = "" if not text or text.endswith((" ", "\n")) else " "
    return f"{text}{sep}The answer is \\boxed{{{gold}}}."


def reference_solution(row: Row) -> str | None:
    """The reference solution rewritten to end in ``\\boxed{answer}``; None when the row has none."""
    sol = row.solution
    if not sol:
        return None
    if "####" in sol:
        body = _CALC_RE.sub("", sol.rsplit("####", 1)[0]).strip()
        final = f"The answer is \\boxed{{{row.answer}}}."
        return f"{body}\n{final}" if body else final
    if answers_match_exactly(extract_boxed(sol), row.answer):
        return sol
    return f"{sol.rstrip()}\nThe answer is \\boxed{{{row.answer}}}."


# ------------------------------------------------------------------------------------------- difficulty


def reference_steps(solution: str | None) -> int | None:
    """GSM8K-style step count: non-empty lines before ``####``; None for other solution styles."""
    if not solution or "####" not in solution:
        return None
    body = solution.rsplit("####", 1)[0]
    return max(1, sum(1 for line in body.splitlines() if line.strip()))


def static_difficulty(row: Row, max_level: int = 5) -> tuple[float, str]:
    """Difficulty without sampling: from the level, else the reference-step proxy, else 0.5."""
    if row.level is not None:
        top = max(max_level, 2)
        return min(1.0, max(0.0, (row.level - 1) / (top - 1))), "level"
    steps = reference_steps(row.solution)
    if steps is not None:
        return (min(steps, MAX_STEPS) - 1) / (MAX_STEPS - 1), "steps"
    return UNKNOWN_DIFFICULTY, "unknown"


def label_reference(row: Row, tokenizer: Any, max_level: int = 5) -> Label:
    difficulty, how = static_difficulty(row, max_level)
    sol = reference_solution(row)
    if sol is None:
        return Label(b_max=None, difficulty=difficulty, difficulty_source=how)
    budget, completion = budget_for(sol, tokenizer)
    return Label(
        b_max=budget, completion=completion, completions=[completion], difficulty=difficulty, difficulty_source=how
    )


# ------------------------------------------------------------------------------------------- sampling

#: ``generate(prompts, seed) -> k generations per prompt``; each generation has ``text`` and
#: ``finish_reason`` ("stop" | "length"). ``sblite.generate.hf.generate_batch`` bound to a model fits.
GenerateFn = Callable[[list[str], int], list[list[Any]]]


@dataclass(frozen=True)
class SampleSettings:
    k: int = 4
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 512
    batch_size: int = 8
    seed: int = 0
    instruction_in_user: bool = False
    system_prompt: str = PLAIN_SYSTEM_PROMPT


def batch_seed(seed: int, ids: Sequence[str]) -> int:
    """A per-batch seed from the run seed and the batch's question ids (stable across resumes)."""
    h = hashlib.sha256(json.dumps([seed, list(ids)]).encode()).digest()
    return int.from_bytes(h[:4], "big")


class SampleCache:
    """Append-only JSONL of finished questions' generations; one flushed line per question.

    A line is ``{"id", "prompt_sha", "samples": [{"text", "n_tokens", "finish_reason"}]}``. A torn last line
    (the process died mid-write) is ignored on load.
    """

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        if path.is_file():
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                        self.entries[rec["id"]] = rec
                    except (json.JSONDecodeError, KeyError, TypeError):
                        continue

    def get(self, qid: str, prompt_sha: str) -> list[dict[str, Any]] | None:
        rec = self.entries.get(qid)
        if rec is None or rec.get("prompt_sha") != prompt_sha:
            return None
        return rec["samples"]

    def append_many(self, recs: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            for rec in recs:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                self.entries[rec["id"]] = rec
            f.flush()
            os.fsync(f.fileno())


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def sample_prompts(rows: Sequence[Row], tokenizer: Any, settings: SampleSettings) -> list[str]:
    """The plain (no budget format) prompt for each row, in the model's chat template."""
    return [
        render_prompt(
            tokenizer,
            r.question,
            system_prompt=settings.system_prompt,
            instruction_in_user=settings.instruction_in_user,
        )
        for r in rows
    ]


def sample_generations(
    rows: Sequence[Row],
    prompts: Sequence[str],
    generate: GenerateFn,
    settings: SampleSettings,
    cache: SampleCache,
    *,
    prompt_lengths: Sequence[int] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """k generations per row, from the cache when present, else generated in batches and appended to it.

    Batches are formed deterministically (rows ordered by prompt length, then cut into ``batch_size``), so
    a resumed run rebuilds the same batches and its samples equal an uninterrupted run's; a batch whose
    questions are all cached is skipped. ``on_progress(done, cached)`` is called after each batch.
    """
    order = list(range(len(rows)))
    if prompt_lengths is not None:
        order.sort(key=lambda i: prompt_lengths[i])
    out: dict[str, list[dict[str, Any]]] = {}
    done = 0
    for start in range(0, len(order), settings.batch_size):
        idx = order[start : start + settings.batch_size]
        shas = [_sha(prompts[i]) for i in idx]
        cached = [cache.get(rows[i].id, s) for i, s in zip(idx, shas, strict=True)]
        if all(c is not None for c in cached):
            for i, c in zip(idx, cached, strict=True):
                out[rows[i].id] = c  # type: ignore[assignment]
            done += len(idx)
            if on_progress:
                on_progress(len(idx), len(idx))
            continue
        gens = generate([prompts[i] for i in idx], batch_seed(settings.seed, [rows[i].id for i in idx]))
        recs = []
        for i, s, g in zip(idx, shas, gens, strict=True):
            samples = [
                {"text": x.text, "n_tokens": int(x.n_tokens), "finish_reason": x.finish_reason} for x in g
            ]
            out[rows[i].id] = samples
            recs.append({"id": rows[i].id, "prompt_sha": s, "samples": samples})
        cache.append_many(recs)
        done += len(idx)
        if on_progress:
            on_progress(len(idx), 0)
    return out


TARGETS = ("shortest", "all")


def label_from_samples(
    row: Row,
    samples: Sequence[dict[str, Any]],
    tokenizer: Any,
    verify: Callable[[str, str], bool],
    *,
    targets: str = "shortest",
) -> Label:
    """Verify each sample, measure each one's budget, pick the SFT target(s).

    ``b_max`` is the shortest correct sample's budget. ``targets="shortest"`` makes that sample the one SFT
    target; ``"all"`` keeps every distinct correct one, shortest first. ``lengths[i]`` is the budget sample
    i would carry as an SFT target (the same measure as ``b_max``); None for a sample cut at
    ``max_new_tokens``. A correct sample whose wrapped form would not parse (it contains the protocol's own
    tags) is not used as a target.
    """
    if targets not in TARGETS:
        raise ValueError(f"targets={targets!r}: choose one of {', '.join(TARGETS)}")
    k = len(samples)
    lengths: list[int | None] = []
    correct: list[bool] = []
    good: dict[str, int] = {}  # completion -> budget, distinct correct targets
    for s in samples:
        text = s["text"].strip()
        finished = s.get("finish_reason") == "stop"
        ok = finished and bool(text) and verify(text, row.answer)
        correct.append(ok)
        if not finished or not text:
            lengths.append(None)
            continue
        body = with_boxed_answer(text, row.answer) if ok else text
        budget, completion = budget_for(body, tokenizer)
        lengths.append(budget)
        if ok and parse_completion(completion).ok:
            good.setdefault(completion, budget)
    ranked = sorted(good.items(), key=lambda kv: kv[1])  # stable: ties keep sample order
    best = (ranked[0][1], ranked[0][0]) if ranked else None
    pass_rate = sum(correct) / k if k else 0.0
    extra = {"pass_rate": pass_rate, "lengths": lengths, "k": k, "correct": correct}
    return Label(
        b_max=best[0] if best else None,
        completion=best[1] if best else None,
        completions=[c for c, _ in ranked] if targets == "all" else ([best[1]] if best else []),
        difficulty=1.0 - pass_rate,
        difficulty_source="pass_rate",
        extra=extra,
    )

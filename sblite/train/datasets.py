"""What each training stage trains on: prepared rows → the datasets TRL's trainers receive.

- SFT: pre-tokenized ``input_ids`` + ``completion_mask`` built by ``protocol.encode_training_example``, so the
  ``<budget>N</budget><solution>`` boundary is tokenized exactly as inference pre-fills it.
- GRPO: prompts rendered by ``protocol.render_prompt`` and handed to TRL as text (checked to tokenize to
  sblite's ids), a ``grpo.prefill_fraction`` share of them pre-filled with a forced budget, plus the reward
  columns (``answer``, ``b_max``, ``level``). Prompts over ``data.max_prompt_length`` come back as rejects.

No trainer is built here and no model is loaded; TRL and datasets are imported inside the builders.
"""

from __future__ import annotations

import math
import random
from typing import Any

from sblite import protocol
from sblite.config import Recipe
from sblite.train import TrainingError
from sblite.train.weighted import LOSS_WEIGHT_COLUMN

#: tokens a completion spends before its solution: "<budget>1234</budget>" and slack for the tag split
BUDGET_TAG_TOKENS = 16


def prompt_options(cfg: Recipe) -> dict[str, Any]:
    return {"instruction_in_user": cfg.model.instruction_in_user}


def build_sft_dataset(rows: list[dict[str, Any]], cfg: Recipe, tokenizer, *, reading_phase: bool = False):
    """Tokenized SFT examples (``input_ids`` + ``completion_mask``, which TRL turns into completion-only
    labels): ``protocol.encode_training_example`` keeps the pre-fill boundary where inference has it. A row
    marked ``prefilled`` (``data.renderings``) trains the solution after a budget given as context; with
    ``sft.budget_reading_tokens`` each row also gives a short prompt-less row (``protocol.encode_budget_reading``;
    with ``sft.budget_reading_prompt`` its question's prompt first), and ``sft.budget_reading_samples`` adds more
    at drawn budgets (``budget_reading_draws``). With
    ``sft.budget_stating_rows`` M, each self row (not pre-filled) also gives M rows that end after its budget
    (``protocol.encode_budget_stating``), grouped with the reading rows or apart (``sft.budget_stating_length``).

    With ``sft.budget_reading_epochs`` > 0 the budget-reading rows are a phase of their own: the default call
    gives the full rows only and ``reading_phase=True`` gives the reading rows only (``None`` when there are
    none); with 0 the default call gives both, mixed. With budget-reading or -stating rows every example also has a
    ``length`` column for ``group_by_length`` (``shared_lengths``; ``keep_columns`` keeps it for TRL)."""
    from datasets import Dataset

    if not rows:
        raise TrainingError("the prepared sft.jsonl is empty: no question had a correct labelled response")
    separate = cfg.sft.budget_reading_epochs > 0
    full, reading = [], []
    k, stating = cfg.sft.budget_reading_tokens, cfg.sft.budget_stating_rows
    weight = cfg.sft.budget_tag_weight
    stating_group = STATING if cfg.sft.budget_stating_length == "own" else READING
    if stating and all(r.get("prefilled") for r in rows):
        raise TrainingError(f"sft.budget_stating_rows={stating}: every SFT row is pre-filled, so none states its own "
                            "budget; set it to 0, or prepare self rows (sampled answers, data.self_renderings)")

    def reading_prompt(question: str) -> dict[str, Any]:  # sft.budget_reading_prompt: the row's question too
        return {"question": question, **prompt_options(cfg)} if cfg.sft.budget_reading_prompt else {}

    if not stating and (n := sum(bool(r.get("stating")) for r in rows)):
        raise TrainingError(f"the prepared data has {n} stating-question rows (data.stating_questions), which train "
                            "only as budget-stating rows, but sft.budget_stating_rows is 0; set it (e.g. 2) or "
                            "prepare without --stating-questions")
    for r in rows:
        try:
            if stating and not r.get("prefilled"):
                ids_s, mask_s = protocol.encode_budget_stating(
                    tokenizer, r["question"], r["completion"], **prompt_options(cfg))  # fmt: skip
                full += [{"input_ids": ids_s, "completion_mask": mask_s, LENGTH_COLUMN: stating_group,
                          QUESTION: r["question"]}] * stating
            if r.get("stating"):  # data.stating_questions: the number only, not one more short answer to copy
                continue
            ids, mask = protocol.encode_training_example(
                tokenizer, r["question"], r["completion"], prefilled=bool(r.get("prefilled")), **prompt_options(cfg)
            )
            example = {"input_ids": ids, "completion_mask": mask, LENGTH_COLUMN: len(ids)}
            if weight != 1 and not r.get("prefilled"):
                example[LOSS_WEIGHT_COLUMN] = budget_tag_weights(tokenizer, r["completion"], mask, weight)
        except ValueError as err:
            raise TrainingError(f"SFT example {r.get('id')!r}: {err}") from None
        full.append(example)
        if k:
            ids, mask = protocol.encode_budget_reading(tokenizer, r["completion"], k, **reading_prompt(r["question"]))
            (reading if separate else full).append({"input_ids": ids, "completion_mask": mask, LENGTH_COLUMN: READING,
                                                    QUESTION: r["question"]})
    for budget, completion, question in budget_reading_draws(rows, cfg.sft.budget_reading_samples, seed=cfg.sft.seed):
        ids, mask = protocol.encode_budget_reading(tokenizer, protocol.with_budget(completion, budget), k,
                                                   **reading_prompt(question))  # fmt: skip
        (reading if separate else full).append({"input_ids": ids, "completion_mask": mask, LENGTH_COLUMN: READING,
                                                QUESTION: question})
    if weight != 1:  # every row needs the column; only self rows' tags weigh more than 1
        full = [{LOSS_WEIGHT_COLUMN: [1.0] * len(e["input_ids"]), **e} for e in full]
        reading = [{LOSS_WEIGHT_COLUMN: [1.0] * len(e["input_ids"]), **e} for e in reading]
    by_question = cfg.sft.budget_rows_by_question
    if reading_phase:
        return Dataset.from_list(shared_lengths(reading, by_question=by_question)) if reading else None
    if not (k or stating):  # the paper's rows: no length column
        return Dataset.from_list([{c: e[c] for c in ("input_ids", "completion_mask", LOSS_WEIGHT_COLUMN) if c in e}
                                  for e in full])  # fmt: skip
    return Dataset.from_list(shared_lengths(full, by_question=by_question))


#: the dataset column transformers' ``group_by_length`` sampler reads (``TrainingArguments.length_column_name``)
LENGTH_COLUMN = "length"


def budget_tag_weights(tokenizer, completion: str, mask: list[int], weight: float) -> list[float]:
    """Per-token loss weights of a self row (``sft.budget_tag_weight``): ``weight`` on the
    ``<budget>N</budget><solution>`` ids it writes (what a budget-stating row trains), 1 elsewhere. ``mask`` is
    the row's completion mask (``protocol.encode_training_example``): the tags are its first trained ids."""
    start, end = protocol.budget_tag_span(tokenizer, completion, mask, what="sft.budget_tag_weight")
    weights = [1.0] * len(mask)
    weights[start:end] = [float(weight)] * (end - start)
    return weights


def keep_columns(dataset, trl_args: dict[str, Any]) -> dict[str, Any]:
    """What the SFT config needs for ``dataset`` under ``sft.trl_args``: TRL's SFTTrainer drops every column its
    model call does not take before the sampler is built, so a ``length`` column only reaches
    ``group_by_length`` with ``remove_unused_columns=False`` (TRL's collator reads the columns it knows and
    ignores the rest). Without that sampler nothing reads the column and the user's setting stands; asking
    for both is refused when the recipe loads (``config.SFTStage``).

    >>> from datasets import Dataset
    >>> ds = Dataset.from_list([{"input_ids": [1], LENGTH_COLUMN: 3}])
    >>> keep_columns(ds, {"train_sampling_strategy": "group_by_length"}), keep_columns(ds, {})
    ({'remove_unused_columns': False}, {})
    """
    grouped = trl_args.get("train_sampling_strategy") == "group_by_length" and LENGTH_COLUMN in dataset.column_names
    return {"remove_unused_columns": False} if grouped or LOSS_WEIGHT_COLUMN in dataset.column_names else {}


#: placeholders in the ``length`` column until ``shared_lengths`` gives each kind of short row its shared length
READING, STATING = "reading", "stating"
#: a short row's question, read by ``shared_lengths`` (``sft.budget_rows_by_question``) and then dropped
QUESTION = "_question"


def shared_lengths(examples: list[dict[str, Any]], *, by_question: bool = False) -> list[dict[str, Any]]:
    """``examples`` whose ``length`` column (read by ``train_sampling_strategy: group_by_length``) is a full
    row's true length and, for the budget-reading rows (``READING``) and the budget-stating rows (``STATING``),
    one shared value per kind: the longest row of that kind.

    Grouping by the true length would sort the reading rows by their budget's digit count (``<budget>8`` is one
    token shorter than ``<budget>64``, two shorter than ``<budget>128``), so no batch would hold a 2- and a
    3-digit budget side by side and the model never learns what the number of digits means: cold_start's
    ``reading-draws`` variant lost all reading that way (first-token TV 0.026; with the shared length 0.80, and a
    pre-fill sweep slope of 0.72: benchmarks/results/cold_start_draws_shared.md). With one shared length the
    reading rows stay in random order among themselves, still apart from the long rows that would drown their
    few loss tokens. The stating rows (``sft.budget_stating_length``) come as ``READING`` (default: they share
    the reading rows' batches, and pad every reading row there to a prompt's length: 1.83× the real tokens of
    the demo's candidate cold start) or ``STATING`` (a length of their own: 1.17×; benchmarks/results/
    sft_padding.json).

    ``by_question`` (``sft.budget_rows_by_question``) adds a fraction under 1 per question to that shared value,
    so the sampler's sort (stable, within each megabatch) puts a question's short rows side by side, still in
    random order among themselves, and a batch holds few prompts (``sft.pack_shared_prompts`` computes each
    once).

    >>> rows = [{"input_ids": [1] * 9, "length": READING, QUESTION: "b"}, {"input_ids": [1] * 8, "length": READING,
    ...         QUESTION: "a"}, {"input_ids": [1] * 30, "length": STATING, QUESTION: "a"},
    ...         {"input_ids": [1] * 40, "length": 40}]
    >>> [r["length"] for r in shared_lengths(rows)], [round(r["length"], 2) for r in shared_lengths(rows, by_question=True)]
    ([9, 9, 30, 40], [9.67, 9.33, 30.33, 40])
    """
    shared = {kind: max((len(e["input_ids"]) for e in examples if e[LENGTH_COLUMN] == kind), default=0)
              for kind in (READING, STATING)}  # fmt: skip
    questions = sorted({e[QUESTION] for e in examples if QUESTION in e})
    rank = {q: (n + 1) / (len(questions) + 1) for n, q in enumerate(questions)} if by_question else {}

    def length(e: dict[str, Any]) -> int | float:
        return shared[e[LENGTH_COLUMN]] + rank.get(e[QUESTION], 0) if isinstance(e[LENGTH_COLUMN], str) else e[LENGTH_COLUMN]

    return [{**{c: v for c, v in e.items() if c != QUESTION}, LENGTH_COLUMN: length(e)} for e in examples]


def labelled_budgets(rows: list[dict[str, Any]]) -> dict[str, list[tuple[int, str]]]:
    """Each question's ``(budget, completion)`` rows, in file order; stating-question rows (``stating``, which
    train as budget-stating rows only) are not labelled answers to read into."""
    by_question: dict[str, list[tuple[int, str]]] = {}
    for r in rows:
        if r.get("stating"):
            continue
        budget = protocol.parse_completion(r["completion"]).budget
        if budget is None:
            raise TrainingError(f"SFT row {r.get('id')!r}: no <budget>N</budget> to draw reading rows around")
        by_question.setdefault(r["question"], []).append((budget, r["completion"]))
    return by_question


def _one_length(labelled: list[tuple[int, str]]) -> bool:
    """A question labelled at one length has no range to draw reading budgets in (``budget_reading_draws``)."""
    return len({b for b, _ in labelled}) < 2


def undrawn_questions(rows: list[dict[str, Any]]) -> int:
    """How many questions ``budget_reading_draws`` passes over: those labelled at one length only."""
    return sum(_one_length(labelled) for labelled in labelled_budgets(rows).values())


def budget_reading_draws(rows: list[dict[str, Any]], per_question: int, *, seed: int) -> list[tuple[int, str, str]]:
    """``(budget, completion, question)`` for ``sft.budget_reading_samples``: per question, ``per_question`` budgets
    drawn log-uniformly over [½ × its shortest, 1.5 × its longest labelled budget], each paired with the
    question's labelled completion whose budget is nearest in ratio — what a user who pre-fills that budget
    should get. Labels alone show a few exact numbers per style; the draws cover the range between them. A
    question labelled at one length has no range: its draws would all read into that one answer, teaching that
    the number does not matter, so it gets none (``undrawn_questions`` counts them).

    >>> rows = [{"question": "q", "completion": f"<budget>{b}</budget><solution>s{b}</solution>"} for b in (10, 40)]
    >>> sorted({(b <= 20, c[-14:-11]) for b, c, _ in budget_reading_draws(rows, 50, seed=0)})
    [(False, 's40'), (True, 's10')]
    >>> budget_reading_draws(rows[:1] * 2, 50, seed=0), undrawn_questions(rows[:1] * 2)
    ([], 1)
    """
    if not per_question:
        return []
    rng = random.Random(seed)
    draws = []
    for question, labelled in labelled_budgets(rows).items():
        if _one_length(labelled):  # no other answer a budget could ask for
            continue
        lo = max(1.0, min(b for b, _ in labelled) / 2)
        hi = max(lo, 1.5 * max(b for b, _ in labelled))
        for _ in range(per_question):
            n = max(1, round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))
            _, completion = min(labelled, key=lambda bc: abs(math.log(n / bc[0])))
            draws.append((n, completion, question))
    return draws


def completion_tokens_needed(budget: float, cfg: Recipe) -> float:
    """Room a completion with this budget needs: the budget × ``grpo.completion_headroom`` + the tags.

    >>> from sblite.recipes import load_recipe
    >>> completion_tokens_needed(100, load_recipe("tiny-cpu", ["grpo.completion_headroom=1.5"]))
    166.0
    """
    return budget * cfg.grpo.completion_headroom + BUDGET_TAG_TOKENS


def check_completion_length(rows: list[dict[str, Any]], cfg: Recipe) -> dict[str, float]:
    """Refuse a GRPO recipe whose ``max_completion_length`` would truncate most budgeted completions.

    A completion needs its budget plus the tag overhead; ``completion_headroom`` leaves room for answers
    that run over. Returns the numbers the check saw (they go to provenance).
    """
    budgets = sorted(b for b in (protocol.parse_b_max(r.get("b_max")) for r in rows) if math.isfinite(b))
    limit = cfg.grpo.max_completion_length
    if not budgets:
        return {"finite_budgets": 0, "max_completion_length": limit}
    need = [completion_tokens_needed(b, cfg) for b in budgets]
    truncated = sum(n > limit for n in need) / len(need)
    p90 = budgets[min(len(budgets) - 1, int(0.9 * len(budgets)))]
    stats = {
        "finite_budgets": len(budgets),
        "max_budget": budgets[-1],
        "p90_budget": p90,
        "max_completion_length": limit,
        "share_truncated": truncated,
    }
    if truncated > 0.5:
        suggest = math.ceil(completion_tokens_needed(p90, cfg))
        raise TrainingError(
            f"grpo.max_completion_length={limit} would truncate {truncated:.0%} of completions (budgets up to "
            f"{budgets[-1]:.0f}, p90 {p90:.0f}, headroom ×{cfg.grpo.completion_headroom}); set "
            f"grpo.max_completion_length={suggest} or prepare shorter data"
        )
    return stats


def prefill_budgets(ids: list[str], cfg: Recipe) -> dict[str, int]:
    """The pre-filled budget of each GRPO question that gets one (``grpo.prefill_fraction`` of them).

    Seeded by ``grpo.seed`` and the question id, so a resumed run sees the same prompts; budgets are
    log-uniform in ``grpo.prefill_range`` so short and long forced budgets are equally represented.

    >>> from sblite.recipes import load_recipe
    >>> cfg = load_recipe("tiny-cpu", ["grpo.prefill_fraction=1.0", "grpo.prefill_range=[16,64]"])
    >>> b = prefill_budgets(["a", "b", "c"], cfg)
    >>> sorted(b) == ["a", "b", "c"] and all(16 <= v <= 64 for v in b.values())
    True
    """
    g = cfg.grpo
    lo, hi = g.prefill_range
    out = {}
    for qid in ids:
        rng = random.Random(f"{g.seed}:{qid}")
        if rng.random() < g.prefill_fraction:
            out[qid] = round(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    return out


def trl_prompt_text(tokenizer, prompt: str, want: list[int] | None = None) -> str:
    """``prompt`` as the text to hand TRL, which tokenizes a text prompt as ``tokenizer(text=...)``: the
    result must give exactly ``protocol.encode_prompt``'s ids. A tokenizer that adds its BOS to a template
    that already opens with it gets the template's copy removed; any other difference is an error."""
    want = protocol.encode_prompt(tokenizer, prompt) if want is None else want
    candidates = [prompt]
    bos = getattr(tokenizer, "bos_token", None)
    if bos and prompt.startswith(bos):
        candidates.append(prompt[len(bos) :])
    for text in candidates:
        if list(tokenizer(text=[text])["input_ids"][0]) == want:
            return text
    got = list(tokenizer(text=[prompt])["input_ids"][0])
    at = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), min(len(got), len(want)))
    raise TrainingError(
        f"the tokenizer encodes the GRPO prompt differently from sblite's pre-fill boundary at token {at} "
        f"({tokenizer.decode(got[at : at + 4])!r} vs {tokenizer.decode(want[at : at + 4])!r}): the model would "
        "be trained on one context and served another; report this tokenizer"
    )


def build_grpo_dataset(
    rows: list[dict[str, Any]], cfg: Recipe, tokenizer
) -> tuple[Any, list[dict[str, Any]]]:
    """``(dataset, rejects)``: text prompts + reward columns (``answer``, ``b_max``, ``level``); a prompt over
    ``data.max_prompt_length`` tokens is a reject (``{"id", "reason", ...}``), never silently dropped.

    Prompts are rendered by sblite (``protocol.render_prompt``) and handed to TRL as text: with
    ``grpo.prefill_fraction`` a share of them end inside an open assistant turn in ``<budget>N</budget><solution>``,
    which TRL's generation continues (a conversational prompt with a trailing assistant message would be rendered
    as a closed turn). The rewards read N back from the prompt, so only obeying it pays.
    """
    from datasets import Dataset

    forced = prefill_budgets([str(r.get("id", i)) for i, r in enumerate(rows)], cfg)
    kept, rejects = [], []
    limit = cfg.data.max_prompt_length
    for i, r in enumerate(rows):
        qid = str(r.get("id", i))
        budget = forced.get(qid)
        text = protocol.render_prompt(tokenizer, r["question"], budget=budget, **prompt_options(cfg))
        ids = protocol.encode_prompt(tokenizer, text)
        n = len(ids)
        if n > limit:
            rejects.append(
                {
                    "id": qid,
                    "stage": "grpo",
                    "reason": f"prompt is {n} tokens > data.max_prompt_length={limit}",
                    "prompt_tokens": n,
                }
            )
            continue
        b = protocol.parse_b_max(r.get("b_max"))
        kept.append(
            {
                "prompt": trl_prompt_text(tokenizer, text, ids),
                "answer": str(r["answer"]),
                "b_max": int(b) if math.isfinite(b) else None,
                "level": r.get("level"),
            }
        )
    if not kept:
        raise TrainingError(
            f"every GRPO prompt is longer than data.max_prompt_length={limit} tokens; raise it"
        )
    return Dataset.from_list(kept), rejects



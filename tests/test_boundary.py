"""The forced budget reaches the model, token for token, through the code paths the real libraries run.

Each test captures the ids a real trainer (TRL's ``GRPOTrainer`` / ``SFTTrainer``) or sblite's own eval feeds
the model — by wrapping ``GenerationMixin.generate`` or a forward pre-hook — and decodes them. Two chat
templates: the tiny model's ChatML and SmolLM2-135M-Instruct's own (its tokenizer merges ``>`` with what
follows, the case that broke pre-filling), on a tiny random model shaped to that tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sblite import protocol
from sblite.data.prepared import load_prepared
from sblite.data.synthetic import write_prepared
from sblite.recipes import load_recipe
from sblite.train.run import run_training

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smol_shaped_dir(tmp_path_factory, _sblite_cache) -> Path:
    """A 2-layer random Llama over SmolLM2-135M-Instruct's tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from sblite.models import resolve_model

    try:
        src = resolve_model("builtin:smollm2-135m")
    except FileNotFoundError as err:
        pytest.skip(str(err))
    tok = AutoTokenizer.from_pretrained(src)
    out = tmp_path_factory.mktemp("smol-shaped")
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(params=["tiny", "smollm2"])
def model_dir(request, tiny_model_dir, smol_shaped_dir_lazy):
    return tiny_model_dir if request.param == "tiny" else smol_shaped_dir_lazy()


@pytest.fixture
def smol_shaped_dir_lazy(request):
    return lambda: request.getfixturevalue("smol_shaped_dir")


class _Captured:
    def __init__(self):
        self.rows: list[list[int]] = []
        self.labels: list[list[int]] = []
        self.batches: list[list[list[int]]] = []  # capture_sft_batches: the rows of each batch, in order


@pytest.fixture
def capture_generate(monkeypatch):
    """Every ``generate`` call's prompts as the model receives them (left padding removed)."""
    from transformers.generation.utils import GenerationMixin

    seen = _Captured()
    original = GenerationMixin.generate

    def generate(self, *args, **kwargs):
        ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
        for row, m in zip(ids.tolist(), mask.tolist(), strict=True):
            seen.rows.append([t for t, keep in zip(row, m, strict=True) if keep])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GenerationMixin, "generate", generate)
    return seen


def _recipe(model_dir: Path, data: Path, out: Path, *extra: str):
    return load_recipe(
        "tiny-cpu",
        [f"model.name_or_path={model_dir}", f"data.path={data}", f"output_dir={out}", *extra],
    )


def test_grpo_generates_from_an_open_assistant_turn_ending_in_the_forced_budget(
    model_dir, tmp_path, capture_generate
):
    """The real ``GRPOTrainer``, one step, half the prompts forced: decode what reached ``generate``."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    data = write_prepared(tmp_path / "data", tok, n=8)
    cfg = _recipe(model_dir, data, tmp_path / "run", "stages=[grpo]", "grpo.max_steps=1",
                  "grpo.per_device_train_batch_size=8", "grpo.num_generations=2", "grpo.max_completion_length=40",
                  "grpo.prefill_fraction=0.5", "grpo.prefill_range=[8,16]")  # fmt: skip
    run_training(cfg)
    rows = load_prepared(data).grpo
    by_text = {
        tuple(protocol.encode_prompt(tok, protocol.render_prompt(tok, r["question"], budget=b))): (r, b)
        for r in rows
        for b in [None, *range(8, 17)]
    }
    forced = unforced = 0
    header = tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True)
    header = header[header.rindex("x") + 1 :]  # the template's end of user turn + assistant header
    for ids in capture_generate.rows:
        text = tok.decode(ids, skip_special_tokens=False)
        assert tuple(ids) in by_text, f"GRPO fed ids sblite does not produce: {text[-80:]!r}"
        _, budget = by_text[tuple(ids)]
        if budget is None:
            unforced += 1
            assert text.endswith(header)
        else:
            forced += 1
            assert text.endswith(header + protocol.prefill(budget))  # an open turn: no end-of-turn, no 2nd header
            assert text.count("assistant") == header.count("assistant")
    assert forced and unforced  # prefill_fraction=0.5 of 8 prompts (seeded)
    metrics = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    step = next(m for m in metrics if "sblite/prefilled_share" in m)
    assert step["sblite/prefilled_share"] == forced / (forced + unforced)
    assert step["sblite/prefill_abs_err"] >= 0


@pytest.fixture
def capture_eval_prompts(monkeypatch):
    """The prompt ids of every multi-token forward of a model loaded by ``AutoModelForCausalLM`` (what
    sblite's compact decoder feeds at its prompt pass), left padding removed."""
    from transformers import AutoModelForCausalLM

    seen = _Captured()
    original = AutoModelForCausalLM.from_pretrained.__func__

    def hook(module, args, kwargs):
        ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
        if ids is not None and ids.shape[1] > 1 and mask is not None and mask.shape == ids.shape:
            for row, m in zip(ids.tolist(), mask.tolist(), strict=True):
                seen.rows.append([t for t, keep in zip(row, m, strict=True) if keep])

    def from_pretrained(cls, *a, **k):
        model = original(cls, *a, **k)
        model.register_forward_pre_hook(hook, with_kwargs=True)
        return model

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(from_pretrained))
    return seen


@pytest.fixture
def capture_sft_batches(monkeypatch):
    """Every batch the real ``SFTTrainer`` computes its loss on: (input_ids, labels) per row, padding cut."""
    from trl import SFTTrainer

    seen = _Captured()
    original = SFTTrainer.compute_loss

    def compute_loss(self, model, inputs, *args, **kwargs):
        mask = inputs.get("attention_mask")
        seen.batches.append([])
        for k, (ids, lab) in enumerate(zip(inputs["input_ids"].tolist(), inputs["labels"].tolist(), strict=True)):
            n = int(mask[k].sum()) if mask is not None else len(ids)
            seen.rows.append(ids[:n])
            seen.labels.append(lab[:n])
            seen.batches[-1].append(ids[:n])
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(SFTTrainer, "compute_loss", compute_loss)
    return seen


def test_sft_sequences_start_with_the_prefilled_prompt_that_eval_feeds_token_for_token(
    model_dir, tmp_path, capture_sft_batches, capture_eval_prompts
):
    """SFT trains on ``prompt + <budget>N</budget><solution> + solution``; ``sblite eval --mode prefill``
    feeds ``prompt + <budget>N</budget><solution>``: the second is an exact prefix of the first, the labels
    start right after the prompt (in self mode the model writes the budget itself), and the continuation is
    counted, by the shared measure, as exactly the budget it was labelled with."""
    from transformers import AutoTokenizer

    from sblite.eval.run import EvalOptions, run_eval

    tok = AutoTokenizer.from_pretrained(model_dir)
    data = write_prepared(tmp_path / "data", tok, n=4)
    cfg = _recipe(model_dir, data, tmp_path / "run", "stages=[sft]", "sft.max_steps=1",
                  "sft.per_device_train_batch_size=4")  # fmt: skip
    run_training(cfg)
    rows = load_prepared(data).sft
    trained = list(zip(capture_sft_batches.rows, capture_sft_batches.labels, strict=True))
    assert len(trained) == len(rows)
    eos_suffix = None
    for r in rows:
        budget = protocol.parse_completion(r["completion"]).budget
        prompt = protocol.encode_prompt(tok, protocol.render_prompt(tok, r["question"]))
        prefilled = protocol.encode_prompt(tok, protocol.render_prompt(tok, r["question"], budget=budget))
        ids, labels = next((i, lab) for i, lab in trained if i[: len(prefilled)] == prefilled)
        assert next(k for k, x in enumerate(labels) if x != -100) == len(prompt)
        cont = ids[len(prefilled) :]
        text = tok.decode(cont, skip_special_tokens=False)
        solution_end = text.index(protocol.SOLUTION_CLOSE) + len(protocol.SOLUTION_CLOSE)
        eos_suffix = eos_suffix or text[solution_end:]
        n_end = len(protocol.encode(tok, text[solution_end:]))
        assert protocol.count_solution_tokens(cont[: len(cont) - n_end], tok, forced_budget=budget) == budget

    r = rows[0]
    budget = protocol.parse_completion(r["completion"]).budget
    opts = EvalOptions(model=str(model_dir), dataset=str(data / "grpo.jsonl"), mode="prefill", budgets=[budget],
                       limit=1, max_new_tokens=budget, out=str(tmp_path / "eval"), plots=False)  # fmt: skip
    capture_eval_prompts.rows.clear()  # the SFT model's forwards were captured too
    run_eval(opts)
    prefilled = protocol.encode_prompt(tok, protocol.render_prompt(tok, r["question"], budget=budget))
    assert capture_eval_prompts.rows == [prefilled]
    assert any(ids[: len(prefilled)] == prefilled for ids, _ in trained)
    # why the split matters: tokenized whole, an answer opening with \boxed merges with <solution>'s '>' in
    # SmolLM2's vocabulary, so the pre-filled prompt would end in a token no training sequence contains
    completion = protocol.render_completion(budget, "\\boxed{15}")
    whole = protocol.encode(tok, protocol.render_prompt(tok, r["question"]) + completion)
    split = protocol.encode(tok, protocol.render_prompt(tok, r["question"])) + protocol.encode_completion(tok, completion)
    assert split[: len(prefilled)] == prefilled
    assert (whole[: len(prefilled)] != prefilled) == ("smol" in str(model_dir))


def test_a_prefilled_sft_row_learns_only_the_solution_after_the_prefilled_prompt(
    model_dir, tmp_path, capture_sft_batches
):
    """A ``prefilled`` row (``data.renderings``) reaches the real ``SFTTrainer`` with the same ids as an
    ordinary one, but its labels start after ``<budget>N</budget><solution>``: the budget is the user's
    context, exactly what ``sblite eval --mode prefill`` feeds, and only the solution is learned."""
    from transformers import AutoTokenizer

    from sblite.data.synthetic import write_jsonl

    tok = AutoTokenizer.from_pretrained(model_dir)
    data = write_prepared(tmp_path / "data", tok, n=4)
    rows = load_prepared(data).sft
    write_jsonl([{**r, "prefilled": i % 2 == 0} for i, r in enumerate(rows)], data / "sft.jsonl")
    cfg = _recipe(model_dir, data, tmp_path / "run", "stages=[sft]", "sft.max_steps=1",
                  "sft.per_device_train_batch_size=4")  # fmt: skip
    run_training(cfg)
    trained = list(zip(capture_sft_batches.rows, capture_sft_batches.labels, strict=True))
    for i, r in enumerate(rows):
        budget = protocol.parse_completion(r["completion"]).budget
        prompt = protocol.encode_prompt(tok, protocol.render_prompt(tok, r["question"]))
        prefilled = protocol.encode_prompt(tok, protocol.render_prompt(tok, r["question"], budget=budget))
        ids, labels = next((ids, lab) for ids, lab in trained if ids[: len(prefilled)] == prefilled)
        first = next(k for k, x in enumerate(labels) if x != -100)
        assert first == (len(prefilled) if i % 2 == 0 else len(prompt))
        assert all(lab == tok_id for lab, tok_id in zip(labels[first:], ids[first:], strict=False) if lab != -100)


def test_a_budget_stating_row_is_the_prefilled_prompt_eval_feeds_with_loss_on_the_budget_only(
    model_dir, tmp_path, capture_sft_batches
):
    """``sft.budget_stating_rows``: through the real ``SFTTrainer``, each self row also trains a sequence that is
    exactly the ids ``sblite eval --mode prefill`` feeds for its budget, labelled from the end of the prompt:
    the model learns which ``<budget>N</budget><solution>`` to write for the question, and nothing after it. A
    pre-filled row (its budget the user's) gives none."""
    from transformers import AutoTokenizer

    from sblite.data.synthetic import write_jsonl

    tok = AutoTokenizer.from_pretrained(model_dir)
    data = write_prepared(tmp_path / "data", tok, n=4)
    rows = load_prepared(data).sft
    write_jsonl([{**r, "prefilled": i == 3} for i, r in enumerate(rows)], data / "sft.jsonl")
    cfg = _recipe(model_dir, data, tmp_path / "run", "stages=[sft]", "sft.max_steps=1", "sft.budget_stating_rows=2",
                  "sft.per_device_train_batch_size=10")  # fmt: skip
    run_training(cfg)
    trained = list(zip(capture_sft_batches.rows, capture_sft_batches.labels, strict=True))
    assert len(trained) == 4 + 2 * 3
    for i, r in enumerate(rows):
        budget = protocol.parse_completion(r["completion"]).budget
        prompt = protocol.encode_prompt(tok, protocol.render_prompt(tok, r["question"]))
        prefilled = protocol.encode_prompt(tok, protocol.render_prompt(tok, r["question"], budget=budget))
        stating = [lab for ids, lab in trained if ids == prefilled]
        assert len(stating) == (0 if i == 3 else 2)
        for lab in stating:
            assert lab == [-100] * len(prompt) + prefilled[len(prompt):]


def test_group_by_length_mixes_budgets_of_every_digit_count_in_each_budget_reading_batch(
    smol_shaped_dir, tmp_path, capture_sft_batches
):
    """``sft.budget_reading_*`` rows under ``group_by_length``, through the real ``SFTTrainer``'s sampler: a
    reading row's true length grows with its budget's digit count, so sorting by it would put only 1-, only 2-
    or only 3-digit budgets in a batch, and the model could never learn what the digit count means. sblite's
    shared ``length`` column keeps them in random order: most reading batches hold budgets of several sizes."""
    import re

    from transformers import AutoTokenizer

    from sblite.data.synthetic import write_jsonl

    tok = AutoTokenizer.from_pretrained(smol_shaped_dir)
    data = write_prepared(tmp_path / "data", tok, n=8)
    rows = load_prepared(data).sft
    # each question labelled at 12 and 90 (one length would get no draws): draws over [6, 135] cross from 1 to 2
    # and from 2 to 3 digits
    written = [{**r, "completion": protocol.with_budget(r["completion"], b)} for r in rows for b in (12, 90)]
    write_jsonl(written, data / "sft.jsonl")
    cfg = _recipe(smol_shaped_dir, data, tmp_path / "run", "stages=[sft]", "sft.num_train_epochs=1", "sft.max_steps=-1",
                  "sft.per_device_train_batch_size=8", "sft.budget_reading_tokens=2", "sft.budget_reading_samples=40",
                  "sft.trl_args.train_sampling_strategy=group_by_length")  # fmt: skip
    run_training(cfg)
    batches = capture_sft_batches.batches
    digits = []  # per batch of reading rows only: the digit counts of its budgets
    for batch in batches:
        texts = [tok.decode(ids) for ids in batch]
        if all(t.startswith(protocol.BUDGET_OPEN) for t in texts):
            digits.append({len(re.match(r"<budget>(\d+)<", t).group(1)) for t in texts})
    assert sum(len(b) for b in batches) == len(written) * 2 + 40 * len(rows)  # every row once
    assert len(digits) >= 30
    assert sum(len(d) > 1 for d in digits) > 0.8 * len(digits), digits


@pytest.mark.parametrize(("stating_length", "shared"), [("reading", True), ("own", False)])
def test_budget_stating_length_decides_whether_stating_rows_share_the_reading_rows_batches(
    smol_shaped_dir, tmp_path, capture_sft_batches, stating_length, shared
):
    """``sft.budget_stating_length`` under ``group_by_length``, through the real ``SFTTrainer``'s sampler:
    ``reading`` gives the stating rows (a whole prompt each) the reading rows' shared length, so they land in
    the reading rows' batches, and pad them to a prompt's length (1.83× the real tokens of the demo's candidate
    cold start: benchmarks/results/sft_padding.json); ``own`` gives them a length of their own, so only the batch
    where one kind's run ends and the next begins, in each of the sampler's few mega-batches, mixes them."""
    from transformers import AutoTokenizer

    from sblite.data.synthetic import write_jsonl

    tok = AutoTokenizer.from_pretrained(smol_shaped_dir)
    data = write_prepared(tmp_path / "data", tok, n=8)
    rows = load_prepared(data).sft  # a pre-filled second length per question, so its reading budgets are drawn
    write_jsonl(rows + [{**r, "completion": protocol.with_budget(r["completion"], 3 * protocol.parse_completion(
        r["completion"]).budget), "prefilled": True} for r in rows], data / "sft.jsonl")  # fmt: skip
    cfg = _recipe(smol_shaped_dir, data, tmp_path / "run", "stages=[sft]", "sft.num_train_epochs=1", "sft.max_steps=-1",
                  "sft.per_device_train_batch_size=8", "sft.budget_reading_tokens=2", "sft.budget_reading_samples=100",
                  "sft.budget_stating_rows=4", f"sft.budget_stating_length={stating_length}",
                  "sft.trl_args.train_sampling_strategy=group_by_length")  # fmt: skip
    run_training(cfg)
    batches = [[tok.decode(ids) for ids in batch] for batch in capture_sft_batches.batches]
    reading = [b for b in batches if any(t.startswith(protocol.BUDGET_OPEN) for t in b)]
    mixed = [b for b in reading if any(t.endswith(protocol.SOLUTION_OPEN) for t in b)]
    assert sum(t.endswith(protocol.SOLUTION_OPEN) for b in batches for t in b) == 4 * 8  # every stating row trained
    assert len(reading) >= 90
    if shared:
        assert len(mixed) > 0.15 * len(reading), (len(mixed), len(reading))
    else:
        assert len(mixed) < 0.1 * len(reading), (len(mixed), len(reading))

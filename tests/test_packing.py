"""``sft.pack_shared_prompts`` and ``sft.budget_rows_by_question``: the prefix tree of a batch, that a packed
batch gives TRL's trainer the unpacked batch's loss and gradients with fewer tokens, that the question order
puts a question's short rows into the same batches, and what each switch refuses."""

from __future__ import annotations

import random

import pytest

from sblite.data.prepared import load_prepared
from sblite.recipes import load_recipe
from sblite.train.datasets import build_sft_dataset
from sblite.train.packing import PACKED_TOKENS, layout, pack_batch, segments

#: the budget rows the exactness and ordering tests train on: reading rows with their question, stating rows
BUDGET_ROWS = ["sft.budget_reading_tokens=2", "sft.budget_reading_samples=6", "sft.budget_reading_prompt=true",
               "sft.budget_stating_rows=2", "sft.trl_args.train_sampling_strategy=group_by_length"]  # fmt: skip


@pytest.mark.parametrize(("rows", "caps", "expected"), [
    # no rows share a first token: each row is a root and its own leaf
    ([[1, 2], [3, 4]], [1, 1], [(0, 0, 2, -1), (1, 0, 2, -1)]),
    # one prompt [7, 7, 7], two rows: shared up to the token before each first trained one (cap 3), leaves from 3
    ([[7, 7, 7, 1], [7, 7, 7, 2]], [3, 3], [(0, 0, 3, -1), (0, 3, 4, 0), (1, 3, 4, 0)]),
    # the same prompt, but the second row's cap is 1: it shares one token and its leaf holds the rest
    ([[7, 7, 7, 1], [7, 7, 7, 2]], [3, 1], [(0, 0, 1, -1), (1, 1, 4, 0), (0, 1, 4, 0)]),
    # two levels: a common system prompt [9, 9], then two questions with two rows each
    ([[9, 9, 5, 5, 1], [9, 9, 6, 1], [9, 9, 5, 5, 2], [9, 9, 6, 2]], [4, 3, 4, 3],
     [(0, 0, 2, -1), (0, 2, 4, 0), (0, 4, 5, 1), (2, 4, 5, 1), (1, 2, 3, 0), (1, 3, 4, 4), (3, 3, 4, 4)]),
    # identical rows: everything up to the cap once, each row's last token its leaf
    ([[4, 4, 4], [4, 4, 4]], [2, 2], [(0, 0, 2, -1), (0, 2, 3, 0), (1, 2, 3, 0)]),
])  # fmt: skip
def test_segments_share_openings_up_to_each_rows_cap(rows, caps, expected):
    assert segments(rows, caps) == expected


def test_segments_rebuild_every_row_and_never_share_past_a_cap():
    rng = random.Random(0)
    prompts = [[rng.randrange(50) for _ in range(rng.randint(1, 6))] for _ in range(4)]
    for _ in range(200):
        rows = [rng.choice(prompts) + [rng.randrange(3) for _ in range(rng.randint(1, 4))] for _ in range(rng.randint(1, 9))]
        caps = [rng.randint(0, len(r) - 1) for r in rows]
        segs = segments(rows, caps)
        leaves = [s for s, seg in enumerate(segs) if seg[2] == len(rows[seg[0]]) and not any(p[3] == s for p in segs)]
        assert sorted(segs[s][0] for s in leaves) == list(range(len(rows)))  # one leaf per row
        for s in leaves:
            path, node = [], s
            while node != -1:
                path.append(segs[node])
                node = segs[node][3]
            row = segs[s][0]
            text = [t for r, a, b, _ in reversed(path) for t in rows[r][a:b]]
            assert text == rows[row]  # root → leaf spells the row
            assert all(a <= caps[row] for _, a, _, _ in path)  # no segment starts past the row's cap
        for row in layout(segs):  # every tree whole, in preorder, within the largest tree's size
            assert all(segs[s][3] == -1 or segs[s][3] in row for s in row)


def test_a_packed_batch_gives_trls_loss_and_gradients_with_fewer_tokens(tiny_prepared_dir, tiny_tokenizer,
                                                                        tiny_model_dir, tmp_path):
    """Batches as TRL's SFTTrainer samples, prepares and collates them (reading rows with their question,
    stating rows, grouped by question): the packed batch's loss and every gradient match the unpacked
    batch's, computed through TRL's own ``compute_loss``, while its rows hold fewer tokens."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from sblite.train.packing import packed_sft_trainer

    cfg = load_recipe("tiny-cpu", [*BUDGET_ROWS, "sft.budget_rows_by_question=true", "sft.pack_shared_prompts=true"])
    ds = build_sft_dataset(load_prepared(tiny_prepared_dir).sft, cfg, tiny_tokenizer)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa").train()
    args = SFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, remove_unused_columns=False,
                     report_to=[], use_cpu=True, train_sampling_strategy="group_by_length", completion_only_loss=True)  # fmt: skip
    trainer = packed_sft_trainer(SFTTrainer, model=model, args=args, train_dataset=ds, processing_class=tiny_tokenizer)
    base = trainer.data_collator.base  # TRL's own collator, which the packed one wraps
    sampler = list(trainer._get_train_sampler())
    examples = trainer.train_dataset.remove_columns(["length"])

    def loss_and_grads(batch, compute):
        model.zero_grad()
        loss = compute(trainer, model, batch)
        loss.backward()
        return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    saved = 0
    for start in range(0, 8 * 6, 8):
        rows = [examples[i] for i in sampler[start : start + 8]]
        unpacked = base(rows)
        packed = trainer.data_collator(rows)
        real = int(unpacked["attention_mask"].sum())
        assert int(packed[PACKED_TOKENS]) <= real
        saved += real - int(packed[PACKED_TOKENS])
        want, want_grads = loss_and_grads(unpacked, SFTTrainer.compute_loss)
        got, got_grads = loss_and_grads(dict(packed), type(trainer).compute_loss)
        assert got == pytest.approx(want, rel=1e-5)
        assert got_grads.keys() == want_grads.keys()
        for name, g in want_grads.items():
            assert torch.allclose(got_grads[name], g, rtol=1e-4, atol=1e-6), name
    assert saved > 0  # the batches shared prompts, and the packed rows computed them once


def test_packed_token_count_is_the_tokens_computed(tiny_prepared_dir, tiny_tokenizer, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from sblite.train.packing import packed_sft_trainer

    cfg = load_recipe("tiny-cpu", BUDGET_ROWS)
    ds = build_sft_dataset(load_prepared(tiny_prepared_dir).sft, cfg, tiny_tokenizer)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa").train()
    args = SFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, remove_unused_columns=False,
                     report_to=[], use_cpu=True, completion_only_loss=True)  # fmt: skip
    trainer = packed_sft_trainer(SFTTrainer, model=model, args=args, train_dataset=ds, processing_class=tiny_tokenizer)
    counted = []
    for batch in list(trainer.get_train_dataloader())[:3]:
        counted.append(int(batch[PACKED_TOKENS]))
        trainer.compute_loss(model, batch)
    assert trainer._metrics["train"]["num_tokens"] == [sum(counted)]


def test_pack_batch_refuses_what_it_cannot_pack():
    import torch

    batch = {"input_ids": torch.ones(1, 3, dtype=torch.long), "attention_mask": torch.ones(1, 3, dtype=torch.long),
             "labels": torch.ones(1, 3, dtype=torch.long), "position_ids": torch.arange(3)[None]}  # fmt: skip
    with pytest.raises(ValueError, match="padding_free or position ids"):
        pack_batch(batch)


def test_by_question_puts_a_questions_short_rows_in_the_same_batches(tiny_prepared_dir, tiny_tokenizer):
    """The sampler TRL's trainer uses (transformers' length-grouped one) on both orders: grouped by question, a
    batch of short rows holds fewer distinct prompts than in random order."""
    import re

    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from sblite import protocol

    rows = load_prepared(tiny_prepared_dir).sft  # with a second length per question, so its budgets are drawn
    rows += [{**r, "completion": protocol.with_budget(r["completion"], 2 * protocol.parse_completion(
        r["completion"]).budget)} for r in rows]  # fmt: skip

    def questions_per_batch(by_question: bool) -> float:
        # 30 drawn budgets per question, as the demo: transformers' megabatches (a quarter of the rows here) then
        # hold several rows of each question, as they do at the demo's size
        cfg = load_recipe("tiny-cpu", [*BUDGET_ROWS, "sft.budget_reading_samples=30",
                                       f"sft.budget_rows_by_question={str(by_question).lower()}"])  # fmt: skip
        ds = build_sft_dataset(rows, cfg, tiny_tokenizer)
        question = [re.search(r"What is \d \+ \d\?", tiny_tokenizer.decode(e["input_ids"]))[0] for e in ds]
        short = {i for i, e in enumerate(ds) if sum(e["completion_mask"]) < 12}  # reading and stating rows
        assert 0 < len(short) < len(ds)
        counts = []
        for seed in range(5):
            order = list(LengthGroupedSampler(8, lengths=ds["length"], generator=torch.Generator().manual_seed(seed)))
            batches = [order[i : i + 8] for i in range(0, len(order) - 7, 8)]
            counts += [len({question[i] for i in b}) for b in batches if set(b) <= short]
        return sum(counts) / len(counts)

    assert questions_per_batch(True) < questions_per_batch(False) / 2


@pytest.mark.parametrize(("overrides", "message"), [
    (["sft.pack_shared_prompts=true", "sft.packing=true"], "turn those off or set sft.pack_shared_prompts=false"),
    (["sft.pack_shared_prompts=true", "sft.trl_args.padding_free=true"], "sft.pack_shared_prompts=false"),
    (["sft.budget_rows_by_question=true"], "needs such rows"),
    (["sft.budget_rows_by_question=true", "sft.budget_reading_tokens=2"], "group_by_length"),
])  # fmt: skip
def test_switches_refuse_what_they_cannot_honour(overrides, message):
    with pytest.raises(Exception, match=message):
        load_recipe("tiny-cpu", overrides)


def test_packing_is_refused_on_unsloth_and_on_attention_that_ignores_a_4d_mask(tiny_model_dir):
    from types import SimpleNamespace

    from transformers import AutoModelForCausalLM

    from sblite.train import TrainingError
    from sblite.train.packing import packed_sft_trainer
    from sblite.train.run import _pack

    cfg = load_recipe("tiny-cpu", ["sft.pack_shared_prompts=true"])
    with pytest.raises(TrainingError, match="model.backend=hf"):
        _pack(cfg, SimpleNamespace(name="unsloth"))
    assert _pack(cfg, SimpleNamespace(name="hf"))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="reads a 4D mask"):
        packed_sft_trainer(lambda **_: None, model=model)


def test_packed_sft_trains_from_the_cli_recipe(tiny_prepared_dir, tmp_path):
    """``run_training`` with both switches on: the SFT stage trains on packed batches and records the tokens
    it computed, fewer than the same run unpacked."""
    import json

    from sblite.train.run import run_training

    tokens = {}
    for pack in ("true", "false"):
        out = tmp_path / f"run-{pack}"
        run_training(load_recipe("tiny-cpu", [
            "stages=[sft]", f"output_dir={out}", f"data.path={tiny_prepared_dir}", "sft.max_steps=3", *BUDGET_ROWS,
            "sft.budget_rows_by_question=true", f"sft.pack_shared_prompts={pack}"]))  # fmt: skip
        steps = [m for m in map(json.loads, (out / "metrics.jsonl").open()) if "loss" in m]
        assert [m["step"] for m in steps] == [1, 2, 3] and all(m["loss"] > 0 for m in steps)
        tokens[pack] = steps[-1]["num_tokens"]
    assert tokens["true"] < tokens["false"]

"""``sft.budget_tag_weight``: which ids the weights fall on, and that the weighted loss reaches the trainer
through TRL's own dataset preparation and collator (``sft.budget_tag_weight`` weighs a self row's
``<budget>N</budget><solution>`` W times, as W − 1 budget-stating rows would add it)."""

from __future__ import annotations

import pytest

from sblite import protocol
from sblite.data.prepared import load_prepared
from sblite.recipes import load_recipe
from sblite.train.datasets import build_sft_dataset
from sblite.train.weighted import LOSS_WEIGHT_COLUMN


@pytest.mark.parametrize(("weight", "prefilled", "reading_tokens", "weighed"), [
    (3.0, False, 0, "<budget>N</budget><solution>"),  # a self row: its tags weigh 3
    (3.0, True, 0, ""),  # a pre-filled row: its tags are context, nothing weighs more than 1
    (3.0, False, 2, "<budget>N</budget><solution>"),  # reading rows beside it: all 1
    (1.0, False, 0, None),  # off (the paper): no column at all
])  # fmt: skip
def test_budget_tag_weight_falls_on_a_self_rows_tags_only(tiny_prepared_dir, tiny_tokenizer, weight, prefilled,
                                                         reading_tokens, weighed):
    rows = [{**r, "prefilled": prefilled} for r in load_prepared(tiny_prepared_dir).sft]
    cfg = load_recipe("tiny-cpu", [f"sft.budget_tag_weight={weight}", f"sft.budget_reading_tokens={reading_tokens}"])
    ds = build_sft_dataset(rows, cfg, tiny_tokenizer)
    if weighed is None:
        assert LOSS_WEIGHT_COLUMN not in ds.column_names
        return
    spans = []
    for e in ds:
        w = e[LOSS_WEIGHT_COLUMN]
        assert len(w) == len(e["input_ids"]) and set(w) <= {1.0, weight}
        heavy = [i for i, x in enumerate(w) if x == weight]
        assert all(e["completion_mask"][i] == 1 for i in heavy)  # only ids the row trains
        if heavy:
            assert heavy == list(range(heavy[0], heavy[-1] + 1))
            spans.append(tiny_tokenizer.decode(e["input_ids"][heavy[0] : heavy[-1] + 1]))
    # one span per self row: exactly its <budget>N</budget><solution>, the number the row states
    n_self = sum(not r["prefilled"] for r in rows)
    assert len(spans) == (n_self if weighed else 0)
    assert all(protocol.parse_completion(s + "x</solution>").budget is not None and s.endswith(protocol.SOLUTION_OPEN)
               for s in spans)


def test_weighted_loss_through_trls_collator_is_trls_loss_plus_the_tags(tiny_prepared_dir, tiny_tokenizer,
                                                                       tiny_model_dir, tmp_path):
    """A batch as TRL's SFTTrainer prepares and collates it: with weight 1 the weighted loss is TRL's own;
    each unit of weight above 1 adds the tags' loss once (the loss is linear in the weight)."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from sblite.train.weighted import weighted_sft_trainer

    rows = load_prepared(tiny_prepared_dir).sft
    ds = build_sft_dataset(rows, load_recipe("tiny-cpu", ["sft.budget_tag_weight=3"]), tiny_tokenizer)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).train()  # TRL logs train metrics in train mode
    args = SFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, remove_unused_columns=False,
                     report_to=[], use_cpu=True, completion_only_loss=True)  # fmt: skip
    trainer = weighted_sft_trainer(model=model, args=args, train_dataset=ds, processing_class=tiny_tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    weights = batch[LOSS_WEIGHT_COLUMN]
    assert (weights[batch["labels"] != -100] == 3).any()  # the column reached the batch, aligned with labels

    def loss(w):
        with torch.no_grad():
            return float(trainer.compute_loss(model, {**batch, LOSS_WEIGHT_COLUMN: w}))

    ones = torch.ones_like(weights)
    with torch.no_grad():  # TRL's own loss (its fused LM head) on the same batch
        trl_loss = float(SFTTrainer.compute_loss(trainer, model, {k: v for k, v in batch.items() if k != LOSS_WEIGHT_COLUMN}))
    assert loss(ones) == pytest.approx(trl_loss, rel=1e-4)
    # TRL's metrics are kept on the weighted path: tokens seen count on, token accuracy logged
    assert trainer._metrics["train"]["num_tokens"][-1] == 2 * int(batch["attention_mask"].sum())
    assert len(trainer._metrics["train"]["mean_token_accuracy"]) == 2
    two = torch.where(weights == 3, 2.0, 1.0)
    assert loss(weights) - trl_loss == pytest.approx(2 * (loss(two) - trl_loss), rel=1e-4)
    assert loss(weights) > trl_loss
    # a model that leaves its logits out (Unsloth's fused loss) cannot be weighed: one clear error, not a 0 loss
    from types import SimpleNamespace

    with pytest.raises(RuntimeError, match="UNSLOTH_RETURN_LOGITS=1"):
        trainer.compute_loss(lambda **_: SimpleNamespace(logits=None), {**batch})


def test_budget_tag_weight_trains_from_the_cli_recipe(tiny_prepared_dir, tmp_path):
    """``run_training`` with the key on: the SFT stage trains (the weighted trainer built by train/run.py)."""
    import json

    from sblite.train.run import run_training

    cfg = load_recipe("tiny-cpu", ["stages=[sft]", f"output_dir={tmp_path / 'run'}", f"data.path={tiny_prepared_dir}",
                                   "sft.budget_tag_weight=3", "sft.max_steps=2"])  # fmt: skip
    run_training(cfg)
    steps = [m for m in map(json.loads, (tmp_path / "run" / "metrics.jsonl").open()) if "loss" in m]
    assert [m["step"] for m in steps] == [1, 2] and all(m["loss"] > 0 for m in steps)


@pytest.mark.parametrize(("conflict", "fix"), [
    ("sft.packing=true", "turn those off"),
    ("sft.trl_args.padding_free=true", "turn those off"),
    ("sft.trl_args.remove_unused_columns=true", "turn those off"),
    ("sft.trl_args.truncation_mode=keep_end", "turn those off"),
    ("sft.trl_args.loss_type=dft", "would not be applied; drop them"),
    ("sft.trl_args.label_smoothing_factor=0.1", "would not be applied; drop them"),
])  # fmt: skip
def test_budget_tag_weight_refuses_what_it_would_not_honour(conflict, fix):
    with pytest.raises(Exception, match=f"{fix} or set sft.budget_tag_weight=1"):
        load_recipe("tiny-cpu", ["sft.budget_tag_weight=3", conflict])
    load_recipe("tiny-cpu", [conflict])  # each is fine without the weight

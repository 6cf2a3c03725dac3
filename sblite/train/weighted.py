"""Per-token SFT loss weights (``sft.budget_tag_weight``): the column, the collator that pads it, the loss.

A self row's budget is a handful of ids in a long row, so plain SFT loss barely rewards stating the right one;
budget-stating rows (``sft.budget_stating_rows``) add that loss again at the cost of a prompt each. Weighing the
row's own ``<budget>N</budget><solution>`` ids adds the same loss with no extra tokens to compute.

``train/datasets.build_sft_dataset`` writes the ``loss_weight`` column (1 except on those ids);
``WeightedCollator`` pads it beside TRL's own collator; ``weighted_sft_trainer`` gives TRL's ``SFTTrainer`` a loss
that uses it: ``Σ w·nll / n`` over the labelled tokens, ``n`` counting each once (TRL's normaliser), so weights
of 1 give TRL's loss, with TRL's metrics (entropy, token accuracy, tokens). Unlike TRL's fused LM head it builds
the full logits (batch × length × vocabulary) and one float32 log-softmax of them, shared by the loss and
the metrics: more memory per step.
"""

from __future__ import annotations

from typing import Any

#: the dataset column of per-token loss weights, aligned with ``input_ids``
LOSS_WEIGHT_COLUMN = "loss_weight"


class WeightedCollator:
    """TRL's collator (``base``) plus the ``loss_weight`` column, right-padded with 0 to the batch's ids."""

    def __init__(self, base):
        self.base = base

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        weights = [e.pop(LOSS_WEIGHT_COLUMN) for e in examples]
        out = self.base(examples)
        padded = torch.zeros(out["input_ids"].shape, dtype=torch.float32)
        for i, w in enumerate(weights):
            w = torch.as_tensor(w, dtype=torch.float32)[: padded.shape[1]]
            padded[i, : len(w)] = w
        out[LOSS_WEIGHT_COLUMN] = padded
        return out


def shifted_log_probs(logits):
    """Float32 log-probabilities of each next token (positions 0 … T-2 predict 1 … T-1): computed once per
    batch, for the weighted loss and for TRL's metrics."""
    import torch

    return torch.log_softmax(logits[:, :-1].float(), dim=-1)


def weighted_nll(logp, labels, weights, num_items_in_batch=None):
    """``Σ w·nll / n`` of next-token predictions: ``logp`` from ``shifted_log_probs``, ``labels`` (-100 where
    nothing is learned) and ``weights`` aligned with the inputs; ``n`` the labelled tokens (or TRL's
    ``num_items_in_batch`` across gradient accumulation).

    >>> import torch
    >>> logp = shifted_log_probs(torch.zeros(1, 3, 4)); labels = torch.tensor([[-100, 1, 2]])
    >>> round(float(weighted_nll(logp, labels, torch.ones(1, 3))), 4), round(float(torch.log(torch.tensor(4.))), 4)
    (1.3863, 1.3863)
    >>> round(float(weighted_nll(logp, labels, torch.tensor([[1., 3., 1.]]))), 4)  # (3 + 1) / 2 × ln 4
    2.7726
    """
    import torch

    target, w = labels[:, 1:], weights[:, 1:].to(torch.float32)
    valid = target != -100
    nll = -logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    n = valid.sum() if num_items_in_batch is None else num_items_in_batch
    return (nll * w * valid).sum() / torch.as_tensor(n, device=nll.device).clamp(min=1)


def weighted_sft_trainer(**kwargs):
    """A TRL ``SFTTrainer`` (``kwargs`` as its own) whose loss reads the ``loss_weight`` column."""
    import torch
    from trl import SFTTrainer

    class WeightedSFTTrainer(SFTTrainer):
        # every batch takes this path (never TRL's per batch): on several ranks all run the same collectives
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            weights = inputs.pop(LOSS_WEIGHT_COLUMN)
            labels = inputs["labels"]
            outputs = model(**{k: v for k, v in inputs.items() if k != "labels"}, use_cache=False)
            logits = getattr(outputs, "logits", None)
            if not isinstance(logits, torch.Tensor) or logits.numel() == 0:  # Unsloth: None or an EmptyLogits
                raise RuntimeError(
                    "sft.budget_tag_weight needs the model's logits, and this model returned none (Unsloth leaves "
                    "them out unless UNSLOTH_RETURN_LOGITS=1); set that variable or sft.budget_tag_weight=1"
                )
            logp = shifted_log_probs(logits)
            loss = weighted_nll(logp, labels, weights, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * (self.accelerator.num_processes // self._tp_size)  # as TRL: DDP averages gradients
            self._log_metrics(logp.detach(), labels, inputs)
            return (loss, outputs) if return_outputs else loss

        def _log_metrics(self, logp, labels, inputs) -> None:
            """TRL's own per-step metrics (entropy, token accuracy, tokens seen), from the loss's log-probs."""
            mode = "train" if self.model.training else "eval"
            target = labels[:, 1:]
            valid = target != -100
            with torch.no_grad():
                entropy = -(logp.exp() * logp).sum(-1)[valid].sum()
                correct = (logp.argmax(-1) == target)[valid].sum()
            gather = self.accelerator.gather_for_metrics
            num_valid = gather(valid.sum()).sum()
            entropy_sum, num_correct = gather(entropy).sum(), gather(correct).sum()
            self._metrics[mode]["entropy"].append((entropy_sum / num_valid).item() if num_valid > 0 else 0.0)
            self._metrics[mode]["mean_token_accuracy"].append((num_correct / num_valid).item() if num_valid > 0 else 0.0)
            if mode == "train":
                self._total_train_tokens += gather(inputs["attention_mask"].sum()).sum().item() // self._tp_size
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]

    trainer = WeightedSFTTrainer(**kwargs)
    trainer.data_collator = WeightedCollator(trainer.data_collator)
    return trainer

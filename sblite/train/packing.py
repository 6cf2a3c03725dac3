"""Prefix-shared packing of SFT batches (``sft.pack_shared_prompts``): rows of a batch that open alike hold
their common opening once.

A budget-reading or -stating row is its question's whole prompt and a few trained tokens after it
(``sft.budget_reading_prompt``, ``sft.budget_stating_rows``), so nearly all it costs is the prompt, computed
again for every row; every row of the batch also repeats the system prompt. ``PackedCollator`` rewrites the
batch TRL's collator made: the rows' untrained openings form a tree (``segments``: each shared run of tokens
once, each row's own rest a leaf), the trees are laid side by side in as few rows as the longest allows
(``layout``), and a 4D attention mask lets every token see exactly what it saw unpacked (the segments above
it and its own, causally) at the position it had there. Each trained token's logits are then those of the
unpacked row, and the loss and its gradients are the same (tests/test_packing.py, through TRL's trainer);
only the compute shrinks (benchmarks/sft_packing.py).

A segment never starts on a trained token: its first token's prediction would come from whatever precedes
it in the packed row. So a row shares at most up to one token before its first trained one, and that token
opens its leaf (repeated per leaf: one token per row).

Needs an attention that takes a 4D boolean mask (transformers' ``sdpa``, its default; not eager, flash
attention or Unsloth's kernels). TRL's token count (``attention_mask.sum()``) would count mask entries, so
``packed_sft_trainer`` counts the packed rows' real tokens instead: the tokens computed.
"""

from __future__ import annotations

from typing import Any

#: the batch key that carries the packed rows' real token count to the trainer (popped before the model call)
PACKED_TOKENS = "packed_tokens"

#: attention implementations that read a 4D boolean mask as given (transformers' eager one adds the mask to the
#: scores, so a boolean one would be read as 0/1 offsets)
MASK_ATTENTION = ("sdpa",)


def segments(rows: list[list[int]], caps: list[int]) -> list[tuple[int, int, int, int]]:
    """The prefix tree of ``rows``, as ``(row, start, end, parent)`` segments in preorder: tokens
    ``rows[row][start:end]``, below segment ``parent`` (-1: a root). Row ``i`` shares at most its first
    ``caps[i]`` tokens; the rest is its leaf, and every row has exactly one leaf.

    >>> segments([[5, 6, 7, 8], [5, 6, 9], [1, 2]], caps=[3, 2, 1])
    [(0, 0, 2, -1), (1, 2, 3, 0), (0, 2, 4, 0), (2, 0, 2, -1)]
    >>> segments([[5, 6, 7], [5, 6, 7]], caps=[0, 0])  # nothing may be shared
    [(0, 0, 3, -1), (1, 0, 3, -1)]
    """
    out: list[tuple[int, int, int, int]] = []

    def visit(members: list[int], start: int, parent: int) -> None:
        if len(members) == 1:
            out.append((members[0], start, len(rows[members[0]]), parent))
            return
        end = start
        while all(end < caps[i] for i in members) and len({rows[i][end] for i in members}) == 1:
            end += 1
        node = parent
        if end > start:
            node = len(out)
            out.append((members[0], start, end, parent))
        branches: dict[int, list[int]] = {}
        for i in members:
            if caps[i] <= end:  # shares no further: its leaf starts here
                out.append((i, end, len(rows[i]), node))
            else:
                branches.setdefault(rows[i][end], []).append(i)
        for group in branches.values():
            visit(group, end, node)

    visit(list(range(len(rows))), 0, -1)
    return out


def layout(segs: list[tuple[int, int, int, int]]) -> list[list[int]]:
    """Which segments each packed row holds, in order: every tree (a root and what lies below it) whole,
    first-fit by decreasing size into rows as long as the largest tree.

    >>> layout([(0, 0, 6, -1), (1, 0, 2, -1), (2, 0, 3, -1), (2, 3, 4, 2)])
    [[0], [2, 3, 1]]
    """
    trees: list[list[int]] = []
    for s, (_, _, _, parent) in enumerate(segs):
        if parent == -1:
            trees.append([s])
        else:
            trees[-1].append(s)  # preorder: a segment follows its tree's root
    size = [sum(segs[s][2] - segs[s][1] for s in tree) for tree in trees]
    capacity = max(size, default=0)
    rows: list[list[int]] = []
    free: list[int] = []
    for t in sorted(range(len(trees)), key=lambda t: -size[t]):
        slot = next((r for r, room in enumerate(free) if room >= size[t]), None)
        if slot is None:
            rows.append([])
            free.append(capacity)
            slot = len(rows) - 1
        rows[slot] += trees[t]
        free[slot] -= size[t]
    return rows


def pack_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """A right-padded causal-LM batch (``input_ids``, ``attention_mask``, ``labels``, optionally
    ``loss_weight``) as packed rows: the same keys (``attention_mask`` 4D boolean, True = may attend),
    ``position_ids``, and ``PACKED_TOKENS`` (the packed rows' real tokens)."""
    import torch

    unknown = set(batch) - {"input_ids", "attention_mask", "labels", "loss_weight"}
    if unknown:
        raise ValueError(f"sft.pack_shared_prompts cannot pack a batch with {sorted(unknown)} (TRL's padding_free "
                         "or position ids); turn those off or set sft.pack_shared_prompts=false")
    ids, labels = batch["input_ids"], batch["labels"]
    lengths = batch["attention_mask"].sum(-1).tolist()
    rows = [ids[i, :n].tolist() for i, n in enumerate(lengths)]
    caps = []
    for i, n in enumerate(lengths):
        trained = (labels[i, :n] != -100).nonzero()
        caps.append(max(int(trained[0]) - 1, 0) if len(trained) else max(n - 1, 0))
    segs = segments(rows, caps)
    packed = layout(segs)
    width = max(sum(segs[s][2] - segs[s][1] for s in row) for row in packed)
    n_rows, n_segs = len(packed), len(segs)
    ancestor = torch.eye(n_segs + 1, dtype=torch.bool)  # the last: padding, which sees only padding
    for s, (_, _, _, parent) in enumerate(segs):
        if parent >= 0:
            ancestor[s] |= ancestor[parent]
    seg_of = torch.full((n_rows, width), n_segs, dtype=torch.long)
    out = {
        "input_ids": torch.zeros((n_rows, width), dtype=ids.dtype),  # padding: seen by nothing real
        "labels": torch.full((n_rows, width), -100, dtype=labels.dtype),
        "position_ids": torch.zeros((n_rows, width), dtype=torch.long),
    }
    if "loss_weight" in batch:
        out["loss_weight"] = torch.zeros((n_rows, width), dtype=batch["loss_weight"].dtype)
    for r, row in enumerate(packed):
        at = 0
        for s in row:
            i, start, end, _ = segs[s]
            span = slice(at, at + end - start)
            out["input_ids"][r, span] = ids[i, start:end]
            out["labels"][r, span] = labels[i, start:end]
            # what precedes a segment here is not what preceded it in its row: nothing predicts its first token
            # (never a trained one past a row's start: ``caps``)
            out["labels"][r, at] = -100
            out["position_ids"][r, span] = torch.arange(start, end)
            if "loss_weight" in batch:
                out["loss_weight"][r, span] = batch["loss_weight"][i, start:end]
            seg_of[r, span] = s
            at += end - start
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    out["attention_mask"] = (ancestor[seg_of[:, :, None], seg_of[:, None, :]] & causal)[:, None]
    out[PACKED_TOKENS] = torch.tensor(int((seg_of < n_segs).sum()))
    return out


class PackedCollator:
    """TRL's collator (``base``, with sblite's weight column where used), then ``pack_batch``."""

    def __init__(self, base):
        self.base = base

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        return pack_batch(self.base(examples))


class PackedTokenCount:
    """Mixed into the SFT trainer on packed batches: TRL counts ``attention_mask.sum()`` as the tokens seen,
    which for a 4D mask is its entries; this counts the packed rows' real tokens, the tokens computed."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        tokens = inputs.pop(PACKED_TOKENS)
        before = self._total_train_tokens
        result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if self.model.training:
            self._total_train_tokens = before + int(self.accelerator.gather_for_metrics(tokens).sum())
            self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
        return result


def packed_sft_trainer(build, **kwargs):
    """``build(**kwargs)`` (TRL's ``SFTTrainer`` or sblite's weighted one) on packed batches: its collator
    wrapped in ``PackedCollator``, its token count ``PackedTokenCount``'s."""
    impl = getattr(getattr(kwargs["model"], "config", None), "_attn_implementation", None)
    if impl not in MASK_ATTENTION:
        raise ValueError(f"sft.pack_shared_prompts needs an attention that reads a 4D mask "
                         f"({', '.join(MASK_ATTENTION)}); this model uses {impl!r}: load it with one of those or "
                         "set sft.pack_shared_prompts=false")
    trainer = build(**kwargs)
    base = type(trainer)
    trainer.__class__ = type(f"Packed{base.__name__}", (PackedTokenCount, base), {})
    trainer.data_collator = PackedCollator(trainer.data_collator)
    return trainer

"""How many tokens an SFT epoch computes, padding included, under each way of ordering the cold start's rows.

    python benchmarks/sft_padding.py --prepared demo-out/prepared --recipe demo-out/run/recipe.resolved.yaml

The rows are what sblite trains: ``train.datasets.build_sft_dataset`` on the prepared ``sft.jsonl`` with the
recipe's ``sft.*`` (budget-reading and budget-stating rows included). Batches are cut as the trainer cuts them,
``--epochs`` times (sampler seeds 0…), ``sft.per_device_train_batch_size`` rows each, each padded to its longest
row (TRL's collator pads to the batch's longest):

- ``reading``: ``group_by_length`` with the stating rows under the reading rows' one shared length
  (``sft.budget_stating_length: reading``, the default; the baseline);
- ``own``: the stating rows under a shared length of their own (``sft.budget_stating_length: own``);
- ``true length``: ``group_by_length`` over every row's own length (loses budget reading: ``shared_lengths``);
- ``random``: no grouping (TRL's default sampler).

Reports padded tokens, real tokens and their ratio per ordering, and ``reading``'s padded tokens over ``own``'s.
Nothing is trained: the compute an SFT step does on CPU grows with the padded batch, which is what this counts;
the wall time it buys is measured by the demo (benchmarks/results/demo_*.md). JSON →
benchmarks/results/sft_padding.json (``--out``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_json  # noqa: E402


def padded_tokens(lengths: list[int], true_lengths: list[int], batch_size: int, *, grouped: bool, seed: int) -> int:
    """Tokens one epoch computes: batches drawn as the trainer draws them (by ``lengths`` when ``grouped``),
    each ``len(batch)`` × its longest true length.

    >>> padded_tokens([5, 5, 1, 1], [5, 5, 1, 1], 2, grouped=True, seed=0)
    12
    """
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    g = torch.Generator()
    g.manual_seed(seed)
    idx = (get_length_grouped_indices(lengths, batch_size, generator=g) if grouped
           else torch.randperm(len(lengths), generator=g).tolist())  # fmt: skip
    return sum(max(true_lengths[j] for j in idx[i:i + batch_size]) * len(idx[i:i + batch_size])
               for i in range(0, len(idx), batch_size))  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prepared", required=True, help="a prepared folder (sblite prepare / the demo's prepared/)")
    ap.add_argument("--recipe", required=True, help="recipe name or YAML (a run's recipe.resolved.yaml)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe overrides")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS / "sft_padding.json"))
    args = ap.parse_args(argv)

    from transformers import AutoTokenizer

    from sblite.data.prepared import load_prepared
    from sblite.models import resolve_model
    from sblite.recipes import RecipeError, load_recipe
    from sblite.train.datasets import LENGTH_COLUMN, build_sft_dataset

    rows = load_prepared(args.prepared).sft
    tok, lengths = None, {}
    for setting in ("reading", "own"):  # the length column sblite itself writes under each setting
        try:
            cfg = load_recipe(args.recipe, [*args.set, f"sft.budget_stating_length={setting}"])
        except RecipeError as err:
            raise SystemExit(str(err)) from None
        tok = tok or AutoTokenizer.from_pretrained(resolve_model(cfg.model.name_or_path))
        ds = build_sft_dataset(rows, cfg, tok)
        lengths[setting] = list(ds[LENGTH_COLUMN])
    true = [len(ids) for ids in ds["input_ids"]]  # the same rows, in the same order, under both settings
    orderings = {
        "reading": (lengths["reading"], True),
        "own": (lengths["own"], True),
        "true length": (true, True),
        "random": (true, False),
    }
    bs = cfg.sft.per_device_train_batch_size
    real = args.epochs * sum(true)
    table = {}
    for name, (lengths, grouped) in orderings.items():
        padded = sum(padded_tokens(lengths, true, bs, grouped=grouped, seed=e) for e in range(args.epochs))
        table[name] = {"padded_tokens": padded, "ratio_to_real": round(padded / real, 3)}
        print(f"{name:>18}: {padded:>8} padded tokens over {args.epochs} epochs, {padded / real:.2f}× the real {real}")
    gain = table["reading"]["padded_tokens"] / table["own"]["padded_tokens"]
    print(f"reading computes {gain:.2f}× own's tokens")
    result = {
        "args": vars(args),
        "rows": len(true),
        "batch_size": bs,
        "real_tokens": real,
        "orderings": table,
        "reading_over_own": round(gain, 3),
    }
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()

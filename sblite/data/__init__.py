"""Prepared data for SelfBudgeter training: sources, budget labels, difficulty (``sblite prepare``).

- ``sources``: resolve a dataset name/file/hub id, read records, map fields, normalise gold answers, reject
  bad rows with a reason;
- ``labels``: reference-solution and sampled budget labels (``b_max``), difficulty;
- ``prepare``: ``run_prepare`` writes ``sft.jsonl``, ``grpo.jsonl``, ``rejects.jsonl`` and ``report.json``.

Importing this package is cheap: torch and transformers load only when labelling starts.
"""

from sblite.data.prepare import PrepareError, PrepareOptions, PrepareResult, run_prepare

__all__ = ["PrepareError", "PrepareOptions", "PrepareResult", "run_prepare"]

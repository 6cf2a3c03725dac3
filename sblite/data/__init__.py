"""Prepared data for SelfBudgeter training: sources, budget labels, difficulty (``sblite prepare``).

- ``readers``: resolve a dataset name/file/hub id and read its raw records (``SourceError`` for the whole);
- ``fields``: map fields, normalise gold answers, validate each record into a row or a reject with a reason;
- ``rows``: ``load_rows``, read → resolve fields → validate, shared by ``prepare`` and ``sblite eval``;
- ``labels``: reference-solution and sampled budget labels (``b_max``), difficulty; ``engines``: the
  sampling model;
- ``prepare``: ``run_prepare`` writes a prepared directory, ``report`` its ``report.json`` and table;
- ``prepared``: the prepared directory's layout and its one reader (``sblite train`` / ``sblite eval``);
- ``synthetic``: the bundled graded arithmetic problems.

Importing this package is cheap: torch and transformers load only when labelling starts.

No module here trains, evaluates or writes anything but the prepared directory.
"""

from sblite.data.prepare import PrepareError, PrepareOptions, PrepareResult, run_prepare

__all__ = ["PrepareError", "PrepareOptions", "PrepareResult", "run_prepare"]

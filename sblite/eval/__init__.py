"""``sblite eval``: generate on a benchmark, grade, and measure accuracy, length, compression and adherence.

Eval never trains or changes a model.
"""

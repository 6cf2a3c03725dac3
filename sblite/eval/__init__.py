"""``sblite eval``: generate on a benchmark, grade, and measure accuracy, length, compression and adherence."""

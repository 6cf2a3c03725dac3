"""``tests/fakes`` holds stand-in packages, not tests: never collect them (``--doctest-modules`` would import
the stand-in ``unsloth`` for the whole session, and every ``find_spec("unsloth")`` would then find it)."""

collect_ignore = ["unsloth", "unsloth_zoo"]

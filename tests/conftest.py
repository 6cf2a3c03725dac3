"""Shared fixtures: offline tiny models, a hermetic sblite cache, and the ../shared data when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SBLITE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session", autouse=True)
def _sblite_cache(tmp_path_factory):
    """Each test session builds its built-in models into its own cache: no state leaks between runs.
    SmolLM2 is the exception (20 s to convert): set SBLITE_TEST_CACHE to reuse a converted copy."""
    cache = os.environ.get("SBLITE_TEST_CACHE") or str(tmp_path_factory.mktemp("sblite-cache"))
    old = os.environ.get("SBLITE_CACHE")
    os.environ["SBLITE_CACHE"] = cache
    yield Path(cache)
    if old is None:
        os.environ.pop("SBLITE_CACHE", None)
    else:
        os.environ["SBLITE_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_model_dir(_sblite_cache) -> Path:
    """A tiny random Llama with a locally trained BPE tokenizer and ChatML template (never a download)."""
    from sblite.models import resolve_model

    return Path(resolve_model("builtin:tiny-random"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data not found at {SHARED_DATA}")
    return SHARED_DATA


def write_prepared(out: Path, tokenizer, n: int = 16, *, seed: int = 0) -> Path:
    """A small `sblite prepare`-shaped directory of 1-digit sums, budgets counted in ``tokenizer``'s tokens."""
    import json
    import random

    from sblite import protocol

    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    sft, grpo = [], []
    for i in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        solution = f"{a} + {b} = {a + b}. The answer is \\boxed{{{a + b}}}."
        budget = protocol.count_tokens(f"<solution>{solution}</solution>", tokenizer)
        row = {
            "id": f"q{i}",
            "source": "fixture",
            "question": f"What is {a} + {b}?",
            "answer": str(a + b),
            "level": 1 + i % 2,
            "difficulty": 0.1 * (1 + i % 2),
        }
        sft.append({**row, "completion": protocol.render_completion(budget, solution), "b_max": budget})
        grpo.append({**row, "b_max": budget if i % 4 else None})
    for name, rows in (("sft", sft), ("grpo", grpo), ("rejects", [])):
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "report.json").write_text(json.dumps({"read": n, "kept": n, "rejected": 0}))
    return out


@pytest.fixture(scope="session")
def tiny_prepared_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    return write_prepared(tmp_path_factory.mktemp("prepared"), tiny_tokenizer)

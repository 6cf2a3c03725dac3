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


@pytest.fixture(scope="session")
def tiny_prepared_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    from sblite.data.synthetic import write_prepared

    return write_prepared(tmp_path_factory.mktemp("prepared"), tiny_tokenizer)

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


#: DeepSeek's special tokens on top of the Qwen2.5 vocabulary (../shared/data/templates/README.md)
R1_SPECIALS = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"]


@pytest.fixture(scope="session")
def make_r1_tokenizer(shared_data):
    """``make(add_bos=False)``: DeepSeek-R1-Distill's tokenizer as the shared README builds it — Qwen2.5's
    vocabulary, DeepSeek's special tokens and the real R1-Distill chat template (its generation prompt ends in
    ``<｜Assistant｜><think>\\n``). ``add_bos``: prepend BOS on encode, as the real R1-Distill tokenizer does."""
    from transformers import AutoTokenizer

    def make(*, add_bos: bool = False):
        tok = AutoTokenizer.from_pretrained(shared_data / "tokenizers" / "qwen2")
        tok.add_special_tokens({"bos_token": R1_SPECIALS[0], "eos_token": R1_SPECIALS[1],
                                "additional_special_tokens": R1_SPECIALS[2:]})  # fmt: skip
        tok.add_bos_token = add_bos
        tok.chat_template = (shared_data / "templates" / "deepseek-r1-distill-qwen.jinja").read_text(encoding="utf-8")
        assert (tok.encode("a")[0] == tok.bos_token_id) == add_bos
        return tok

    return make


@pytest.fixture(scope="session")
def tiny_prepared_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    from sblite.data.synthetic import write_prepared

    return write_prepared(tmp_path_factory.mktemp("prepared"), tiny_tokenizer)

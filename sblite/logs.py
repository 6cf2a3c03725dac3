"""Quiet the libraries under sblite: their tqdm bars and deprecation chatter would tear rich's live output."""

from __future__ import annotations

import warnings


def quiet_libraries() -> None:
    """Turn off datasets/transformers progress bars and their FutureWarnings (sblite shows its own progress)."""
    import datasets
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|trl|peft)\b")

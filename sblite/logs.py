"""sblite's own console output: the libraries under it stay quiet, and one progress adapter for its stages.

``quiet_libraries()`` turns off what datasets/transformers would print over rich's live views: their tqdm bars
(``Loading weights``, ``Map``, the GGUF loader's ``Converting and de-quantizing GGUF tensors``), info logs and
FutureWarnings. Every command that loads a model calls it first; calling it again is free.
``progress_bars(console)`` turns the library's ``progress(stage, advance, total)`` callbacks (``run_prepare``)
into one rich Progress, for the CLI and the demo alike.

Nothing here decides what sblite prints; it only keeps other libraries from printing over it.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator

ProgressFn = Callable[[str, int, "int | None"], None]


def quiet_libraries() -> None:
    """Turn off datasets/transformers progress bars, info logs and FutureWarnings (sblite shows its own)."""
    import datasets
    import transformers.modeling_gguf_pytorch_utils as gguf_loader
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    # the GGUF loader calls tqdm directly, past transformers' own switch
    if not isinstance(gguf_loader.tqdm, functools.partial):
        gguf_loader.tqdm = functools.partial(gguf_loader.tqdm, disable=True)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|trl|peft)\b")


@contextlib.contextmanager
def progress_bars(console, *, transient: bool = False) -> Iterator[ProgressFn]:
    """A ``progress(stage, advance, total)`` callback drawing one bar per stage on ``console``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=transient) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, advance: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            elif total is not None:
                bar.update(tasks[stage], total=total)
            if advance:
                bar.advance(tasks[stage], advance)

        yield update

"""``sblite train``: budget SFT and budget-guided GRPO on TRL (Unsloth's kernels on a GPU).

    run.py        run_training(recipe): the stages in order into one run directory; the only place trainers
                  are built
    datasets.py   prepared rows → what each TRL trainer trains on (tokenized SFT examples, GRPO prompts)
    trl_args.py   a recipe stage section → its TRL config (one function, every field)
    callbacks.py  sblite's log lines, metrics.jsonl, reward metrics and the zero-signal guard
    launch.py     data-parallel re-launch under `accelerate launch` / torchrun

The errors every stage module raises live here, so importing one of them pulls in nothing heavy.
"""


class TrainingError(RuntimeError):
    """A run that cannot start or had to stop; the message says what to change."""


class ZeroSignalStop(TrainingError):
    """``--strict`` stopped GRPO because its batches carried no learning signal."""

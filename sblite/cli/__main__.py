"""``python -m sblite.cli``: what ``sblite train --num-processes N`` re-runs under torchrun/accelerate."""

from sblite.cli import main

main()

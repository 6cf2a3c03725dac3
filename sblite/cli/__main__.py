"""``python -m sblite.cli``: what ``sblite train --num-processes N`` re-runs under torchrun/accelerate.

It must not do anything but call ``main``.
"""

from sblite.cli import main

main()

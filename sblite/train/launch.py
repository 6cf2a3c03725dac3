"""Data-parallel training under an existing launcher: `accelerate launch` on CUDA, torch's own elastic
launcher (torchrun, gloo) on CPU. sblite adds no distribution layer of its own; this module only builds
the command that re-runs ``sblite train`` N times and runs it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys


def launch_command(
    num_processes: int, recipe: str, overrides: list[str], *, resume: bool, strict: bool, cuda: bool
) -> list[str]:
    """The command line that re-runs ``sblite train`` as ``num_processes`` data-parallel workers.

    >>> cmd = launch_command(2, "tiny-cpu", ["data.path=d"], resume=True, strict=False, cuda=False)
    >>> cmd[1:5], cmd[-6:]
    (['-m', 'torch.distributed.run', '--nproc_per_node', '2'], ['train', '--recipe', 'tiny-cpu', '--set', 'data.path=d', '--resume'])
    """
    args = ["-m", "sblite.cli", "train", "--recipe", recipe]
    for item in overrides:
        args += ["--set", item]
    args += ["--resume"] * resume + ["--strict"] * strict
    if cuda and shutil.which("accelerate"):
        return ["accelerate", "launch", "--multi_gpu", "--num_processes", str(num_processes), *args]
    with socket.socket() as sock:  # a free port for the gloo rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(num_processes),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        *args,
    ]


def relaunch(
    num_processes: int, recipe: str, overrides: list[str], *, resume: bool, strict: bool, console=None
) -> int:
    """Run ``launch_command`` and return its exit code (the caller exits with it)."""
    from sblite.backends import cuda_available

    cmd = launch_command(
        num_processes, recipe, overrides, resume=resume, strict=strict, cuda=cuda_available()
    )
    if console is not None:
        console.print(f"[bold]launching {num_processes} processes:[/] {' '.join(cmd)}", highlight=False)
    return subprocess.call(cmd)

import os

import pytest
import torch

# Small models train fastest on one thread; tests should not compete for the 2 cores of CI.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def run_cli(capsys):
    """Run `nnopt ARGS` in-process; return (exit code, stdout, stderr)."""
    from nnopt.cli import main

    def run(*args: str):
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run

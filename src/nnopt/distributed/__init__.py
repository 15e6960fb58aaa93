"""Training on several processes: synchronous data parallel (DistributedDataParallel) and Hogwild.

    nnopt train --data digits --nproc 2                      # 2 processes on this machine
    torchrun --nnodes 2 --nproc-per-node 4 ... -m nnopt train --data digits --out runs/x   # many machines

run() picks the way from the spec and the environment; launch() is the local launcher (fresh rendezvous port per
attempt, restarts from the checkpoint); run_rank() is one rank under torchrun; DDPParallel is the strategy object
nnopt.train.run() takes (train/_parallel.py). See docs/distributed.md.
"""

from typing import Any

from nnopt.distributed._ddp import DDPParallel, env_rank, env_world_size, join_env, join_local
from nnopt.distributed._launch import launch
from nnopt.distributed._run import fit, run, run_rank, wanted

__all__ = ["DDPParallel", "env_rank", "env_world_size", "fit", "join_env", "join_local", "launch", "run", "run_rank", "wanted",
           "train_hogwild"]


def __getattr__(name: str) -> Any:
    if name == "train_hogwild":  # loaded on first use
        from nnopt.distributed._run import _hogwild

        return _hogwild()
    raise AttributeError(f"module 'nnopt.distributed' has no attribute '{name}'")

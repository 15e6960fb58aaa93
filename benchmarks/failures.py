"""How long nnopt takes to notice two failures that the tests only check for behaviour (timing is not asserted
there): a distributed rendezvous nobody answers, and a shared-study trial whose machine stopped beating.

- rendezvous: `nnopt train --data digits` as rank 1 of 2 with MASTER_PORT where nobody listens, under
  NNOPT_DIST_TIMEOUT=T for each T of --timeouts; "instant" is the same command with LOCAL_RANK=x, which fails
  before the rendezvous after the same imports, so "wait" = median wall - median instant wall is the time spent
  waiting (expected: T). Interleaved: each repeat runs instant, then every T.
- stale trial: the scenario of tests/search/test_shared_study.py (SQLite, one trial RUNNING for another machine
  whose heartbeat stopped, 3 trials asked for): seconds until run_trials returns with that trial failed and its
  copy complete, at heartbeat / grace periods of (1 s, 1 s), (2 s, 4 s) and, with --defaults, nnopt's own
  (10 s, 30 s). Expected: about the grace period, checked every heartbeat / 5.

    .venv/bin/python benchmarks/failures.py [--repeats 3] [--timeouts 3,6] [--defaults]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rendezvous_wall(timeout: float | None, workdir: Path) -> float:
    """Wall seconds of one failing `nnopt train`; timeout None: the instant failure (bad LOCAL_RANK)."""
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port()), "NNOPT_DIST_TIMEOUT": str(timeout or 60), "OMP_NUM_THREADS": "1"}
    if timeout is None:
        env["LOCAL_RANK"] = "x"
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "nnopt", "train", "--data", "digits", "--out",
                           str(workdir / "r")], capture_output=True, text=True, env=env, timeout=300)
    wall = time.perf_counter() - began
    expected = "LOCAL_RANK" if timeout is None else f"within {timeout:g} s"
    assert done.returncode == 2 and expected in done.stderr, done.stderr
    return wall


def stale_trial_seconds(heartbeat: int, grace: int, workdir: Path) -> float:
    import optuna

    from nnopt.search import _storage
    from nnopt.search._loop import Claims, run_trials

    _storage.HEARTBEAT_S, _storage.GRACE_S = heartbeat, grace
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    path = workdir / f"study-{heartbeat}-{grace}-{time.monotonic_ns()}.db"
    storage = _storage.open_storage(f"sqlite:///{path}", workdir)
    study = optuna.create_study(storage=storage, direction="minimize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(2):
            trial = study.ask()
            study.tell(trial, trial.suggest_float("x", -1, 1) ** 2)
        lost = study.ask()  # another machine's trial, which stops beating
        lost.set_user_attr("worker", "elsewhere:1")
        lost.suggest_float("x", -1, 1)
    storage.record_heartbeat(lost._trial_id)
    began = time.perf_counter()
    run_trials(study, lambda t: [t.suggest_float("x", -1, 1) ** 2], 3, time.time() + 10 * grace + 60, Claims(None))
    seconds = time.perf_counter() - began
    states = [t.state.name for t in study.get_trials()]
    assert states == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"], states
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeouts", default="3,6", help="NNOPT_DIST_TIMEOUT values, comma-separated")
    parser.add_argument("--defaults", action="store_true", help="also nnopt's own heartbeat / grace (10 s, 30 s)")
    args = parser.parse_args()
    timeouts = [float(t) for t in args.timeouts.split(",")]
    periods = [(1, 1), (2, 4)] + ([(10, 30)] if args.defaults else [])
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        walls: dict[float | None, list[float]] = {t: [] for t in [None, *timeouts]}
        stale: dict[tuple[int, int], list[float]] = {p: [] for p in periods}
        for _ in range(args.repeats):
            for t in walls:
                walls[t].append(rendezvous_wall(t, workdir))
            for p in periods:
                stale[p].append(stale_trial_seconds(*p, workdir))
    instant = statistics.median(walls[None])
    print("| rendezvous | NNOPT_DIST_TIMEOUT | wall s (each run) | median | wait = median - instant |")
    print("|---|---:|---|---:|---:|")
    for t, values in walls.items():
        each = ", ".join(f"{v:.1f}" for v in values)
        wait = "—" if t is None else f"{statistics.median(values) - instant:.1f}"
        print(f"| {'instant failure' if t is None else 'nobody listens'} | {'—' if t is None else f'{t:g}'} "
              f"| {each} | {statistics.median(values):.1f} | {wait} |")
    print()
    print("| stale trial | heartbeat s | grace s | seconds to fail it and run its copy (each run) | median |")
    print("|---|---:|---:|---|---:|")
    for (heartbeat, grace), values in stale.items():
        each = ", ".join(f"{v:.1f}" for v in values)
        print(f"| SQLite | {heartbeat} | {grace} | {each} | {statistics.median(values):.1f} |")


if __name__ == "__main__":
    main()

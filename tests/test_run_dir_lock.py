"""A run directory is locked while a command writes it: a second command on it stops with exit code 2 naming the
holder's pid, the first finishes normally, and the lock of a killed process is taken over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import nnopt
from nnopt.errors import UsageError
from nnopt.fileio import LOCK_NAME, lock_run_dir

# Trains 2 epochs into argv[1] and, after the first (checkpointed), waits until the file argv[2] exists: a
# command caught in the middle of writing its run directory, for as long as the test needs.
HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import nnopt

    class Wait(nnopt.train.Callback):
        def on_epoch_end(self, epoch, logs):
            print(f"epoch {epoch}", flush=True)
            while epoch == 1 and not Path(sys.argv[2]).exists():
                time.sleep(0.05)

    nnopt.fit("mlp:16", "iris", epochs=2, seed=0, threads=1, out=sys.argv[1], callbacks=[Wait()])
    print("done", flush=True)
""")


def _cli(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnopt", *map(str, args)], capture_output=True, text=True,
                          timeout=300, **kwargs)


@pytest.fixture
def holder(tmp_path):
    """A process in the middle of `nnopt.fit(..., out=run)`; yields (process, run dir, go file)."""
    run, go = tmp_path / "run", tmp_path / "go"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run), str(go)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "epoch 1\n", proc.communicate()
    yield proc, run, go
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def test_a_second_command_on_the_directory_exits_2_naming_the_holder(holder):
    proc, run, go = holder
    assert (run / LOCK_NAME).read_text() == f"{proc.pid}\n"
    second = _cli("train", "--out", run, "--resume")
    assert second.returncode == 2 and second.stdout == ""
    assert second.stderr == (f"error: {run} is in use by another nnopt process (pid {proc.pid}); wait for it to "
                             "finish or use another --out\n")
    go.touch()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and out == "epoch 2\ndone\n", err
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2 and (run / "summary.json").is_file()
    assert not (run / LOCK_NAME).exists()  # released by a finished command
    with lock_run_dir(run):  # and free for the next
        assert (run / LOCK_NAME).read_text() == f"{os.getpid()}\n"


def test_the_lock_of_a_killed_process_is_taken_over(holder):
    proc, run, _ = holder
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (run / LOCK_NAME).read_text() == f"{proc.pid}\n"  # left behind, but no longer locked
    resumed = _cli("train", "--out", run, "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2  # epoch 1 from the checkpoint, then 2
    assert not (run / LOCK_NAME).exists()


CALLS = {
    "fit": lambda run: nnopt.fit("mlp:8", "iris", epochs=1, out=run),
    "compare": lambda run: nnopt.compare("iris", out=run),
    "find_lr": lambda run: nnopt.find_lr("mlp:8", "iris", out=run),
    "tune": lambda run: nnopt.tune(lambda p: p["x"], space={"x": {"type": "float", "low": 0, "high": 1}}, out=run),
    "nas": lambda run: nnopt.nas("iris", out=run),
    "compress_model": lambda run: nnopt.compress_model(run, quantize="int8", out=run),
    "automl": lambda run: nnopt.automl("iris", out=run),
    "evaluate": lambda run: nnopt.evaluate(run, "iris", out=run),
}


def test_the_python_api_raises_a_usage_error_on_a_directory_in_use(holder):
    proc, run, go = holder
    before = sorted(p.name for p in run.iterdir())
    for name, call in CALLS.items():
        with pytest.raises(UsageError) as info:
            call(run)
        assert str(info.value) == (f"{run} is in use by another nnopt process (pid {proc.pid}); wait for it to "
                                   "finish or use another out="), name
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written into the holder's directory
    go.touch()
    assert proc.wait(timeout=300) == 0


def test_a_process_takes_its_own_lock_again_and_other_directories_alongside(tmp_path):
    run = tmp_path / "run"
    with lock_run_dir(run):
        with lock_run_dir(run), lock_run_dir(run / "search"):  # automl's stages write inside its directory
            assert (run / LOCK_NAME).read_text() == f"{os.getpid()}\n"
            assert (run / "search" / LOCK_NAME).is_file()
        assert (run / LOCK_NAME).is_file()  # still held by the outer block
        assert not (run / "search").exists()  # created by the inner lock and left empty: removed
    assert not run.exists()
    with lock_run_dir(run):  # free again in this process
        (run / "kept.txt").write_text("x")
    assert sorted(p.name for p in run.iterdir()) == ["kept.txt"]


def test_a_directory_is_free_again_once_the_holder_exits(tmp_path):
    run = tmp_path / "run"
    script = ("import sys\nfrom nnopt.fileio import lock_run_dir\n"
              "with lock_run_dir(sys.argv[1]):\n    print('held', flush=True)\n    sys.stdin.readline()\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(run)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline() == "held\n"
    with pytest.raises(UsageError, match=rf"\(pid {proc.pid}\)"):
        with lock_run_dir(run):
            pass
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.wait(timeout=60) == 0
    assert not (run / LOCK_NAME).exists()
    with lock_run_dir(run):
        assert (run / LOCK_NAME).read_text() == f"{os.getpid()}\n"


# Locks argv[1] as a command does, forks a child that inherits the lock (as `nnopt tune --workers N` forks its
# workers), prints both pids and waits to be killed; the child waits until the file argv[2] exists.
FORKER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from nnopt.fileio import lock_run_dir

    with lock_run_dir(sys.argv[1]):
        child = os.fork()
        if child == 0:
            while not Path(sys.argv[2]).exists():
                time.sleep(0.05)
            os._exit(0)
        print(os.getpid(), child, flush=True)
        time.sleep(300)
""")


def test_a_directory_held_by_the_workers_of_a_killed_command_says_so(tmp_path):
    """The message named the killed command's pid as the process in use, which `ps` no longer shows."""
    run, go = tmp_path / "run", tmp_path / "go"
    proc = subprocess.Popen([sys.executable, "-c", FORKER, str(run), str(go)], stdout=subprocess.PIPE, text=True)
    try:
        parent, child = map(int, proc.stdout.readline().split())
        os.kill(parent, signal.SIGKILL)
        proc.wait()
        second = _cli("train", "--data", "iris", "--out", run)
        assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
        assert second.stderr == (f"error: {run} is in use by processes that nnopt process {parent} started; it has "
                                 "ended, and they stop when their work is done (a study's workers after their "
                                 "trials): wait for them or use another --out\n")
    finally:
        go.touch()
    for _ in range(200):  # the child exits once the go file exists; the directory is then free
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    with lock_run_dir(run):
        assert (run / LOCK_NAME).read_text() == f"{os.getpid()}\n"

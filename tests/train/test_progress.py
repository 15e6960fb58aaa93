"""The epoch progress bar: rows/s, the epoch's number and the last epoch's metrics on a terminal; nothing without
one; --progress / --no-progress and progress= force it either way; the step hook never reads the loss."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console

import nnopt
from nnopt.errors import UsageError
from nnopt.train import ProgressBar
from nnopt.train import fit as fit_library

SRC = str(Path(__file__).resolve().parents[2] / "src")
BAR = re.compile(r"rows/s|━|\x1b\[")  # what any drawing of the bar writes


def _terminal_bar() -> tuple[ProgressBar, io.StringIO]:
    buffer = io.StringIO()
    return ProgressBar(console=Console(file=buffer, force_terminal=True, width=120)), buffer


def test_on_a_terminal_the_bar_shows_rows_per_second_and_the_last_epochs_metrics(monkeypatch):
    monkeypatch.setattr("nnopt.train._progress.REFRESH_S", 0.0)  # redraw at every step
    bar, buffer = _terminal_bar()
    result = fit_library("mlp:16", "digits", epochs=2, batch_size=32, seed=0, callbacks=[bar])
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buffer.getvalue())
    assert re.search(r"epoch 1/2 .*[\d,]+ rows/s", text) and re.search(r"epoch 2/2 .*[\d,]+ rows/s", text)
    last = text.strip().splitlines()[-1]  # printed after the bar is gone
    assert last == (f"epoch 2/2  train_loss={result.history[-1]['train_loss']:.4g}  "
                    f"val_loss={result.history[-1]['val_loss']:.4g}  "
                    f"val_accuracy={result.history[-1]['val_accuracy']:.4g}")


class _NoSync(torch.Tensor):
    def item(self):
        raise AssertionError("the progress bar read the loss (a host sync)")

    def __float__(self):
        raise AssertionError("the progress bar read the loss (a host sync)")


def test_the_step_hook_never_reads_the_loss(monkeypatch):
    monkeypatch.setattr("nnopt.train._progress.REFRESH_S", 0.0)
    bar, buffer = _terminal_bar()
    bar.on_train_start({"epochs": 1, "start_epoch": 0, "steps_per_epoch": 4, "rows": 100, "batch_size": 32})
    bar.on_epoch_start(1)
    loss = torch.tensor(1.0).as_subclass(_NoSync)
    for step in range(1, 5):
        bar.on_step_end(1, step, loss)
    bar.on_epoch_end(1, {"epoch": 1, "train_loss": 0.5})
    bar.on_train_end(None)
    assert "rows/s" in buffer.getvalue()


def test_between_redraws_a_step_only_reads_the_clock(monkeypatch):
    bar, buffer = _terminal_bar()
    bar.on_train_start({"epochs": 1, "start_epoch": 0, "steps_per_epoch": 1000, "rows": 32000, "batch_size": 32})
    bar.on_epoch_start(1)
    redraws = []
    monkeypatch.setattr(bar._progress, "refresh", lambda: redraws.append(1))
    for step in range(1, 1001):  # a thousand steps well inside REFRESH_S
        bar.on_step_end(1, step, None)
    assert len(redraws) <= 1
    bar.close()


def test_progress_must_be_true_false_or_auto():
    with pytest.raises(UsageError, match=r"progress= must be True, False or 'auto'; got 'yes'"):
        fit_library("mlp:8", "iris", epochs=1, progress="yes")


def _run(code: str, on_terminal: bool) -> str:
    """stderr of `python -c code`, on a pseudo-terminal or a pipe."""
    env = {**os.environ, "PYTHONPATH": SRC, "COLUMNS": "120"}
    if not on_terminal:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stderr
    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=child, stdout=subprocess.DEVNULL, env=env)
    os.close(child)
    chunks = []
    while True:
        ready, _, _ = select.select([main], [], [], 300)
        try:
            chunk = os.read(main, 65536) if ready else b""
        except OSError:  # the child closed the terminal
            chunk = b""
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    assert proc.wait(timeout=60) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


NEXT = "<<next call>>"  # written to stderr between the calls one process makes


def _run_each(calls: list[str], on_terminal: bool) -> list[str]:
    """stderr of each statement in `calls`, run one after the other in one `python -c` process (on a
    pseudo-terminal or a pipe): whether a bar is drawn is decided per call, from stderr as it is at that call, so
    the calls share the process's start-up (torch's import) and nothing else."""
    marker = f"sys.stderr.write({NEXT!r}); sys.stderr.flush()"
    code = "import sys\n" + f"\n{marker}\n".join(calls)
    return _run(code, on_terminal).split(NEXT)


def _cli(args: list[str]) -> str:
    return f"from nnopt.cli import main; assert main({args!r}) == 0"


def test_the_cli_draws_the_bar_on_a_terminal_and_nothing_into_a_pipe(tmp_path):
    args = ["train", "--data", "digits", "--model", "mlp:16", "--epochs", "2", "--out"]
    tty, quiet, json_out = _run_each([_cli(args + [str(tmp_path / "tty")]),
                                      _cli(args + [str(tmp_path / "off"), "--no-progress"]),
                                      _cli(args + [str(tmp_path / "json"), "--json"])], on_terminal=True)
    assert BAR.search(tty)
    assert not BAR.search(quiet)
    assert not BAR.search(json_out)
    pipe, forced = _run_each([_cli(args + [str(tmp_path / "pipe")]),
                              _cli(args + [str(tmp_path / "forced"), "--progress"])], on_terminal=False)
    assert pipe == ""
    assert "rows/s" in forced  # forced either way


def test_nnopt_fit_draws_on_a_terminal_and_the_library_fit_other_commands_use_does_not():
    fit = "import nnopt; nnopt.fit('mlp:16', 'digits', epochs=2)"
    library = "from nnopt.train import fit; fit('mlp:16', 'digits', epochs=2)"
    drawn, library_out, off = _run_each([fit, library, fit.replace("epochs=2", "epochs=2, progress=False")],
                                        on_terminal=True)
    assert "rows/s" in drawn
    assert not BAR.search(library_out)
    assert not BAR.search(off)


def test_the_api_default_is_auto():
    assert nnopt.fit("mlp:8", "iris", epochs=1).config["progress"] == "auto"


def test_a_group_bar_shows_every_processs_rows(monkeypatch):
    # a Hogwild main process: its own shard is 500 of the epoch's 1,000 rows; rows_done counts every worker's
    monkeypatch.setattr("nnopt.train._progress.REFRESH_S", 0.0)
    bar, buffer = _terminal_bar()
    bar.on_train_start({"epochs": 1, "start_epoch": 0, "steps_per_epoch": 16, "rows": 500, "group_rows": 1000,
                        "rows_done": lambda step: 2 * 32 * step, "batch_size": 32})
    bar.on_epoch_start(1)
    task = bar._progress.tasks[0]
    assert task.total == 1000
    bar.on_step_end(1, 5, None)
    assert task.completed == 320  # the group's rows, not this process's 160
    bar.on_step_end(1, 16, None)
    assert task.completed == 1000  # capped at the epoch's rows
    bar.close()


def test_a_progress_bar_among_the_callbacks_replaces_the_loops_own(capfd):
    bar, buffer = _terminal_bar()
    fit_library("mlp:8", "iris", epochs=2, seed=0, callbacks=[bar], progress=True)  # True: the loop would draw too
    assert "epoch 2/2" in buffer.getvalue()
    assert capfd.readouterr().err == ""  # nothing on stderr: one bar, the given one

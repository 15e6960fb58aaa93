"""The progress bar with --nproc: drawn by one process with the whole group's rows — DDP's rank 0 on the
stderr of the process that started the ranks (theirs goes to a log), Hogwild's main process counting every
worker's rows; other processes draw nothing, and nothing is drawn where one process would draw nothing."""

from __future__ import annotations

import re
import sys

import pytest

import nnopt
from nnopt.distributed._launch import _bar_width
from nnopt.train import ProgressBar

HANG_LIMIT_S = 120  # the no_hang fixture in conftest.py
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_ddp_rank_0_draws_the_bar_on_the_parents_stderr_and_the_others_stay_quiet(capfd, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # "auto" as on a terminal
    result = nnopt.fit("mlp:16", "digits", epochs=2, seed=0, nproc=2, device="cpu")
    err = ANSI.sub("", capfd.readouterr().err)
    assert result.config["progress"] == "auto" and result.config["world_size"] == 2
    assert re.search(r"epoch 2/2 .*[\d,]+ rows/s", err)
    last = result.history[-1]
    # the line left after the bar, printed once: by rank 0 alone
    line = f"epoch 2/2  train_loss={last['train_loss']:.4g}  val_loss={last['val_loss']:.4g}"
    assert err.count(line) == 1


def test_the_launcher_draws_where_one_process_would(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert _bar_width("auto") is None and _bar_width(False) is None
    assert _bar_width(True) >= 20  # forced: rich's width of the parent's stderr
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert _bar_width("auto") is not None and _bar_width(False) is None


class Counting(ProgressBar):
    """The bar on a buffer, recording at each epoch's end the rows it counted and this process's own."""

    def __init__(self):
        import io

        from rich.console import Console

        super().__init__(console=Console(file=io.StringIO(), force_terminal=True, width=120))
        self.seen: list[tuple[int, int, int]] = []

    def on_train_start(self, info):
        super().on_train_start(info)
        self.own = info["rows"]

    def on_epoch_end(self, epoch, logs):
        self.seen.append((self._rows, self._rows_done(10**9), logs["rows"]))
        super().on_epoch_end(epoch, logs)


@pytest.mark.parametrize("nproc", [2, 3])
def test_hogwild_main_process_counts_every_workers_rows(nproc):
    bar = Counting()
    result = nnopt.fit("mlp:16", "digits", epochs=2, seed=0, nproc=nproc, strategy="hogwild", callbacks=[bar])
    n = len(result.data.train)
    assert bar.own == len(range(0, n, nproc))  # worker 0 trains its shard only
    # at each epoch's end (every worker has reported): the bar's total and count are the whole training split,
    # which is what the epoch's row says the workers trained on
    assert bar.seen == [(n, n, n), (n, n, n)]

"""The wall-clock budget of an automl run: parsing '10m', and the share of it each stage may spend.

The split is adaptive: one probe epoch of a reference network measures how fast this machine trains on this data;
the screen gets a fixed share, the stages after the search get what the probe says they need, and the search gets
the rest. See docs/automl.md for the figures.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

from nnopt.compress import LADDER as COMPRESSION_LADDER
from nnopt.errors import UsageError, param

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smh])")

SCREEN_SHARE = 0.12  # of the whole budget: the optimizer / learning-rate screen
TRIALS_WANTED = 30  # the search's epochs per trial are set so that about this many trials fit
MIN_TRIALS = 4  # a budget in which fewer trials fit is too small to search
EPOCHS_RANGE = (3, 30)  # epochs per search trial
# ...but at least this many optimizer steps (at batch 64) where the range and the budget allow (MIN_TRIALS such
# trials fit): on a small table an epoch is a few steps, and 3 epochs of diabetes (5 steps each) left every trial
# untrained, while 30 epochs there cost a fraction of a second.
MIN_STEPS = 300
SIZE_FACTOR = 2.0  # searched networks train this much slower than the probe network, on average
FINDER_STEPS = 150  # find_lr's steps (train/_lr_find.py)
FINDER_STEP_COST = 1.3  # a finder step against a training step: its loss read each step, a forward on fixed rows
TRIAL_COSTS_S = 0.2  # measuring a candidate's size and batch-1 latency before it trains
# Measured after the search of a 60-s run on hpc (2 cores, load 1): ONNX export, int8 quantization and latency
# timing 3.0 s (the first torch.export of the process 2.2 of it), the reports of search, best, final, compressed
# and automl 2.5 s, the screen's 1.4 s. The reserves are twice that; the 10 and 15 s they were left a sixth of a
# 2-minute budget and a quarter of a 1-minute one unused.
EXPORT_S = 6.0  # ONNX export, int8 quantization and latency timing of two runtimes
REPORTS_S = 8.0  # the reports of every stage
# The first rung of the compression ladder trains (fine-tuning + QAT) at most this many times compress's default
# epochs (which rung comes first depends on the model); it is tried on search/best and, when kept, run again on
# final/ (about 1/0.85 the rows).
LADDER_EPOCHS = max(rung.finetune + rung.qat for rung in COMPRESSION_LADDER)
LADDER_RUNS = 1 + 1 / 0.85


def parse_budget(value: object) -> float:
    """'10m', '90s', '1h', '2m30s' or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise UsageError(f"{param('budget')} must be a duration like 10m, 90s or 1h; got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        elif re.fullmatch(r"(?:\d+(?:\.\d+)?[smh])+", text):
            seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
        else:
            raise UsageError(f"{param('budget')} must be a duration like 10m, 90s or 1h; got '{value}'")
    if not math.isfinite(seconds) or seconds <= 0:
        raise UsageError(f"{param('budget')} must be > 0; got '{value}'")
    return seconds


@dataclass
class Plan:
    """What the probe predicts: seconds per epoch of the probe network, and the search's epochs per trial."""

    epoch_s: float
    run_s: float  # the fixed cost of one training run: building, evaluating, writing
    finetune_epochs: int  # compress's fine-tuning epochs on this data
    min_epochs: int = EPOCHS_RANGE[0]  # epochs a trial gets when budget allows (min_trial_epochs); older plans lack it
    steps_per_epoch: int = 0  # the probe's training batches per epoch at batch 64; older plans lack it (0)
    # seconds per epoch of a network of the searched space, where it is not the probe's kind (a CNN space: the
    # probe MLP trains 30x faster on 32x32 images); 0: the probe's epoch_s times SIZE_FACTOR
    searched_epoch_s: float = 0.0

    @property
    def trial_epoch_s(self) -> float:
        """Seconds per epoch of a searched network."""
        return self.searched_epoch_s or self.epoch_s * SIZE_FACTOR

    def trial_s(self, epochs: int) -> float:
        return self.run_s + TRIAL_COSTS_S + epochs * self.trial_epoch_s

    def tail_s(self, epochs: int) -> float:
        """Seconds after the search: retrain the best (train, then train+val), the compression ladder and the
        final compression (fine-tuning epochs each), export and latency, reports."""
        retrain = self.trial_s(epochs) * (1.0 + 1.2)
        compress = LADDER_RUNS * (self.run_s + LADDER_EPOCHS * self.finetune_epochs * self.trial_epoch_s)
        return retrain + compress + EXPORT_S + REPORTS_S

    def finder_s(self) -> float:
        """One LR range test of the probe network: up to FINDER_STEPS steps, and as many again on fixed rows when
        the batches' losses are too noisy (small data). On a few hundred rows an epoch is a few steps, so the
        finder is dozens of epochs, not the three it was priced at (281 images of 32x32x3: 0.4 s a finder
        against 0.015 s an epoch)."""
        if not self.steps_per_epoch:
            return 3 * self.epoch_s
        return 2 * FINDER_STEPS * FINDER_STEP_COST * self.epoch_s / self.steps_per_epoch

    def screen_s(self, n_optimizers: int, epochs: int) -> float:
        # each optimizer: an LR range test and a run
        return n_optimizers * (2 * self.run_s + epochs * self.epoch_s + self.finder_s()) + REPORTS_S / 4

    def screen_optimizers(self, seconds: float, most: int) -> int:
        """How many optimizers (at least 2, at most `most`) the screen's `seconds` fit, each with its finder
        and a run of 2 epochs."""
        each = 2 * self.run_s + 2 * self.epoch_s * 1.5 + self.finder_s()
        return max(2, min(most, int(seconds / max(each, 1e-9))))

    def screen_epochs(self, seconds: float, n_optimizers: int) -> int:
        """Epochs per screen run, 2 to 15, in what the finders leave of `seconds`."""
        left = seconds / n_optimizers - 2 * self.run_s - self.finder_s()
        return max(2, min(15, int(left / (self.epoch_s * 1.5))))

    def epochs_per_trial(self, search_s: float) -> int:
        wanted = self._epochs_fitting(search_s / TRIALS_WANTED)
        # the floor of min_epochs holds as long as MIN_TRIALS such trials fit
        floor = max(EPOCHS_RANGE[0], min(self.min_epochs, self._epochs_fitting(search_s / MIN_TRIALS)))
        return int(min(EPOCHS_RANGE[1], max(floor, wanted)))

    def _epochs_fitting(self, trial_s: float) -> int:
        return math.floor((trial_s - self.run_s - TRIAL_COSTS_S) / self.trial_epoch_s)

    def minimum_s(self, n_optimizers: int) -> float:
        """The smallest budget in which every stage runs once with the fewest epochs."""
        low = EPOCHS_RANGE[0]
        return self.screen_s(n_optimizers, 2) + MIN_TRIALS * self.trial_s(low) + self.tail_s(low)


def min_trial_epochs(n_train: int) -> int:
    """The fewest epochs a search trial gets on `n_train` rows: MIN_STEPS steps at batch 64, within EPOCHS_RANGE."""
    steps_per_epoch = max(1, math.ceil(n_train / 64))
    return int(min(EPOCHS_RANGE[1], max(EPOCHS_RANGE[0], math.ceil(MIN_STEPS / steps_per_epoch))))


class Clock:
    """Seconds left of the budget; time spent in earlier runs of the same directory counts too."""

    def __init__(self, budget_s: float, spent_before_s: float = 0.0):
        self.budget_s, self.spent_before_s = budget_s, spent_before_s
        self.start = time.monotonic()

    def spent(self) -> float:
        return self.spent_before_s + time.monotonic() - self.start

    def left(self) -> float:
        return self.budget_s - self.spent()

"""Training loggers: the rows of metrics.jsonl, also sent to a CSV file, TensorBoard or a local MLflow store.

Each logger is a Callback that acts once per epoch, never inside the step loop, and uses the metric names of
metrics.jsonl unchanged. `create_loggers` builds them from their names (`LOGGERS`); the loop adds them on
rank 0 only, since rank 0 alone writes the run directory. Optional packages (tensorboard, mlflow) are
checked by TrainSpec.validate before any work and imported here only when their logger is asked for.

A resumed run gets the history restored from its checkpoint, so each logger can make its output agree with
the checkpoint: nothing the killed run logged after it, and every epoch before it, exactly once.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from nnopt.errors import UsageError, param
from nnopt.fileio import atomic_write_text
from nnopt.train._callbacks import Callback

MLFLOW_EXPERIMENT = "nnopt"
_PARAM_LIMIT = 500  # MLflow's oldest limit on a param value; longer values are cut, not refused


def create_loggers(names: list[str], run_dir: Path | None, config: dict[str, Any],
                   history: list[dict[str, Any]]) -> list[Callback]:
    """One logger per name, writing under run_dir. history: the rows already done (non-empty on resume).

    Without a run directory nothing is written, loggers included, like metrics.jsonl: a tune spec's `train:`
    settings reach every trial (no directory) and the retrained best (out/best), which alone logs."""
    if run_dir is None:
        return []
    return [LOGGERS[name](run_dir, config, history) for name in names]


def _scalars(row: dict[str, Any]) -> dict[str, float]:
    """The row's numeric metrics; null (a metric that could not be computed) is left out."""
    return {key: float(value) for key, value in row.items()
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value)}


class CsvLogger(Callback):
    """metrics.csv: one row per epoch, header `epoch` + the metric names of metrics.jsonl.

    Like metrics.jsonl, the file is rewritten atomically after every epoch from the rows of the run, so a
    reader never sees half a row and a resumed run continues at the checkpoint's epoch: no duplicate epoch,
    none missing, even where the killed run got further than its last checkpoint."""

    def __init__(self, run_dir: Path, config: dict[str, Any], history: list[dict[str, Any]]):
        self.path = run_dir / "metrics.csv"
        self.rows = [dict(row) for row in history]

    def on_train_start(self, info: dict[str, Any]) -> None:
        if self.rows:
            atomic_write_text(self.path, self._text())

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        self.rows.append(dict(logs))
        atomic_write_text(self.path, self._text())

    def _text(self) -> str:
        columns = list(dict.fromkeys(key for row in self.rows for key in row))
        out = io.StringIO()
        writer = csv.DictWriter(out, columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in self.rows)
        return out.getvalue()


class TensorBoardLogger(Callback):
    """Event files under RUN/tensorboard/: one scalar per metric per epoch (step = epoch), and the resolved
    settings as text. A resumed run opens its event file with a purge from epoch 1, which makes TensorBoard
    drop everything the earlier attempts logged, then logs the checkpoint's history again: each epoch once."""

    def __init__(self, run_dir: Path, config: dict[str, Any], history: list[dict[str, Any]]):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UsageError(f"{param('log', 'tensorboard')} needs the tensorboard package; pip install "
                             "tensorboard") from None
        self.history, self.config = list(history), config
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=1 if history else None)

    def on_train_start(self, info: dict[str, Any]) -> None:
        if not self.history:
            text = json.dumps(self.config, indent=2, default=str)
            self.writer.add_text("config", "    " + text.replace("\n", "\n    "), global_step=0)  # code block
        for row in self.history:
            self._write(row)
        self.writer.flush()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        self._write(logs)
        self.writer.flush()  # once per epoch: TensorBoard shows a live run, a kill loses nothing logged

    def _write(self, row: dict[str, Any]) -> None:
        for key, value in _scalars(row).items():
            self.writer.add_scalar(key, value, global_step=int(row["epoch"]))

    def on_train_end(self, result: Any) -> None:
        self.writer.close()


class MlflowLogger(Callback):
    """An MLflow run in the local file store RUN/mlruns (a file:// URI: no server, no network).

    Params are the resolved settings (config.json, nested keys joined with '.'); metrics are metrics.jsonl's
    with step = epoch. A resumed run continues the same MLflow run and logs only the epochs it lacks."""

    def __init__(self, run_dir: Path, config: dict[str, Any], history: list[dict[str, Any]]):
        # MLflow >= 3 refuses its file store unless opted in, and reports usage over the network unless
        # told not to; nnopt's store is a local directory and a run never touches the network.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        try:
            from mlflow.entities import Metric, Param
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise UsageError(f"{param('log', 'mlflow')} needs the mlflow package; pip install mlflow") from None
        self._metric, self._param = Metric, Param
        self.uri = (run_dir / "mlruns").resolve().as_uri()
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            self.run_id = self._open_run(run_dir, config, history)
        except Exception as exc:  # noqa: BLE001 - the store is unusable; say so in one line
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UsageError(f"{param('log', 'mlflow')} cannot use the store {self.uri} ({message}); "
                             f"delete it or choose another {param('out')}") from None

    def _open_run(self, run_dir: Path, config: dict[str, Any], history: list[dict[str, Any]]) -> str:
        experiment = self.client.get_experiment_by_name(MLFLOW_EXPERIMENT)
        experiment_id = (experiment.experiment_id if experiment is not None
                         else self.client.create_experiment(MLFLOW_EXPERIMENT))
        previous = self.client.search_runs([experiment_id], order_by=["attributes.start_time DESC"], max_results=1)
        if history and previous:  # resume: the same MLflow run, with the epochs it lacks
            run = previous[0]
            logged = {m.step for m in self.client.get_metric_history(run.info.run_id, "train_loss")}
            for row in history:
                if row["epoch"] not in logged:
                    self._log_row(run.info.run_id, row)
            self.client.update_run(run.info.run_id, status="RUNNING")
            known = run.data.params  # params cannot change in MLflow: add only the new ones
        else:
            run = self.client.create_run(experiment_id, run_name=run_dir.name)
            for row in history:
                self._log_row(run.info.run_id, row)
            known = {}
        params = [self._param(k, v) for k, v in _flatten(config).items() if k not in known]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(run.info.run_id, params=params[start:start + 100])
        return run.info.run_id

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        self._log_row(self.run_id, logs)

    def _log_row(self, run_id: str, row: dict[str, Any]) -> None:
        stamp = int(time.time() * 1000)
        metrics = [self._metric(key, value, stamp, int(row["epoch"])) for key, value in _scalars(row).items()]
        self.client.log_batch(run_id, metrics=metrics)

    def on_train_end(self, result: Any) -> None:
        self.client.set_terminated(self.run_id, "FINISHED")


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """config.json as MLflow params: nested mappings as dotted keys, other values as JSON text."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            flat[f"{prefix}{key}"] = text[:_PARAM_LIMIT]
    return flat


# name -> logger class; the names are TrainSpec's LOGGERS (config.py), which also says each one's package
LOGGERS: dict[str, type[Callback]] = {"csv": CsvLogger, "tensorboard": TensorBoardLogger, "mlflow": MlflowLogger}

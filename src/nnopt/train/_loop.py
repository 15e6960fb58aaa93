"""fit(): the training loop, top to bottom — the only one: one process, DDP, local SGD and Hogwild run it.

The hot loop does forward, backward, clip, step and schedule, and keeps each step's loss as a
tensor — no host sync per batch. Losses are checked for NaN/inf every CHECK_EVERY steps and at
the epoch end; metrics are read once per epoch on the host: the train ones from sums of the batches' outputs
kept on the device (train_metrics="running", _running.py), or by scoring the training split again ("exact");
scoring a whole split (outputs, loss, divergence, metrics; shared out over a group) is _evaluate.py's.

With a `parallel` strategy (train/_parallel.py; nnopt.distributed provides DDP, local SGD and Hogwild) each
process trains on its batches (DDP: its slice of every global batch; Hogwild: its shard of the rows), rank 0
writes the run directory, and every decision (early stopping, schedules, callbacks' stop) is taken on values
all ranks share.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnopt.config import TrainSpec, spec_from_mapping
from nnopt.data import Data, batch_count, feature_scaling_of
from nnopt.errors import DivergedError, UsageError, describe, param
from nnopt.fileio import atomic_write_json, atomic_write_jsonl, make_run_dir
from nnopt.models import count_params
from nnopt.optim import create_optimizer, create_schedule, set_optimizer_mode
from nnopt.train._augment import Augment
from nnopt.train._callbacks import Callback, step_callbacks
from nnopt.train._checkpoint import fingerprint, load_checkpoint, restore_rng, rng_state, save_checkpoint, \
    saved_scaling
from nnopt.train._evaluate import evaluate_splits, final_scores, on_main, weights_stamp
from nnopt.train._loggers import create_loggers
from nnopt.train._monitor import monitor_for, new_best, resumed_best, scoring, track_best
from nnopt.train._outputs import created_time, describe_source, write_outputs
from nnopt.train._parallel import Parallel
from nnopt.train._prepare import Prepared, data_shape, deterministic_kernels, prepare, thread_count, \
    with_recorded_scaling
from nnopt.train._running import RunningMetrics
from nnopt.train._progress import progress_bars
from nnopt.train._setup import update_function
from nnopt.train._threads import choose_threads

CHECK_EVERY = 256  # steps between NaN checks (one host sync each)


@dataclass
class FitResult:
    model: nn.Module  # on the CPU whatever device trained it (config["device"] says which)
    history: list[dict[str, Any]]
    metrics: dict[str, dict[str, float | None]]  # {"train": {...}, "val": {...}, "test": {...}}
    epochs: int
    wall_s: float
    run_dir: Path | None
    data: Data
    config: dict[str, Any] = field(default_factory=dict)
    stopped_early: bool = False
    rank: int = 0  # the process's rank in a distributed run; only rank 0 wrote run_dir

    def summary(self) -> dict[str, Any]:
        """The `--json` object: metrics, epochs, wall time and run directory."""
        return {"metrics": {k: self.metrics[k] for k in ("test", "val")}, "epochs": self.epochs,
                "wall_s": round(self.wall_s, 3), "run_dir": str(self.run_dir) if self.run_dir else None}


def fit(model: Any, data: Any, *, optimizer: str = "adam", lr: float | None = None, epochs: int | None = None,
        batch_size: int | str | None = None, schedule: str | None = None, loss: Any = None,
        metrics: Any = None, seed: int = 0, device: str = "auto", out: str | Path | None = None,
        callbacks: list[Callback] | None = None, resume: bool = False, **options: Any) -> FitResult:
    """Train `model` (spec string, ArchSpec or nn.Module) on `data` (name, path, (X, y), Data).

    metrics: built-in metric names (a list), or {name: fn(outputs, targets) -> float} scored on val and test each
    epoch besides the built-ins (logged as val_<name>). callbacks: nnopt.train.Callback instances.
    options: the other TrainSpec fields (target, task, optimizer_params, schedule_params, early_stopping,
    monitor, mode, clip_grad, val_fraction, test_fraction, scale, threads, log, train_metrics). early_stopping=N
    stops after N epochs without a better `monitor` (default val_loss); with either, the best epoch's weights are
    kept.
    lr None is the optimizer's default (its row of `nnopt optimizers`); batch_size None is 64, or the full training
    set for `gd`; epochs None is 10, or 100 for `gd` (one step per epoch).
    nproc > 1 starts processes: that is nnopt.fit (through nnopt.distributed), not this function.
    """
    spec, module = fit_spec(model, data, optimizer=optimizer, lr=lr, epochs=epochs, batch_size=batch_size,
                            schedule=schedule, seed=seed, device=device, out=out, **options)
    return run(spec, module=module, loss=loss, metrics=metrics, callbacks=callbacks, resume=resume)


def fit_spec(model: Any, data: Any, **options: Any) -> tuple[TrainSpec, nn.Module | None]:
    """The TrainSpec of a fit() call (options are TrainSpec fields), and the user's nn.Module if `model` is one."""
    module = model if isinstance(model, nn.Module) else None
    out = options.pop("out", None)
    values = dict(data=data, model=None if module is not None else model,
                  out=str(out) if isinstance(out, (str, os.PathLike)) else out, **options)
    return spec_from_mapping(TrainSpec, values, source="fit()", coerce=False), module


def run(spec: TrainSpec, *, module: nn.Module | None = None, loss: Any = None, metrics: Any = None,
        callbacks: list[Callback] | None = None, resume: bool = False, parallel: Parallel | None = None) -> FitResult:
    """Train as `spec` says. `parallel`: this process's place in a data-parallel group (None: one process)."""
    spec.validate()
    if parallel is None and (spec.nproc > 1 or spec.strategy == "hogwild"):
        raise UsageError(f"nproc={spec.nproc} strategy={spec.strategy} needs nnopt.fit or `nnopt train`, which "
                         "start the processes; nnopt.train runs one")
    return train_loop(spec, prepare(spec, module=module, loss=loss), metrics=metrics, callbacks=callbacks,
                      resume=resume, parallel=parallel)


def train_loop(spec: TrainSpec, p: Prepared, *, metrics: Any = None, callbacks: list[Callback] | None = None,
               resume: bool = False, parallel: Parallel | None = None) -> FitResult:
    """The one epoch loop: one process, DDP, local SGD and Hogwild differ only in `parallel`. `p` is prepare()'s
    (Hogwild's workers are handed their main process's, whose network lives in shared memory)."""
    if callbacks is not None and (not isinstance(callbacks, (list, tuple))
                                  or not all(isinstance(cb, Callback) for cb in callbacks)):
        raise UsageError(f"{param('callbacks')} must be a list of nnopt.train.Callback; got {describe(callbacks)}")
    data, net, arch, dev, batch, threads, loss_fn, sources = (
        p.data, p.net, p.arch, p.device, p.batch, p.threads, p.loss_fn, p.sources)
    main = parallel is None or parallel.is_main
    augment = Augment(spec.augment, data_shape(data), spec.seed) if spec.augment else None
    rows = len(data.train)
    if parallel is not None:
        rows, batch = parallel.epoch_share(rows, batch)  # Hogwild: this worker's shard, the batch capped at it
        if not spec.threads and dev.type == "cpu":  # this process's share of the cores, and its share of the batch
            threads = min(choose_threads(p.flops or 0, -(-batch // parallel.world)), parallel.max_threads)
    scores = scoring(data.task, metrics)
    monitor = monitor_for(spec.monitor, spec.mode, scores, has_val=len(sources["val"]) > 0)
    watch = bool(spec.early_stopping) or spec.monitor is not None  # keep the best epoch's weights
    with thread_count(threads), deterministic_kernels(dev):
        opt = create_optimizer(spec.optimizer, net, lr=spec.lr, **spec.optimizer_params)
        lr_used = opt.param_groups[0]["lr"]
        steps = sources["train"].steps(batch) if hasattr(sources["train"], "steps") else batch_count(rows, batch)
        sched = create_schedule(spec.schedule or "constant", opt, epochs=spec.epochs, steps_per_epoch=steps,
                                **spec.schedule_params)
        config = {"command": "train", **spec.to_dict(), "data": describe_source(spec.data),
                  "val_data": describe_source(spec.val_data),
                  "model": arch.to_string() if arch else type(net).__name__,
                  "model_spec": arch.to_string() if arch else None, "lr": lr_used, "batch_size": batch,
                  "threads": threads, "device": str(dev), "data_info": data.describe(), "n_params": count_params(net),
                  "flops_per_sample": p.flops, "world_size": parallel.world if parallel else 1,
                  **(parallel.settings if parallel else {}), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        run_dir = Path(spec.out) if spec.out else None
        generator = torch.Generator(device="cpu").manual_seed(spec.seed)
        history: list[dict[str, Any]] = []
        start_epoch, elapsed_before, best = 0, 0.0, new_best(monitor)
        resumable = parallel is None or parallel.resumable
        ckpt_path = run_dir / "checkpoint.pt" if run_dir and resumable else None
        if resume:
            if run_dir is None:
                raise UsageError(f"{param('resume', True)} needs {param('out', metavar='DIR')}, the run directory to "
                                 "continue")
            state = on_main(parallel, load_checkpoint, ckpt_path, fingerprint(config), spec.epochs)  # rank 0's disk
            # the scaling the run was trained with, even where load_data's rule for these data changed since
            recorded = state["scaling"] if "scaling" in state else on_main(parallel, saved_scaling, run_dir)
            p = with_recorded_scaling(spec, p, recorded, f"checkpoint {ckpt_path}")
            data, sources = p.data, p.sources
            config["data_info"] = data.describe()
            net.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["schedule"])
            restore_rng(generator, state["rng"])
            history, start_epoch, elapsed_before = state["history"], state["epoch"], state["wall_s"]
            best = resumed_best(state["best"], monitor)
            config["created"] = created_time(run_dir, config["created"])
        if run_dir is not None and main:
            make_run_dir(run_dir)
            atomic_write_json(run_dir / "config.json", config)
        callbacks = list(callbacks or [])
        callbacks += (create_loggers(spec.log, run_dir, config, history) + progress_bars(spec.progress, callbacks)
                      if main else [])
        # rows: this process's per epoch; group_rows: every process's; rows_done(step): the group's so far (Hogwild)
        info = {"epochs": spec.epochs, "start_epoch": start_epoch, "steps_per_epoch": steps, "rows": rows,
                "group_rows": len(data.train), "rows_done": parallel.rows_done if parallel else None,
                "batch_size": batch, "lr": lr_used, "n_params": config["n_params"], "device": str(dev),
                "threads": threads, "world_size": config["world_size"]}
        for cb in callbacks:
            cb.on_train_start(info)
        step_hooks = step_callbacks(callbacks)  # empty unless a callback overrides on_step_end: no call per step
        params = [p for p in net.parameters() if p.requires_grad]
        local_sgd = spec.sync_every if spec.strategy == "local-sgd" else None  # validate() filled in the default
        model = net if parallel is None else parallel.wrap(net, local_sgd)  # net stays the plain module
        train = sources["train"]
        # train_metrics="running": an epoch's train metrics come from the batches it trains on (no second pass);
        # the run's final ones are scored exactly, except on a streamed split, which is not read again
        running = RunningMetrics(data.task, data.n_outputs, data.n_classes, scores.names["train"], data.target_scale,
                                 dev) if spec.train_metrics == "running" else None
        scored = ("val",) if running else ("train", "val")
        kept_running = running is not None and getattr(train, "streamed", False)

        def evaluate(splits: tuple[str, ...], at: tuple[int, int]) -> dict[str, dict[str, float | None]]:
            return evaluate_splits(net, loss_fn, data, sources, scores, splits, at, parallel)

        stopped_early, last = False, None
        update = update_function(opt, sched, params, spec.clip_grad)  # after on_train_start: it may add step hooks
        epoch_start = time.perf_counter()
        for epoch in range(start_epoch + 1, spec.epochs + 1):
            net.train()
            set_optimizer_mode(opt, True)
            for cb in callbacks:
                cb.on_epoch_start(epoch)
            step_losses: list[torch.Tensor] = []
            if running:
                running.reset()
            epoch_lr = float(opt.param_groups[0]["lr"])  # the lr of the epoch's first step
            began = time.perf_counter()
            batches = train.batches(batch, generator) if parallel is None else parallel.batches(train, batch, generator)
            if augment is not None:
                augment.begin(epoch)
            for xb, yb in batches:
                if parallel is None:
                    if augment is not None:
                        xb = augment(xb)
                    outputs = model(xb)
                    loss_value = loss_fn(outputs, yb)
                    update(loss_value)
                    if running:
                        running.add(outputs.detach(), yb)
                else:  # DDP: this rank's slice of the global batch, weighted; Hogwild: the worker's whole batch
                    xb, yb, weight = parallel.shard(xb, yb, len(xb))
                    if augment is not None:  # the global batch's draws, this rank's rows of them
                        xb = augment(xb, parallel.span)
                    outputs = model(xb)
                    loss_value = loss_fn(outputs, yb) * weight
                    update(loss_value)
                    parallel.after_step()
                    if running and weight:  # weight 0: a stand-in row another rank trains on
                        running.add(outputs.detach(), yb)
                step_losses.append(loss_value.detach())
                if len(step_losses) % CHECK_EVERY == 0:
                    _check_finite(step_losses, epoch, len(step_losses) - CHECK_EVERY, parallel)
                if step_hooks:
                    for cb in step_hooks:
                        cb.on_step_end(epoch, len(step_losses), step_losses[-1])
            losses = _check_finite(step_losses, epoch, 0, parallel)
            # Hogwild: the train loss over every worker's steps, and rows / steps / train_s
            group = parallel.epoch_summary(losses, time.perf_counter() - began) if parallel is not None else {}
            net.eval()
            set_optimizer_mode(opt, False)
            train_loss = group.pop("train_loss") if "train_loss" in group else float(losses.mean())
            row: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss}
            row.update({f"train_{key}": value for key, value in (running.values(parallel) if running else {}).items()})
            epoch_scores = evaluate(scored, (epoch, len(step_losses)))
            last = (weights_stamp(net), epoch_scores)  # the run's end reuses them while the weights stay these
            for split, values in epoch_scores.items():
                row.update({f"{split}_{key}": value for key, value in values.items()
                            if not (split == "train" and key == "loss")})
            row["lr"] = epoch_lr
            sched.step_epoch(row.get("val_loss"))
            row["time_s"] = round(elapsed_before + time.perf_counter() - epoch_start, 4)
            row.update(group)
            history.append(row)
            stop = track_best(monitor, spec.early_stopping, best, row, net) if watch else False
            if run_dir is not None and main:
                if ckpt_path is not None:
                    save_checkpoint(ckpt_path, {
                        "epoch": epoch, "model": net.state_dict(), "optimizer": opt.state_dict(),
                        "schedule": sched.state_dict(), "rng": rng_state(generator), "history": history,
                        "best": best, "wall_s": row["time_s"], "fingerprint": fingerprint(config),
                        "scaling": feature_scaling_of(data.preprocessing)})
                atomic_write_jsonl(run_dir / "metrics.jsonl", history)
            for cb in callbacks:
                stop = bool(cb.on_epoch_end(epoch, row)) or stop
            if parallel is not None:  # a callback on one rank stops them all
                stop = bool(parallel.all_mean(torch.tensor([float(stop)], device=dev)) > 0)
            if stop:
                stopped_early = epoch < spec.epochs
                break
        if watch and best["state"] is not None:
            net.load_state_dict(best["state"])  # restore the weights of the best epoch
        net.eval()
        set_optimizer_mode(opt, False)
        final = final_scores(evaluate, ("val", "test") if kept_running else ("train", "val", "test"),
                             (history[-1]["epoch"] if history else start_epoch, 0), net, last, parallel)
        if kept_running:  # the kept epoch's row: the best one when its weights were restored, else the last
            kept = next((r for r in history if r["epoch"] == best["epoch"]), None) if watch and best["state"] \
                is not None else (history[-1] if history else None)
            final = {"train": {k[6:]: v for k, v in (kept or {}).items() if k.startswith("train_")}, **final}
        wall = elapsed_before + time.perf_counter() - epoch_start
        net.to("cpu")  # the trained model comes back on the CPU, where saving, compressing and exporting work
        result = FitResult(model=net, history=history, metrics=final, epochs=len(history), wall_s=wall,
                           run_dir=run_dir if main else None, data=data, config=config, stopped_early=stopped_early,
                           rank=parallel.rank if parallel else 0)
        if run_dir is not None and main:
            write_outputs(run_dir, result, arch, data)
        for cb in callbacks:
            cb.on_train_end(result)
        return result


def _check_finite(step_losses: list[torch.Tensor], epoch: int, offset: int,
                  parallel: Parallel | None = None) -> torch.Tensor:
    """Stack the epoch's step losses; raise DivergedError at the first non-finite one after `offset`.

    In DDP each rank kept its weighted share of every step's loss; their mean over ranks is the global batch's
    loss, the same on every rank, so every rank raises at the same step. A Hogwild worker checks its own steps."""
    losses = torch.stack(step_losses) if step_losses else torch.zeros(1)
    if parallel is not None:
        losses = parallel.group_losses(losses)
    window = losses[offset:]
    if not bool(torch.isfinite(window).all()):
        bad = int((~torch.isfinite(window)).nonzero()[0, 0]) + offset
        raise DivergedError(epoch, bad + 1, float(losses[bad]))
    return losses


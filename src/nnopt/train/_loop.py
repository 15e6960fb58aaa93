"""fit(): the training loop, top to bottom.

The hot loop does forward, backward, clip, step and schedule, and keeps each step's loss as a
tensor — no host sync per batch. Losses are checked for NaN/inf every CHECK_EVERY steps and at
the epoch end; metrics are computed once per epoch on the host.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnopt.config import TrainSpec, spec_from_mapping
from nnopt.data import Data
from nnopt.errors import DivergedError, UsageError
from nnopt.fileio import atomic_write_json, atomic_write_jsonl, make_run_dir
from nnopt.models import ArchSpec, count_params, save_model
from nnopt.optim import create_optimizer, create_schedule, set_optimizer_mode
from nnopt.train._callbacks import Callback
from nnopt.train._checkpoint import fingerprint, load_checkpoint, restore_rng, rng_state, save_checkpoint
from nnopt.train._metrics import check_metric_names, compute_metrics
from nnopt.train._prepare import prepare, thread_count
from nnopt.train._setup import clear_grads, step_function

CHECK_EVERY = 256  # steps between NaN checks (one host sync each)


@dataclass
class FitResult:
    model: nn.Module
    history: list[dict[str, Any]]
    metrics: dict[str, dict[str, float | None]]  # {"train": {...}, "val": {...}, "test": {...}}
    epochs: int
    wall_s: float
    run_dir: Path | None
    data: Data
    config: dict[str, Any] = field(default_factory=dict)
    stopped_early: bool = False

    def summary(self) -> dict[str, Any]:
        """The `--json` object: metrics, epochs, wall time and run directory."""
        return {"metrics": {k: self.metrics[k] for k in ("test", "val")}, "epochs": self.epochs,
                "wall_s": round(self.wall_s, 3), "run_dir": str(self.run_dir) if self.run_dir else None}


def fit(model: Any, data: Any, *, optimizer: str = "adam", lr: float | None = None, epochs: int = 10,
        batch_size: int | str | None = None, schedule: str | None = None, loss: Any = None,
        metrics: list[str] | None = None, seed: int = 0, device: str = "auto", out: str | Path | None = None,
        callbacks: list[Callback] | None = None, resume: bool = False, **options: Any) -> FitResult:
    """Train `model` (spec string, ArchSpec or nn.Module) on `data` (name, path, (X, y), Data).

    options: the other TrainSpec fields (target, task, optimizer_params, schedule_params,
    early_stopping, clip_grad, val_fraction, test_fraction, scale, threads).
    batch_size None is the optimizer's default: 64, or the full training set for `gd`.
    """
    module = model if isinstance(model, nn.Module) else None
    values = dict(data=data, model=None if module is not None else model, optimizer=optimizer, lr=lr,
                  epochs=epochs, batch_size=batch_size, schedule=schedule, seed=seed, device=device,
                  out=str(out) if out is not None else None, **options)
    spec = spec_from_mapping(TrainSpec, values, source="fit()")
    return run(spec, module=module, loss=loss, metrics=metrics, callbacks=callbacks, resume=resume)


def run(spec: TrainSpec, *, module: nn.Module | None = None, loss: Any = None, metrics: list[str] | None = None,
        callbacks: list[Callback] | None = None, resume: bool = False) -> FitResult:
    spec.validate()
    p = prepare(spec, module=module, loss=loss)
    data, net, arch, dev, batch, threads, loss_fn, sources = (
        p.data, p.net, p.arch, p.device, p.batch, p.threads, p.loss_fn, p.sources)
    metric_list = check_metric_names(data.task, metrics)
    # ROC-AUC ranks every row per class: worth it on held-out splits, skipped on the (large) train split
    split_metrics = {"train": [m for m in metric_list if m != "roc_auc"], "val": metric_list, "test": metric_list}
    with thread_count(threads):
        opt = create_optimizer(spec.optimizer, net, lr=spec.lr, **spec.optimizer_params)
        lr_used = opt.param_groups[0]["lr"]
        steps = -(-len(data.train) // batch)
        sched = create_schedule(spec.schedule or "constant", opt, epochs=spec.epochs, steps_per_epoch=steps,
                                **spec.schedule_params)
        config = {"command": "train", **spec.to_dict(), "data": _describe_source(spec.data),
                  "model": arch.to_string() if arch else type(net).__name__, "lr": lr_used, "batch_size": batch,
                  "threads": threads, "device": str(dev), "data_info": data.describe(), "n_params": count_params(net),
                  "flops_per_sample": p.flops, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        run_dir = Path(spec.out) if spec.out else None
        generator = torch.Generator(device="cpu").manual_seed(spec.seed)
        history: list[dict[str, Any]] = []
        start_epoch, elapsed_before, best = 0, 0.0, {"loss": float("inf"), "epoch": 0, "bad": 0, "state": None}
        ckpt_path = run_dir / "checkpoint.pt" if run_dir else None
        if resume:
            if ckpt_path is None:
                raise UsageError("--resume needs --out DIR, the run directory to continue")
            state = load_checkpoint(ckpt_path, fingerprint(config))
            net.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["schedule"])
            restore_rng(generator, state["rng"])
            history, start_epoch, elapsed_before = state["history"], state["epoch"], state["wall_s"]
            best = state["best"]
            config["created"] = _created(run_dir, config["created"])
        if run_dir is not None:
            make_run_dir(run_dir)
            atomic_write_json(run_dir / "config.json", config)
        callbacks = list(callbacks or [])
        info = {"epochs": spec.epochs, "start_epoch": start_epoch, "steps_per_epoch": steps, "batch_size": batch,
                "lr": lr_used, "n_params": config["n_params"], "device": str(dev), "threads": threads}
        for cb in callbacks:
            cb.on_fit_start(info)
        params = [p for p in net.parameters() if p.requires_grad]
        stopped_early = False
        step = step_function(opt)
        epoch_start = time.perf_counter()
        for epoch in range(start_epoch + 1, spec.epochs + 1):
            net.train()
            set_optimizer_mode(opt, True)
            step_losses: list[torch.Tensor] = []
            epoch_lr = float(opt.param_groups[0]["lr"])  # the lr of the epoch's first step
            for xb, yb in sources["train"].batches(batch, generator):
                loss_value = loss_fn(net(xb), yb)
                clear_grads(params)
                loss_value.backward()
                if spec.clip_grad:
                    nn.utils.clip_grad_norm_(params, spec.clip_grad, foreach=True)
                step()
                sched.step_batch()
                step_losses.append(loss_value.detach())
                if len(step_losses) % CHECK_EVERY == 0:
                    _check_finite(step_losses, epoch, len(step_losses) - CHECK_EVERY)
            losses = _check_finite(step_losses, epoch, 0)
            net.eval()
            set_optimizer_mode(opt, False)
            row: dict[str, Any] = {"epoch": epoch, "train_loss": float(losses.mean())}
            for split in ("train", "val"):
                for key, value in _evaluate(net, loss_fn, data, sources[split], split_metrics[split]).items():
                    if not (split == "train" and key == "loss"):
                        row[f"{split}_{key}"] = value
            row["lr"] = epoch_lr
            sched.step_epoch(row.get("val_loss"))
            row["time_s"] = round(elapsed_before + time.perf_counter() - epoch_start, 4)
            history.append(row)
            stop = _early_stop(spec.early_stopping, best, row, net)
            if run_dir is not None:
                save_checkpoint(ckpt_path, {
                    "epoch": epoch, "model": net.state_dict(), "optimizer": opt.state_dict(),
                    "schedule": sched.state_dict(), "rng": rng_state(generator), "history": history,
                    "best": best, "wall_s": row["time_s"], "fingerprint": fingerprint(config)})
                atomic_write_jsonl(run_dir / "metrics.jsonl", history)
            for cb in callbacks:
                stop = bool(cb.on_epoch_end(epoch, row)) or stop
            if stop:
                stopped_early = epoch < spec.epochs
                break
        if spec.early_stopping and best["state"] is not None:
            net.load_state_dict(best["state"])  # restore the best validation weights
        net.eval()
        set_optimizer_mode(opt, False)
        final = {split: _evaluate(net, loss_fn, data, sources[split], split_metrics[split])
                 for split in ("train", "val", "test")}
        wall = elapsed_before + time.perf_counter() - epoch_start
        result = FitResult(model=net, history=history, metrics=final, epochs=len(history), wall_s=wall,
                           run_dir=run_dir, data=data, config=config, stopped_early=stopped_early)
        if run_dir is not None:
            _write_outputs(run_dir, result, arch, data)
        for cb in callbacks:
            cb.on_fit_end(result)
        return result


def _check_finite(step_losses: list[torch.Tensor], epoch: int, offset: int) -> torch.Tensor:
    """Stack the epoch's step losses; raise DivergedError at the first non-finite one after `offset`."""
    losses = torch.stack(step_losses) if step_losses else torch.zeros(1)
    window = losses[offset:]
    if not bool(torch.isfinite(window).all()):
        bad = int((~torch.isfinite(window)).nonzero()[0, 0]) + offset
        raise DivergedError(epoch, bad + 1, float(losses[bad]))
    return losses


@torch.inference_mode()
def _evaluate(net: nn.Module, loss_fn: Any, data: Data, source: Any, names: Any) -> dict[str, float | None]:
    if len(source) == 0:
        return {}
    outputs, Y = source.outputs(net)
    loss = float(loss_fn(outputs, Y))
    return compute_metrics(data.task, outputs, Y, loss, names, data.target_scale)


def _early_stop(patience: int | None, best: dict[str, Any], row: dict[str, Any], net: nn.Module) -> bool:
    """Track the best val_loss; True once it has not improved for `patience` epochs."""
    if not patience:
        return False
    val_loss = row.get("val_loss", row["train_loss"])
    if val_loss is not None and val_loss < best["loss"]:
        best.update(loss=val_loss, epoch=row["epoch"], bad=0,
                    state={k: v.detach().clone() for k, v in net.state_dict().items()})
        return False
    best["bad"] += 1
    return best["bad"] >= patience


def _write_outputs(run_dir: Path, result: FitResult, arch: ArchSpec | None, data: Data) -> None:
    save_model(run_dir / "model.pt", result.model, {
        "model_spec": arch.to_string() if arch else None, "in_features": data.n_features,
        "n_outputs": data.n_outputs, "input_shape": list(data.input_shape) if data.input_shape else None,
        "task": data.task, "class_names": data.class_names, "preprocessing": data.preprocessing})
    atomic_write_json(run_dir / "summary.json", {**result.summary(), "metrics": result.metrics,
                                                 "stopped_early": result.stopped_early})


def _created(run_dir: Path, default: str) -> str:
    """A resumed run keeps the creation time of the run it continues."""
    try:
        return json.loads((run_dir / "config.json").read_text())["created"]
    except (OSError, ValueError, KeyError):
        return default


def _describe_source(source: Any) -> Any:
    return source if isinstance(source, (str, int, float)) or source is None else f"<{type(source).__name__}>"

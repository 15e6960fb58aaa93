"""The one adapter between search and training: a trial's params -> nnopt.train.fit -> objective values.

Validation metrics are reported every epoch so pruners can stop bad trials early; a trial that
diverges or raises a usage error is failed with its reason and the study goes on.
"""

from __future__ import annotations

from typing import Any

import optuna

from nnopt.config import TABLE_KEYS, table_settings
from nnopt.config import DEFAULT_EPOCHS
from nnopt.data import load_data
from nnopt.errors import UsageError
from nnopt.models import model_costs
from nnopt.search._spec import CONSTRAINTS
from nnopt.train import Callback, build_for, fit, model_input_shape

COST_METRICS = ("params", "flops", "size_kb", "latency_ms")


def measure(model: Any, data: Any, latency: bool) -> dict[str, Any]:
    """The costs of a model spec on this data, before any training: params, flops, size_kb, latency_ms
    (flops and latency_ms None for a module torch cannot count or time on a sample of the data's shape)."""
    return model_costs(build_for(model, data), model_input_shape(data, model), latency=latency)


class PruningCallback(Callback):
    """Reports `metric` after every epoch; raises TrialPruned when the pruner says so."""

    def __init__(self, trial: optuna.Trial, metric: str):
        self.trial, self.metric = trial, metric
        self.epochs = 0

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        self.epochs = epoch
        value = logs.get(self.metric)
        if value is None:
            return
        self.trial.report(float(value), epoch)
        if self.trial.should_prune():
            self.trial.set_user_attr("epochs_run", epoch)
            raise optuna.TrialPruned(f"pruned after epoch {epoch} ({self.metric}={value:.4g})")


def objective_value(result: Any, metric: str, costs: dict[str, Any] | None = None) -> float:
    """val_accuracy -> metrics["val"]["accuracy"]; params / flops / size_kb / latency_ms -> the model's costs."""
    if costs and costs.get(metric) is not None:
        return float(costs[metric])
    if metric == "params":
        return float(result.config["n_params"])
    if metric == "flops" and result.config.get("flops_per_sample") is not None:
        return float(result.config["flops_per_sample"])
    if metric in COST_METRICS:
        raise ValueError(f"metric {metric} was not measured for this trial" + (
            ": torch's FLOP counter cannot count this model" if metric == "flops" else ""))
    split, _, name = metric.partition("_")
    value = result.metrics[split].get(name)
    if value is None:
        raise ValueError(f"metric {metric} is undefined for this trial")
    return float(value)


DATA_KEYS = ("data", "target", "task", "val_fraction", "test_fraction", "scale", "n_classes", "val_data", *TABLE_KEYS)


def load_spec_data(spec: Any) -> Any:
    """The data of a tune spec, loaded and split once (seeded like the trials, so best.yaml sees the same split)."""
    return load_data(spec.data, target=spec.target, task=spec.task, seed=spec.seed or 0,
                     **{k: spec.train[k] for k in ("val_fraction", "test_fraction", "scale", "n_classes", "val_data")
                        if k in spec.train},
                     **table_settings(vars(spec)))


def fit_arguments(spec: Any, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(model, fit keyword settings) of one configuration, for data that are already loaded and split."""
    settings = spec.trial_train_spec(params)
    for key in DATA_KEYS:
        settings.pop(key, None)
    return settings.pop("model"), settings


class TrainObjective:
    """Callable for study.ask/tell loops: trains one configuration, returns its objective values."""

    def __init__(self, spec: Any, objectives: list[Any], data: Any, seed: int):
        self.spec, self.objectives, self.data, self.seed = spec, objectives, data, seed
        if not any(o.metric.startswith("test_") for o in objectives):  # no trial reads the test split: skip it
            self.data = data.without_test()
        wanted = {o.metric for o in objectives} | {CONSTRAINTS[key] for key in spec.constraints}
        # an architecture search measures every cost (its report plots them); a tune only what it needs
        self.costs = spec.architecture is not None or bool(spec.constraints) or bool(
            wanted & {"size_kb", "latency_ms"})
        self.latency = spec.architecture is not None or "latency_ms" in wanted

    def __call__(self, trial: optuna.Trial) -> list[float]:
        model, settings = fit_arguments(self.spec, self.spec.space.suggest(trial))
        trial.set_user_attr("model", str(model))
        costs = None
        if self.costs:
            costs = measure(model, self.data, self.latency)
            for key, value in costs.items():
                if value is not None:
                    trial.set_user_attr(key, value)
            unmeasured = [key for key in self.spec.constraints if costs.get(CONSTRAINTS[key]) is None]
            if unmeasured:
                raise UsageError(f"{unmeasured[0]} cannot be checked: the {CONSTRAINTS[unmeasured[0]]} of model "
                                 f"{model} cannot be measured (torch cannot run it on one sample of the data's "
                                 "shape); remove the constraint or use max_params / max_size_kb")
            broken = self.spec.violations(costs)
            if broken:  # not trained at all: the constraint is a property of the architecture
                trial.set_user_attr("infeasible", "; ".join(broken))
                trial.set_user_attr("epochs_run", 0)
                raise optuna.TrialPruned(f"infeasible: {'; '.join(broken)}")
        callbacks = []
        if len(self.objectives) == 1 and self.objectives[0].metric.startswith(("val_", "train_")):
            callbacks.append(PruningCallback(trial, self.objectives[0].metric))
        settings.setdefault("threads", 1)
        # every trial trains the epochs the pruner was built for, gd's included (fit would give gd 100)
        settings.setdefault("epochs", DEFAULT_EPOCHS)
        result = fit(model, self.data, seed=self.seed, callbacks=callbacks, **settings)
        trial.set_user_attr("epochs_run", result.epochs)
        trial.set_user_attr("n_params", result.config["n_params"])
        return [objective_value(result, o.metric, costs) for o in self.objectives]



class FunctionObjective:
    """A user's black-box function of the params dict (any objective, not only training)."""

    def __init__(self, function: Any, space: Any):
        self.function, self.space = function, space

    def __call__(self, trial: optuna.Trial) -> list[float]:
        value = self.function(self.space.suggest(trial))
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        return [float(v) for v in values]

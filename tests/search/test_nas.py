"""Architecture search: spaces, constraints, outputs, resume, and the `nnopt search` command."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys

import pytest
import yaml

from nnopt.errors import ConfigError, UsageError
from nnopt.models import ArchSpec, build_model, count_params
from nnopt.search import ArchSpace, Space, evolve
from nnopt.search.nas import PRESETS, search


def _random_values(space: ArchSpace, rng: random.Random) -> dict:
    values = {}
    for param in Space(tuple(space.params())).params:
        if not param.holds(values):
            continue
        values[param.name] = (rng.choice(param.choices) if param.kind == "categorical"
                              else rng.randint(param.low, param.high))
    return values


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_architectures_round_trip_and_build(name):
    space = ArchSpace.parse(name)
    rng = random.Random(0)
    shape = (1, 8, 8)
    for _ in range(40):
        arch = space.arch(_random_values(space, rng))
        assert ArchSpec.parse(arch.to_string()) == arch  # nnopt train --model reproduces it
        model = build_model(arch.to_string(), in_features=64, n_outputs=10, input_shape=shape)
        assert count_params(model) > 0


def test_mlp_space_widths_are_conditional_on_depth():
    space = ArchSpace.parse({"preset": "mlp", "depth": [2, 4], "width": [8, 16]})
    params = {p.name: p for p in space.params()}
    assert "width_1" in params and params["width_1"].when is None and params["width_2"].when is None
    assert params["width_3"].when == {"depth": (3, 4)} and params["width_4"].when == {"depth": (4,)}
    arch = space.arch({"depth": 3, "width_1": 8, "width_2": 16, "width_3": 16, "width_4": 8, "act": "relu",
                       "dropout": 0.0, "batchnorm": False, "residual": True})
    assert arch.hidden == (8, 16, 16) and arch.residual  # width_4 ignored: depth is 3


def test_equal_networks_get_equal_strings():
    space = ArchSpace.parse("mlp")
    no_pair = space.arch({"depth": 2, "width_1": 16, "width_2": 32, "residual": True})
    assert not no_pair.residual and no_pair.to_string() == "mlp:16,32"
    cnn = ArchSpace.parse("cnn").arch({"blocks": 1, "channels_1": 8, "head": 0, "dropout": 0.2})
    assert cnn.dropout == 0.0  # no dense head: nothing for dropout to act on


def test_space_from_yaml_file(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump({"kind": "mlp", "depth": [1, 2], "width": [8, 32], "act": ["relu", "tanh"],
                                    "dropout": 0.0, "batchnorm": False, "residual": False}))
    space = ArchSpace.parse(str(path))
    assert space.names() == ["depth", "width_1", "width_2", "act"] and space.size() == (2 + 4) * 2


@pytest.mark.parametrize("raw, message", [
    ({"preset": "mlp", "depth": [3, 2]}, "1 <= low <= high"),
    ({"preset": "mlp", "width": []}, "lists no choices"),
    ({"preset": "mlp", "act": ["relu", "swish"]}, "unknown activation 'swish'"),
    ({"preset": "mlp", "kernel": [3]}, "unknown key 'kernel'"),
    ({"preset": "cnn", "pool": ["max", "median"]}, "unknown pool 'median'"),
    ({"preset": "resnet"}, "unknown architecture preset 'resnet'"),
    ({"depth": [1, 2]}, "needs kind: mlp or cnn"),
    ({"preset": "mlp", "width": [0, 8]}, "integers >= 1"),
    ({"preset": "mlp", "depth": [1, 40]}, "search at most"),
])
def test_bad_spaces_are_one_line_errors(raw, message):
    with pytest.raises(ConfigError, match=message):
        ArchSpace.parse(raw)


def test_unknown_preset_name_suggests():
    with pytest.raises(ConfigError, match="did you mean 'mlp'"):
        ArchSpace.parse("mpl")


@pytest.fixture(scope="module")
def constrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("nas") / "run"
    result = search("digits", space={"preset": "mlp", "depth": [1, 3], "width": [16, 64, 256]}, trials=10,
                    epochs=2, seed=0, out=out, max_params=12000, strategy="random")
    return result, out


def test_constraints_hold_on_every_reported_architecture(constrained):
    result, out = constrained
    trained = [t for t in result.trials if t["state"] == "COMPLETE"]
    rejected = [t for t in result.trials if "infeasible" in t["user_attrs"]]
    assert len(trained) == 10  # rejected candidates do not use up the budget
    assert rejected, "the space holds networks over 12,000 params: some must be rejected"
    assert all(t["user_attrs"]["params"] <= 12000 for t in trained)
    for t in rejected:  # never trained
        assert t["state"] == "PRUNED" and t["values"] is None and t["user_attrs"]["epochs_run"] == 0
        assert t["user_attrs"]["params"] > 12000 and "params" in t["user_attrs"]["infeasible"]
    rows = list(csv.DictReader((out / "top.csv").open()))
    assert 0 < len(rows) <= 10 and all(int(r["params"]) <= 12000 for r in rows)
    scores = [float(r["val_accuracy"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert rows[0]["model"] == result.trials[result.best_trials[0]]["user_attrs"]["model"]
    assert {"params", "flops", "size_kb", "latency_ms"} <= set(rows[0])
    assert float(rows[0]["latency_ms"]) > 0


def test_best_yaml_reproduces_the_best_architecture(constrained):
    result, out = constrained
    from nnopt.config import TrainSpec, load_yaml
    from nnopt.train import run

    spec = TrainSpec(**load_yaml(out / "best.yaml"))
    best = result.trials[result.best_trials[0]]
    assert spec.model == best["user_attrs"]["model"]
    again = run(spec)
    assert again.metrics["val"]["accuracy"] == pytest.approx(best["values"][0], abs=1e-9)
    assert again.config["n_params"] == best["user_attrs"]["params"]


def test_search_resumes_to_exactly_n_trained(tmp_path):
    out = tmp_path / "run"
    space = {"preset": "mlp", "depth": [1, 2], "width": [8, 16, 32]}
    search("iris", space=space, trials=3, epochs=2, seed=0, out=out, strategy="evolution")
    result = search("iris", space=space, trials=5, epochs=2, seed=0, out=out, strategy="evolution")
    trained = [t for t in result.trials if t["state"] == "COMPLETE"]
    assert len(trained) == 5 and len({t["number"] for t in trained}) == 5


def test_multi_objective_search_writes_the_pareto_front(tmp_path):
    out = tmp_path / "run"
    result = search("iris", space={"preset": "mlp", "depth": [1, 2], "width": [4, 16, 64]},
                    objectives="val_accuracy,params", trials=8, epochs=3, seed=0, out=out)
    assert result.config["sampler"] == "nsga2"
    rows = list(csv.DictReader((out / "pareto.csv").open()))
    done = [t for t in result.trials if t["state"] == "COMPLETE"]
    by_number = {t["number"]: t for t in done}
    points = [tuple(by_number[int(r["trial"])]["values"]) for r in rows]
    assert [float(r["params"]) for r in rows] == [p for _, p in points]
    for acc, params in points:  # nobody dominates a Pareto point
        assert not any(t["values"][0] >= acc and t["values"][1] <= params and
                       (t["values"][0] > acc or t["values"][1] < params) for t in done)
    assert points[0][0] == max(p[0] for p in points)  # kept and retrained: the most accurate point
    assert int(rows[0]["trial"]) == result.best_trials[0]
    assert (out / "best" / "model.pt").is_file()


def test_cnn_space_searches_image_data(tmp_path):
    result = search("digits", space={"preset": "cnn", "blocks": [1, 2], "channels": [4, 8], "head": [0, 16]},
                    trials=2, epochs=1, seed=0, out=tmp_path / "run")
    assert sum(t["state"] == "COMPLETE" for t in result.trials) == 2
    assert all(t["user_attrs"]["model"].startswith("cnn:") for t in result.trials)


def test_constraint_nobody_meets_is_refused_before_training(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(UsageError, match=r"no architecture in space mlp meets the constraints on digits: the "
                                         r"smallest has params .* over the limit of 100"):
        search("digits", space="mlp", trials=5, out=out, max_params=100)
    assert not out.exists()


def test_cnn_space_on_tabular_data_is_refused(tmp_path):
    with pytest.raises(UsageError, match="needs image-shaped data"):
        search("iris", space="cnn", trials=2, out=tmp_path / "run")


@pytest.mark.parametrize("kwargs, message", [
    ({"strategy": "annealing"}, "unknown strategy 'annealing'"),
    ({"sampler": "random"}, r"sampler= is nnopt tune's; an architecture search picks its sampler with strategy="),
    ({"strategy": "evolution", "objectives": "val_accuracy,params"}, "evolution' optimizes one objective"),
    ({"objectives": "val_acuracy"}, "did you mean 'val_accuracy'"),
    ({"max_params": -5}, "max_params= must be a number > 0"),
    ({"epochs": 0}, "epochs= must be an integer >= 1"),
])
def test_bad_search_settings(kwargs, message, tmp_path):
    with pytest.raises((UsageError, ConfigError), match=message):
        search("iris", space="mlp", trials=2, out=tmp_path / "run", **kwargs)
    assert not (tmp_path / "run").exists()


def test_cli_search_json_and_bad_input(tmp_path, run_cli):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "nnopt", "search", "--data", "iris", "--space", "mlp", "--trials", "2",
           "--epochs", "1", "--seed", "0", "--max-params", "5000", "--out", str(out), "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["trials"]["complete"] == 2 and summary["run_dir"] == str(out)
    assert (out / "report.html").is_file() and (out / "top.csv").is_file()
    # bad input in-process: the command's exit code and stderr (the process above showed `python -m nnopt`'s)
    code, _, err = run_cli("search", "--data", "iris", "--space", "transformer", "--out", tmp_path / "bad")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "unknown architecture space 'transformer'" in err and not (tmp_path / "bad").exists()


def test_evolve_searches_a_tabular_benchmark_without_training():
    """A NAS-Bench-201-shaped cell (6 edges x 5 ops) with a known optimum, scored by a formula."""
    ops = ["none", "skip", "conv1", "conv3", "pool"]
    best = ["conv3", "conv3", "skip", "conv3", "conv1", "conv3"]
    space = {f"edge{i}": {"choices": ops} for i in range(6)}

    def score(params):
        return sum(params[f"edge{i}"] == best[i] for i in range(6)) / 6

    result = evolve(space, score, trials=150, population=20, sample=5, seed=0)
    assert result.best_value == 1.0
    assert len([t for t in result.trials if t["state"] == "COMPLETE"]) == 150


def test_tune_spec_searches_architecture_and_training_settings_jointly(tmp_path):
    from nnopt.search import load_tune_spec, tune

    raw = {"data": "iris", "architecture": {"preset": "mlp", "depth": [1, 2], "width": [8, 32]},
           "train": {"epochs": 2}, "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}},
           "constraints": {"max_params": 2000}}
    spec = load_tune_spec(raw)
    assert spec.space.names()[:2] == ["depth", "width_1"] and "lr" in spec.space
    assert load_tune_spec(spec.to_dict()).to_dict() == spec.to_dict()  # round trip
    result = tune(raw, trials=4, seed=0, pruner="none", out=tmp_path / "run")
    trained = [t for t in result.trials if t["state"] == "COMPLETE"]
    assert len(trained) == 4 and all("lr" in t["params"] and t["user_attrs"]["params"] <= 2000 for t in trained)
    with pytest.raises(ConfigError, match="knob of the architecture space"):
        load_tune_spec({**raw, "space": {"act": {"choices": ["relu", "tanh"]}}})
    with pytest.raises(ConfigError, match="gives both model"):
        load_tune_spec({**raw, "model": "mlp:{hidden}"})
    with pytest.raises(ConfigError, match="unknown constraint 'max_param'; did you mean 'max_params'"):
        load_tune_spec({**raw, "constraints": {"max_param": 10}})


def test_plain_tune_constraint_rejects_without_training(tmp_path):
    from nnopt.search import tune

    raw = {"data": "iris", "model": "mlp:{hidden}", "train": {"epochs": 1},
           "space": {"hidden": {"choices": [4, 512]}}, "constraints": {"max_params": 1000}}
    result = tune(raw, trials=3, sampler="random", pruner="none", seed=0, out=tmp_path / "run")
    trained = [t for t in result.trials if t["state"] == "COMPLETE"]
    assert len(trained) == 3 and all(t["params"]["hidden"] == 4 for t in trained)
    assert all(t["user_attrs"]["epochs_run"] == 0 for t in result.trials if "infeasible" in t["user_attrs"])


def test_multi_fidelity_search_stops_weak_candidates_early(tmp_path):
    result = search("digits", space={"preset": "mlp", "depth": [1, 2], "width": [8, 64]}, strategy="random",
                    pruner="asha", trials=12, epochs=6, seed=0, out=tmp_path / "run")
    stopped = [t for t in result.trials if t["state"] == "PRUNED"]
    assert stopped and all(0 < t["user_attrs"]["epochs_run"] < 6 for t in stopped)
    assert sum(t["user_attrs"]["epochs_run"] for t in result.trials) < 12 * 6


def test_two_workers_share_one_search(tmp_path):
    result = search("iris", space={"preset": "mlp", "depth": [1, 2], "width": [8, 16, 32]}, trials=6, epochs=2,
                    workers=2, seed=0, out=tmp_path / "run", max_params=600)
    trained = [t for t in result.trials if t["state"] == "COMPLETE"]
    assert len(trained) == 6 and len({t["number"] for t in trained}) == 6
    assert all(t["user_attrs"]["params"] <= 600 for t in trained)

"""A factory's keyword arguments are searchable like any other parameter: in a model dict
({factory: "usermodels:make_net", args: {width: "{width}"}}) or a spec string ("usermodels:make_net:width={width}"),
from YAML through `nnopt tune` and from Python through nnopt.tune; best.yaml and best/ rebuild the same call."""

import json

import pytest
import yaml
from torch import nn

import nnopt
import nnopt.models._count as count_module
import usermodels
from nnopt.errors import ConfigError
from nnopt.models import ArchSpec, build_model, flops_per_sample, load_model
from nnopt.search import load_tune_spec

FACTORY = "usermodels:make_net"
SPACE = {"width": {"type": "int", "low": 2, "high": 6, "step": 2}, "depth": {"type": "int", "low": 1, "high": 2}}


def spec(model, **extra):
    return {"data": "digits", "model": model, "train": {"epochs": 2, "batch_size": 64}, "space": SPACE,
            "pruner": "none", **extra}


def made(width, depth):
    return {"input_shape": (1, 8, 8), "n_outputs": 10, "width": width, "depth": depth}


def test_factory_arguments_round_trip_through_the_spec_string_and_dict():
    arch = ArchSpec.parse("usermodels:make_net:width=8:depth=2:act=relu:scale=0.5:on=true:none=null:sizes=[4,8]")
    text = "usermodels:make_net:act=relu:depth=2:none=null:on=true:scale=0.5:sizes=[4,8]:width=8"
    assert arch.kind == "factory" and arch.factory == FACTORY
    assert arch.kwargs == {"width": 8, "depth": 2, "act": "relu", "scale": 0.5, "on": True, "none": None,
                           "sizes": [4, 8]}
    assert arch.to_string() == text and ArchSpec.parse(arch.to_string()) == arch  # canonical: sorted by name
    as_dict = ArchSpec.parse({"factory": FACTORY, "args": arch.kwargs})
    assert as_dict == arch and hash(as_dict) == hash(arch)
    assert ArchSpec.parse(as_dict.to_dict()) == arch
    assert ArchSpec.parse(FACTORY).kwargs == {}


@pytest.mark.parametrize("model, message", [
    ("usermodels:make_net:width", "arguments are written name=value"),
    ("usermodels:make_net:width=1:width=2", "argument 'width' is given twice"),
    ({"factory": FACTORY, "args": {"n_outputs": 3}}, "argument 'n_outputs' comes from the data"),
    ({"factory": FACTORY, "args": {"act": "a:b"}}, "cannot be recorded in a model spec"),
    ({"factory": FACTORY, "args": {"width": "1"}}, "cannot be recorded in a model spec"),  # would read back as 1
    ({"factory": FACTORY, "args": [1, 2]}, "args must be a mapping"),
    ({"kind": "mlp", "args": {"width": 1}}, "model 'mlp' takes no args"),
    ({"factory": "usermodels:make_net:width=1"}, "give its arguments under args:"),
])
def test_malformed_factory_arguments_are_config_errors(model, message):
    with pytest.raises(ConfigError, match=message):
        ArchSpec.parse(model)


def test_the_factory_is_called_with_the_arguments_and_checks_their_names():
    usermodels.CALLS.clear()
    build_model("usermodels:make_net:width=6:depth=2", in_features=64, n_outputs=10, input_shape=(1, 8, 8))
    assert usermodels.CALLS == [made(6, 2)] and type(usermodels.CALLS[0]["width"]) is int
    with pytest.raises(ConfigError, match="has no argument 'widht'; did you mean 'width'"):
        build_model("usermodels:make_net:widht=6", in_features=64, n_outputs=10, input_shape=(1, 8, 8))


def check_study(out, trials, params_of):
    """Exactly `trials` complete trials, each of which called the factory with its own width and depth (ints);
    best.yaml holds the best trial's factory call and best/ was built by it."""
    rows = json.loads((out / "trials.json").read_text())["trials"]
    assert len(rows) == trials and all(t["state"] == "COMPLETE" for t in rows)
    calls = [c for c in usermodels.CALLS if c["input_shape"] == (1, 8, 8)]
    for t in rows:
        assert made(t["params"]["width"], t["params"]["depth"]) in calls
    assert all(type(c["width"]) is int and type(c["depth"]) is int for c in calls)
    best = yaml.safe_load((out / "best.yaml").read_text())
    width, depth = params_of(best["model"])
    winner = max(rows, key=lambda t: (t["values"][0], -t["number"]))
    assert (width, depth) == (winner["params"]["width"], winner["params"]["depth"])
    model, meta = load_model(out / "best")
    assert meta["model_spec"] == f"{FACTORY}:depth={depth}:width={width}"
    reference = usermodels.make_net((1, 8, 8), 10, width, depth)
    assert [p.shape for p in model.parameters()] == [p.shape for p in reference.parameters()]
    return best, width, depth


def test_tune_yaml_over_a_factorys_width_and_depth_through_the_cli(tmp_path, run_cli):
    usermodels.CALLS.clear()
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec({"factory": FACTORY, "args": {"width": "{width}", "depth": "{depth}"}})))
    out = tmp_path / "run"
    code, stdout, err = run_cli("tune", path, "--trials", "3", "--sampler", "random", "--seed", "0", "--out", out,
                                "--json")
    assert code == 0, err
    assert json.loads(stdout)["trials"]["complete"] == 3
    best, width, depth = check_study(out, 3, lambda m: (m["args"]["width"], m["args"]["depth"]))
    assert best["model"] == {"factory": FACTORY, "args": {"width": width, "depth": depth}}
    # best.yaml reproduces the trial: the same factory call, the same validation score
    usermodels.CALLS.clear()
    code, stdout, err = run_cli("train", "--config", out / "best.yaml", "--out", tmp_path / "again", "--json")
    assert code == 0, err
    assert usermodels.CALLS == [made(width, depth)]
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert again["model"] == f"{FACTORY}:depth={depth}:width={width}"
    summary = json.loads((out / "best" / "summary.json").read_text())
    assert json.loads(stdout)["metrics"]["val"]["accuracy"] == summary["metrics"]["val"]["accuracy"]


def test_tune_from_python_with_the_spec_string_template(tmp_path):
    usermodels.CALLS.clear()
    result = nnopt.tune(spec(f"{FACTORY}:width={{width}}:depth={{depth}}"), trials=3, sampler="random", seed=1,
                        out=tmp_path / "run")
    assert result.counts()["complete"] == 3

    def parse(model):
        kwargs = ArchSpec.parse(model).kwargs
        return kwargs["width"], kwargs["depth"]

    best, width, depth = check_study(tmp_path / "run", 3, parse)
    # the template filled, its arguments sorted by name as every recorded spec writes them
    assert best["model"] == f"{FACTORY}:depth={depth}:width={width}"
    assert {t["user_attrs"]["model"] for t in result.trials} <= {
        f"{FACTORY}:depth={t['params']['depth']}:width={t['params']['width']}" for t in result.trials}


def test_a_factory_placeholder_is_used_and_a_wrong_argument_fails_before_any_trial():
    loaded = load_tune_spec(spec({"factory": FACTORY, "args": {"width": "{width}", "depth": "{depth}"}}))
    assert loaded.model_of({"width": 4, "depth": 2}) == {"factory": FACTORY, "args": {"width": 4, "depth": 2}}
    with pytest.raises(ConfigError, match="has no argument 'widht'; did you mean 'width'"):
        load_tune_spec(spec({"factory": FACTORY, "args": {"widht": "{width}", "depth": "{depth}"}}))
    with pytest.raises(ConfigError, match="space parameter 'width' is used nowhere"):
        load_tune_spec(spec({"factory": FACTORY, "args": {"depth": "{depth}"}}))


def test_max_flops_on_factory_models_skips_the_too_large_ones_untrained(tmp_path):
    usermodels.CALLS.clear()
    small, large = (flops_per_sample(usermodels.make_net((1, 8, 8), 10, w, 1), (1, 8, 8)) for w in (2, 6))
    limit = (small + large) // 2
    space = {"width": {"choices": [2, 6]}}
    result = nnopt.tune(spec({"factory": FACTORY, "args": {"width": "{width}"}}, space=space,
                             constraints={"max_flops": limit}), trials=2, sampler="grid", out=tmp_path / "run")
    by_width = {t["params"]["width"]: t for t in result.trials}
    assert by_width[2]["state"] == "COMPLETE" and by_width[2]["user_attrs"]["flops"] == small
    assert by_width[6]["state"] == "PRUNED" and by_width[6]["user_attrs"]["epochs_run"] == 0
    assert by_width[6]["user_attrs"]["infeasible"] == f"flops {large:,} > {limit:,}"


def test_max_flops_on_a_model_torch_cannot_count_fails_the_trial_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(count_module, "FlopCounterMode", usermodels.RefusingCounter)
    result = nnopt.tune(spec(f"{FACTORY}:width={{width}}", space={"width": {"choices": [2]}},
                             constraints={"max_flops": 1e9}), trials=1, sampler="grid")
    (trial,) = result.trials
    assert trial["state"] == "FAIL"
    reason = trial["user_attrs"]["fail_reason"]
    assert reason.startswith("UsageError: max_flops cannot be checked: the flops of model usermodels:make_net:width=2")
    assert "\n" not in reason


def test_a_factory_that_fails_or_lacks_an_argument_is_one_config_error():
    with pytest.raises(ConfigError, match=r"model factory 'usermodels:make_net' failed when called with "
                                          r"n_outputs=3, input_shape=None \(TypeError: "):
        build_model(FACTORY, in_features=4, n_outputs=3)  # table rows: the factory indexes input_shape
    with pytest.raises(ConfigError, match=rf"model factory '{__name__}:needs_size' needs argument 'size'; give it "
                                          rf"as '{__name__}:needs_size:size=...'"):
        build_model(f"{__name__}:needs_size", in_features=4, n_outputs=3)
    net = build_model(f"{__name__}:needs_size:size=5", in_features=4, n_outputs=3)
    assert [tuple(p.shape) for p in net.parameters()] == [(5, 4), (5,), (3, 5), (3,)]


def test_a_class_is_a_factory_too():
    net = build_model("usermodels:ResidualCNN:in_channels=1:n_classes=10:width=4:depth=2", in_features=64,
                      n_outputs=10)
    assert isinstance(net, usermodels.ResidualCNN) and len(net.blocks) == 2 and net.head.out_features == 10


def needs_size(in_features, n_outputs, size):
    return nn.Sequential(nn.Linear(in_features, size), nn.ReLU(), nn.Linear(size, n_outputs))

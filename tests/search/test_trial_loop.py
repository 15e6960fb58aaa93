"""The trial loop's lean paths: telling Optuna without its copy of the trial, no claims on a study in memory,
trial rows made when read with distributions encoded once, and values Optuna would refuse failed with a reason."""

import json
import warnings

import pytest

from nnopt.search import _loop, tune

SPACE = {"x": {"type": "float", "low": -2.0, "high": 2.0}, "kind": {"choices": ["a", "b"]}}


def bowl(params):
    return (params["x"] - 1.0) ** 2 + (0.0 if params["kind"] == "a" else 0.5)


def _essentials(trials):
    return [(t["number"], t["state"], t["values"], t["params"], t["distributions"]) for t in trials]


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_optunas_public_tell_gives_the_same_study(monkeypatch, sampler):
    lean = tune(bowl, space=SPACE, directions="minimize", sampler=sampler, trials=12, seed=4)
    monkeypatch.setattr(_loop, "_tell_with_warning", None)  # as on an Optuna that moved it
    public = tune(bowl, space=SPACE, directions="minimize", sampler=sampler, trials=12, seed=4)
    assert _essentials(lean.trials) == _essentials(public.trials)
    assert lean.best_params == public.best_params and lean.counts() == {"complete": 12, "pruned": 0, "fail": 0}


def test_rows_made_when_read_match_trials_json_and_memory_keeps_no_claims(tmp_path):
    on_file = tune(bowl, space=SPACE, directions="minimize", sampler="random", trials=9, seed=2, out=tmp_path / "r")
    written = json.loads((tmp_path / "r" / "trials.json").read_text())["trials"]
    assert on_file.trials == json.loads(json.dumps(on_file.trials)) == written
    in_memory = tune(bowl, space=SPACE, directions="minimize", sampler="random", trials=9, seed=2)
    assert _essentials(in_memory.trials) == _essentials(written)
    assert len(in_memory.frozen_trials) == 9
    # nobody else can see a study in memory: no trial carries a record of the process that ran it
    assert all("worker" not in t.user_attrs for t in in_memory.frozen_trials)


def test_equal_choices_of_other_types_keep_their_own_encoding():
    as_bools = tune(lambda p: float(p["flag"]), space={"flag": {"choices": [True, False]}}, sampler="random",
                    trials=2, seed=0)
    as_ints = tune(lambda p: float(p["flag"]), space={"flag": {"choices": [1, 0]}}, sampler="random",
                   trials=2, seed=0)
    assert json.loads(as_bools.trials[0]["distributions"]["flag"])["attributes"]["choices"] == [True, False]
    assert json.loads(as_ints.trials[0]["distributions"]["flag"])["attributes"]["choices"] == [1, 0]
    assert all(type(c) is int for c in json.loads(as_ints.trials[0]["distributions"]["flag"])["attributes"]["choices"])


def test_nan_and_a_wrong_number_of_values_fail_with_their_reason_and_no_warning():
    def holey(params):
        return float("nan") if params["kind"] == "b" else params["x"]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna's "The value nan is not acceptable" would raise here
        result = tune(holey, space=SPACE, sampler="random", trials=10, seed=0)
        pair = tune(lambda p: (p["x"], p["x"]), space=SPACE, sampler="random", trials=2, seed=0)
    kinds = {t["number"]: t["params"]["kind"] for t in result.trials}
    failed = [t for t in result.trials if t["state"] == "FAIL"]
    assert [t["number"] for t in failed] == [n for n, kind in kinds.items() if kind == "b"] and failed
    assert all("returned nan" in t["user_attrs"]["fail_reason"] for t in failed)
    assert result.counts() == {"complete": 10 - len(failed), "pruned": 0, "fail": len(failed)}
    reasons = [t["user_attrs"]["fail_reason"] for t in pair.trials]
    assert reasons == ["the objective returned 2 values for 1 objective"] * 2

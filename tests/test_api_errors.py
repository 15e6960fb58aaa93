"""Every public function raises nnopt's own errors for a wrong type or a bad value, in one line that names the
parameter as Python spells it (`lr=`); the CLI names the same parameters as flags (`--lr`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import nnopt
from nnopt.errors import ConfigError, DataError, NnoptError, UsageError, cli_spelling, param


class MyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def _objective(params):
    return params["x"]


SPACE = {"x": {"type": "float", "low": 0.0, "high": 1.0}}

# name in nnopt.__all__ -> (id, call, error class, fragments the message holds). Each name has a wrong type and,
# where the function validates values of its own, a bad value. The calls fail before any training.
CASES = {
    "fit": [
        ("epochs type", lambda: nnopt.fit("mlp:8", "iris", epochs="ten"), UsageError,
         ["epochs= must be an integer >= 1; got 'ten'"]),
        ("lr value", lambda: nnopt.fit("mlp:8", "iris", lr=-0.1), UsageError, ["lr= must be > 0; got -0.1"]),
        ("epochs as text", lambda: nnopt.fit("mlp:8", "iris", epochs="3"), UsageError,
         ["epochs= must be an integer >= 1; got '3'"]),  # a YAML file's "1e-3" is read as a number; Python's is not
        ("lr as text", lambda: nnopt.fit("mlp:8", "iris", lr="0.01"), UsageError,
         ["lr= must be a number > 0; got '0.01'"]),
        ("batch_size type", lambda: nnopt.fit("mlp:8", "iris", batch_size=2.5), UsageError,
         ["batch_size= must be an integer >= 1 or 'full'; got 2.5"]),
        ("loss for the task", lambda: nnopt.fit("mlp:8", "iris", loss="huber", epochs=1), UsageError,
         ["loss='huber' does not fit 3-output classification; use 'cross_entropy'"]),
        ("loss for regression", lambda: nnopt.fit("linear", "linear", loss="bce", epochs=1), UsageError,
         ["loss='bce' is for classification"]),
        ("loss type", lambda: nnopt.fit("mlp:8", "iris", loss=3, epochs=1), UsageError,
         ["loss= must be a loss name", "got 3"]),
        ("device value", lambda: nnopt.fit("mlp:8", "iris", device="gpu"), UsageError,
         ["device= must be one of auto, cpu, cuda or cuda:N; got 'gpu'"]),
        ("device index", lambda: nnopt.fit("mlp:8", "iris", device="cuda:99", epochs=1), UsageError,
         ["device='cuda:99' but "]),
        ("callbacks type", lambda: nnopt.fit("mlp:8", "iris", epochs=1, callbacks=3), UsageError,
         ["callbacks= must be a list of nnopt.train.Callback; got 3"]),
        ("metrics type", lambda: nnopt.fit("mlp:8", "iris", epochs=1, metrics="accuracy"), UsageError,
         ["metrics= must be a list of metric names"]),
        ("out type", lambda: nnopt.fit("mlp:8", "iris", epochs=1, out=3), UsageError,
         ["out= must be a directory path; got 3"]),
        ("data type", lambda: nnopt.fit("mlp:8", 3), DataError, ["data= must be a dataset name", "got 3"]),
        ("resume without out", lambda: nnopt.fit("mlp:8", "iris", resume=True), UsageError,
         ["resume=True needs out=DIR"]),
    ],
    "compare": [
        ("seeds type", lambda: nnopt.compare("iris", seeds="3"), UsageError,
         ["seeds= must be an integer >= 1; got '3'"]),
        ("optimizers type", lambda: nnopt.compare("iris", optimizers=3), UsageError,
         ["optimizers= must be a comma-separated list"]),
        ("lr value", lambda: nnopt.compare("iris", lr="fast"), UsageError, ["lr= must be 'auto' or a number > 0"]),
        ("lr and grid", lambda: nnopt.compare("iris", lr="auto", lr_grid=[0.1]), UsageError,
         ["use lr='auto' or lr_grid=, not both"]),
        ("target_metric type", lambda: nnopt.compare("iris", target_metric=0.9), UsageError,
         ["target_metric= must be a text NAME=VALUE"]),
    ],
    "find_lr": [
        ("steps type", lambda: nnopt.find_lr("mlp:8", "iris", steps="x"), UsageError,
         ["steps= must be an integer >= 10; got 'x'"]),
        ("min_lr type", lambda: nnopt.find_lr("mlp:8", "iris", min_lr="small"), UsageError,
         ["min_lr= and max_lr= must be numbers"]),
    ],
    "tune": [
        ("spec type", lambda: nnopt.tune(3), UsageError,
         ["spec_or_function= must be a tune spec (a YAML file or a mapping) or a function", "got 3"]),
        ("trials value", lambda: nnopt.tune(_objective, space=SPACE, trials=0), UsageError,
         ["trials= must be an integer >= 1; got 0"]),
    ],
    "nas": [
        ("trials type", lambda: nnopt.nas("iris", trials="x"), UsageError, ["trials= must be an integer >= 1"]),
        ("epochs value", lambda: nnopt.nas("iris", epochs=0), UsageError, ["epochs= must be an integer >= 1; got 0"]),
    ],
    "compress_model": [
        ("nn.Module without data", lambda: nnopt.compress_model(MyNet(), quantize="int8"), UsageError,
         ["an nn.Module has no training record", "give data=, the labelled rows"]),
        ("model type", lambda: nnopt.compress_model(3, quantize="int8"), UsageError,
         ["model= must be a run directory or a model file", "got 3"]),
        ("prune value", lambda: nnopt.compress_model("runs/none", prune=1.5), UsageError,
         ["prune= must be a sparsity in [0, 1)"]),
        ("qat without bits", lambda: nnopt.compress_model("runs/none", qat_epochs=2), UsageError,
         ["qat_epochs= needs quantize=int8|int4|int2"]),
    ],
    "automl": [
        ("budget value", lambda: nnopt.automl("iris", budget="soon"), UsageError,
         ["budget= must be a duration like 10m, 90s or 1h; got 'soon'"]),
        ("workers type", lambda: nnopt.automl("iris", workers="2"), UsageError,
         ["workers= must be an integer >= 1; got '2'"]),
        ("data type", lambda: nnopt.automl(("X", "y")), UsageError, ["data= must be a dataset name, a file path or a pandas DataFrame"]),
        ("test_fraction value", lambda: nnopt.automl("iris", test_fraction=1), UsageError,
         ["test_fraction= must be in [0, 1); got 1"]),
        ("test_fraction below 0", lambda: nnopt.automl("iris", test_fraction=-0.1), UsageError,
         ["test_fraction= must be in [0, 1); got -0.1"]),
        ("test_fraction with val", lambda: nnopt.automl("iris", test_fraction=0.95), UsageError,
         ["test_fraction= must be < 0.85 (automl validates on 0.15 of the rows); got 0.95"]),
        ("test_fraction type", lambda: nnopt.automl("iris", test_fraction="abc"), UsageError,
         ["test_fraction= must be a number in [0, 1); got 'abc'"]),
    ],
    "evaluate": [
        ("nn.Module without data", lambda: nnopt.evaluate(MyNet()), UsageError,
         ["an nn.Module has no training record", "give data="]),
        ("model type", lambda: nnopt.evaluate(3, "iris"), UsageError, ["model= must be a run directory", "got 3"]),
        ("split value", lambda: nnopt.evaluate("runs/none", split="tests"), ConfigError,
         ["unknown split 'tests'; did you mean 'test'?"]),
    ],
    "predict": [
        ("nn.Module on data of another shape", lambda: nnopt.predict(MyNet(), [[0.0] * 5]), UsageError,
         ["the model fails on a batch of shape (2, 5)", "give sample_shape="]),
        ("out type", lambda: nnopt.predict("runs/none", "iris", out=3), UsageError,
         ["out= must be a file path for the CSV; got 3"]),
    ],
    "export": [
        ("nn.Module without its shape", lambda: nnopt.export(MyNet()), UsageError,
         ["an nn.Module has no training record", "give sample_shape=, the shape of one sample"]),
        ("sample_shape type", lambda: nnopt.export(MyNet(), sample_shape=4.5), UsageError,
         ["sample_shape= must be the shape of one sample", "got 4.5"]),
        ("model type", lambda: nnopt.export(3), UsageError,
         ["model= must be a run directory or a model file (model.pt, compressed.nnz); got 3"]),
    ],
    "load": [
        ("path type", lambda: nnopt.load(3), UsageError, ["path= must be a run directory or a model file", "got 3"]),
    ],
    "build_report": [
        ("run_dir type", lambda: nnopt.build_report(3), UsageError, ["run_dir= must be the directory of an nnopt run"]),
    ],
    "load_data": [
        ("data type", lambda: nnopt.load_data(3), DataError, ["data= must be a dataset name", "got 3"]),
        ("seed type", lambda: nnopt.load_data("iris", seed="0"), DataError, ["seed= must be an integer; got '0'"]),
        ("val_fraction type", lambda: nnopt.load_data("iris", val_fraction="a lot"), UsageError,
         ["val_fraction= must be a number in [0, 1); got 'a lot'"]),
        ("target for a built-in", lambda: nnopt.load_data("iris", target="y"), DataError,
         ["target= applies to .csv and .parquet files only"]),
    ],
    "build_model": [
        ("in_features type", lambda: nnopt.build_model("mlp:8", in_features="4", n_outputs=3), UsageError,
         ["in_features= must be an integer >= 1; got '4'"]),
    ],
    "load_model": [
        ("path type", lambda: nnopt.load_model(MyNet()), UsageError,
         ["path= must be a model file (model.pt) or the run directory that holds it", "got an nn.Module (MyNet)"]),
    ],
    "ArchSpec": [
        ("hidden type", lambda: nnopt.ArchSpec(hidden="64"), ConfigError,
         ["hidden= must be a sequence of layer sizes like (128, 64); got '64'"]),
        ("dropout type", lambda: nnopt.ArchSpec(dropout="0.1"), ConfigError, ["dropout= must be a number; got '0.1'"]),
    ],
    "create_optimizer": [
        ("params type", lambda: nnopt.create_optimizer("adam", 3), UsageError,
         ["model_or_params= must be an nn.Module or its parameters; got 3"]),
        ("lr type", lambda: nnopt.create_optimizer("adam", MyNet(), lr="x"), UsageError,
         ["lr= must be a number > 0; got 'x'"]),
    ],
}

# Public names that are not entry points: data, result records and the error classes themselves.
NOT_CALLED = {"__version__", "OPTIMIZERS", "FitResult", "CompareResult", "NnoptError", "UsageError", "DataError",
              "ConfigError"}


@pytest.mark.parametrize("name", nnopt.__all__)
def test_every_public_name_has_error_cases(name):
    """A new public function fails here until it has cases in CASES (or is listed as not an entry point)."""
    if name in NOT_CALLED:
        value = getattr(nnopt, name)
        assert not callable(value) or isinstance(value, type), f"{name} is callable: give it cases in CASES"
        assert name not in CASES
        return
    assert callable(getattr(nnopt, name))
    assert CASES.get(name), f"nnopt.{name} has no wrong-type case in CASES"


@pytest.mark.parametrize("name, call, error, fragments",
                         [(name, call, error, fragments) for name, cases in CASES.items()
                          for _, call, error, fragments in cases],
                         ids=[f"{name}: {case}" for name, cases in CASES.items() for case, *_ in cases])
def test_bad_arguments_raise_nnopt_errors_named_as_in_python(name, call, error, fragments, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a run directory a call would make lands here
    with pytest.raises(NnoptError) as info:  # a raw TypeError or RuntimeError fails the test as is
        call()
    assert isinstance(info.value, error), f"{type(info.value).__name__}: {info.value}"
    message = str(info.value)
    assert "\n" not in message and "--" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    assert not any(tmp_path.iterdir()), "bad input must leave nothing behind"


# each entry point called with a misspelt keyword, or a fit() setting that the function sets itself: nnopt's error,
# naming the function and the keyword meant (never Python's TypeError from a call inside)
MISSPELT = {
    "fit": (lambda: nnopt.fit("mlp:8", "iris", lrr=0.1), ["unknown key 'lrr' in fit(); did you mean 'lr'?"]),
    "compare": (lambda: nnopt.compare("iris", lrr=0.1), ["unknown keyword argument 'lrr' in compare(); did you "
                                                         "mean 'lr'?"]),
    "compare optimizer": (lambda: nnopt.compare("iris", optimizer="sgd"),
                          ["optimizer= is not compare()'s: compare() trains each optimizer of optimizers="]),
    "compare seed": (lambda: nnopt.compare("iris", seed=1), ["seed= is not compare()'s", "seeds="]),
    "find_lr": (lambda: nnopt.find_lr("mlp:8", "iris", stepz=10),
                ["unknown keyword argument 'stepz' in find_lr(); did you mean 'steps'?"]),
    "tune": (lambda: nnopt.tune(_objective, space=SPACE, trial=3), ["unknown setting 'trial'; did you mean 'trials'?"]),
    "nas": (lambda: nnopt.nas("iris", trails=3), ["unknown key 'trails'", "did you mean 'trials'?"]),
    "compress_model": (lambda: nnopt.compress_model("runs/none", quantise="int8"),
                       ["unknown keyword argument 'quantise' in compress_model(); did you mean 'quantize'?"]),
    "automl": (lambda: nnopt.automl("iris", budgett="10s"),
               ["unknown keyword argument 'budgett' in automl(); did you mean 'budget'?"]),
    "evaluate": (lambda: nnopt.evaluate("runs/none", "iris", splt="all"),
                 ["unknown keyword argument 'splt' in evaluate(); did you mean 'split'?"]),
    "predict": (lambda: nnopt.predict("runs/none", "iris", probas=True),
                ["unknown keyword argument 'probas' in predict(); did you mean 'proba'?"]),
    "predict without data": (lambda: nnopt.predict("runs/none"),
                             ["predict(): missing a required argument: 'data'; see help(nnopt.predict)"]),
    "export": (lambda: nnopt.export("runs/none", fmt="onnx"),
               ["unknown keyword argument 'fmt' in export(); did you mean 'format'?"]),
    "load": (lambda: nnopt.load(pth="runs/none"), ["unknown keyword argument 'pth' in load(); did you mean 'path'?"]),
    "build_report": (lambda: nnopt.build_report(run_dr="runs/none"), ["in build_report(); did you mean 'run_dir'?"]),
    "load_data": (lambda: nnopt.load_data("iris", seeed=1), ["in load_data(); did you mean 'seed'?"]),
    "build_model": (lambda: nnopt.build_model("mlp:8", in_feature=4, n_outputs=3),
                    ["in build_model(); did you mean 'in_features'?"]),
    "load_model": (lambda: nnopt.load_model(pth="runs/none"), ["in load_model(); did you mean 'path'?"]),
    "create_optimizer": (lambda: nnopt.create_optimizer("adam", MyNet(), lrr=0.1), ["has no option 'lrr'"]),
}


@pytest.mark.parametrize("case", MISSPELT)
def test_a_misspelt_keyword_is_named_with_the_one_meant(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    call, fragments = MISSPELT[case]
    with pytest.raises(NnoptError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and all(fragment in message for fragment in fragments), message
    assert not any(tmp_path.iterdir())


def test_every_entry_point_has_a_misspelt_keyword_case():
    called = {name for name in nnopt.__all__ if name not in NOT_CALLED and name != "ArchSpec"}
    assert called == {case.split(" ")[0] for case in MISSPELT}


def test_one_error_reads_as_flags_inside_cli_spelling():
    error = UsageError(f"{param('batch_size')} must be >= 1; use {param('device', 'cpu')} or "
                       f"{param('out', metavar='DIR')} {param('resume', True)}; {param('optimizer_params')}")
    assert str(error) == "batch_size= must be >= 1; use device='cpu' or out=DIR resume=True; optimizer_params="
    with cli_spelling():
        assert str(error) == "--batch-size must be >= 1; use --device cpu or --out DIR --resume; --opt"
    assert str(error).startswith("batch_size=")


@pytest.mark.parametrize("python_call, argv, python_text, cli_text", [
    (lambda out: nnopt.fit("mlp:8", "iris", lr=-0.1, out=out), ["train", "--data", "iris", "--lr", "-0.1"],
     "lr= must be > 0; got -0.1", "error: --lr must be > 0; got -0.1"),
    (lambda out: nnopt.fit("mlp:8", "iris", batch_size=0, out=out), ["train", "--data", "iris", "--epochs", "1",
                                                                     "--batch-size", "0"],
     "batch_size= must be an integer >= 1", "error: argument --batch-size: must be an integer >= 1"),
    (lambda out: nnopt.fit("mlp:8", "iris", early_stopping=0, out=out),
     ["train", "--data", "iris", "--early-stopping", "0"],
     "early_stopping= must be an integer >= 1; got 0", "error: --early-stopping must be an integer >= 1; got 0"),
    (lambda out: nnopt.compress_model("runs/none", prune=0.5, quantize="int8", max_accuracy_drop=1, out=out),
     ["compress", "runs/none", "--prune", "0.5", "--quantize", "int8", "--max-accuracy-drop", "1"],
     "max_accuracy_drop= chooses prune= and quantize= itself",
     "error: --max-accuracy-drop chooses --prune and --quantize itself"),
    (lambda out: nnopt.automl("iris", budget="0s", out=out), ["automl", "--data", "iris", "--budget", "0s"],
     "budget= must be > 0", "error: --budget must be > 0"),
])
def test_the_same_mistake_says_lr_from_python_and_dash_dash_lr_from_the_cli(python_call, argv, python_text, cli_text,
                                                                          run_cli, tmp_path):
    with pytest.raises(UsageError) as info:
        python_call(tmp_path / "py")
    assert str(info.value).startswith(python_text)
    code, out, err = run_cli(*argv, "--out", tmp_path / "cli")
    assert code == 2 and out == "" and err.startswith(cli_text) and err.count("\n") == 1, err
    assert not (tmp_path / "py").exists() and not (tmp_path / "cli").exists()


def test_a_torch_device_is_a_device(tmp_path):
    result = nnopt.fit("mlp:8", "iris", epochs=1, device=torch.device("cpu"), out=tmp_path / "run")
    assert result.config["device"] == "cpu"
    assert nnopt.fit("mlp:8", "iris", epochs=1, device="cpu").config["device"] == "cpu"


def test_automl_without_out_uses_the_cli_default(tmp_path, monkeypatch):
    """nnopt.automl("iris") writes runs/automl-iris, as `nnopt automl --data iris` does; shown without training
    by a directory already in use there."""
    monkeypatch.chdir(tmp_path)
    assert nnopt.pipeline.default_out("iris") == Path("runs/automl-iris")
    assert nnopt.pipeline.default_out("data/my table.csv") == Path("runs/automl-my-table")
    holder = _hold(tmp_path / "runs" / "automl-iris")
    try:
        with pytest.raises(UsageError, match=rf"^runs/automl-iris is in use by another nnopt process "
                                             rf"\(pid {holder.pid}\)"):
            nnopt.automl("iris", budget="45s")
    finally:
        holder.kill()
        holder.wait()


def test_subpackages_are_attributes_after_import_nnopt_without_torch():
    code = ("import sys, nnopt\n"
            "assert 'torch' not in sys.modules\n"
            "assert nnopt.errors.UsageError is nnopt.UsageError and nnopt.config.TrainSpec\n"
            "assert 'torch' not in sys.modules\n"
            "from nnopt.train import Callback\n"
            "assert nnopt.train.Callback is Callback and nnopt.search.nas.search and nnopt.data.load_data\n"
            "assert nnopt.pipeline.default_out and nnopt.inference.evaluate and nnopt.compress.prune\n"
            "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr
    with pytest.raises(AttributeError, match="module 'nnopt' has no attribute 'trian'"):
        nnopt.trian  # noqa: B018


def _hold(directory: Path) -> subprocess.Popen:
    """Another process holding `directory`'s lock until killed."""
    script = ("import sys, time\nfrom nnopt.fileio import lock_run_dir\n"
              "with lock_run_dir(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(directory)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    return proc

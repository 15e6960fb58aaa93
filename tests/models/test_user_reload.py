"""A run trained from an nn.Module instance is recorded by its class and constructor arguments (when found) and as a
torch.export program (model.pt2), so it reloads with the class and is used without it: evaluate, predict and
ONNX export from the program alone, while compressing (which rebuilds and fine-tunes the network) names the class
it needs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import nnopt
from nnopt.models import PROGRAM, ProgramModule

SRC = str(Path(nnopt.__file__).resolve().parents[1])

NETS = '''
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                                  nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels))

    def forward(self, x):
        return torch.relu(x + self.body(x))


class ResNet(nn.Module):
    """A residual CNN with BatchNorm on (N, C, H, W) images; keeps its arguments as attributes."""

    def __init__(self, in_channels, n_classes, width=8, depth=1):
        super().__init__()
        self.in_channels, self.n_classes, self.width, self.depth = in_channels, n_classes, width, depth
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        self.blocks = nn.Sequential(*(Block(width) for _ in range(depth)))
        self.head = nn.Linear(width, n_classes)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


class Hidden(nn.Module):
    """Its arguments are in self.hparams (as Lightning keeps them), not in attributes of their own."""

    def __init__(self, in_channels, n_classes, width=8):
        super().__init__()
        self.hparams = {"in_channels": in_channels, "n_classes": n_classes, "width": width}
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.export cannot trace it."""

    def __init__(self, in_channels=3, n_classes=3):
        super().__init__()
        self.in_channels, self.n_classes = in_channels, n_classes
        self.head = nn.Linear(in_channels, n_classes)

    def forward(self, x):
        x = x.mean((2, 3))
        if x.sum() > 0:
            return self.head(x)
        return -self.head(x)
'''


def images(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3, 16, 16) images whose class (3 of them) is the channel with the larger mean."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, 3, 16, 16)).astype(np.float32)
    X[np.arange(n), y] += 0.8
    return X, y


@pytest.fixture
def nets(tmp_path, monkeypatch):
    """The NETS module, written to its own directory under a unique name and importable while the test runs."""
    name = f"usernets_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / f"{name}.py").write_text(NETS)
    monkeypatch.syspath_prepend(str(folder))
    module = __import__(name)
    yield module
    sys.modules.pop(name, None)


def run_without(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """`code` in a fresh Python that has nnopt on its path and not the user's module."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}, timeout=600)


def outputs(model: nn.Module, X: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(torch.from_numpy(X)).numpy()


def test_an_instance_is_recorded_by_its_class_and_reloads_as_that_class(nets, tmp_path):
    X, y = images()
    result = nnopt.fit(nets.ResNet(3, 3, width=6, depth=2), (X, y), epochs=3, seed=0, out=tmp_path / "run")
    assert result.metrics["test"]["accuracy"] > 0.6
    record = json.loads((tmp_path / "run" / "config.json").read_text())["model_record"]
    spec = f"{nets.__name__}:ResNet:depth=2:in_channels=3:n_classes=3:width=6"
    assert record == {"model_spec": spec, "module_class": f"{nets.__name__}:ResNet", "recipe_missing": None,
                      "program": PROGRAM, "program_error": None}
    assert (tmp_path / "run" / PROGRAM).is_file()
    model, meta = nnopt.load_model(tmp_path / "run")
    assert type(model) is nets.ResNet and meta["model_spec"] == spec and meta["sample_shape"] == [3, 16, 16]
    scaled = nnopt.data.apply_preprocessing(X[:50], meta["preprocessing"]).reshape(50, 3, 16, 16).numpy()
    assert np.array_equal(outputs(model, scaled), outputs(result.model, scaled))


def test_arguments_kept_in_hparams_are_the_recipe(nets, tmp_path):
    X, y = images(120)
    nnopt.fit(nets.Hidden(3, 3, width=5), (X, y), epochs=1, out=tmp_path / "run")
    model, meta = nnopt.load_model(tmp_path / "run")
    assert type(model) is nets.Hidden and meta["model_spec"].endswith(":Hidden:in_channels=3:n_classes=3:width=5")


def test_without_the_class_evaluate_predict_and_export_use_the_program_and_compress_names_the_class(nets, tmp_path):
    X, y = images()
    run = tmp_path / "run"
    result = nnopt.fit(nets.ResNet(3, 3, width=6), (X, y), epochs=3, seed=0, out=run)
    np.savez(tmp_path / "data.npz", X=X, y=y)
    evaluation = nnopt.evaluate(run, (X, y), split="all").metrics
    predicted = nnopt.predict(run, X, proba=True).probabilities
    meta = nnopt.load_model(run)[1]
    scaled = nnopt.data.apply_preprocessing(X[:64], meta["preprocessing"]).reshape(64, 3, 16, 16).numpy()
    np.save(tmp_path / "scaled.npy", scaled)
    np.save(tmp_path / "reference.npy", outputs(result.model, scaled))
    done = run_without(f"""
        import json, sys, numpy as np, torch, nnopt
        from nnopt.inference import run_exported
        assert not any(name.startswith("usernets_") for name in sys.modules)
        model, meta = nnopt.load_model("run")
        scaled = np.load("scaled.npy")
        with torch.no_grad():
            ours = model(torch.from_numpy(scaled)).numpy()
        data = np.load("data.npz")
        evaluation = nnopt.evaluate("run", (data["X"], data["y"]), split="all").metrics
        proba = nnopt.predict("run", data["X"], proba=True).probabilities
        exported = nnopt.export("run", "onnx", "model.onnx")
        flat = data["X"][:64].reshape(64, -1)
        onnx_out = run_exported("model.onnx", "onnx", flat)
        np.save("program_out.npy", ours); np.save("proba.npy", proba); np.save("onnx_out.npy", onnx_out)
        print(json.dumps({{"type": type(model).__name__, "loaded": meta.get("loaded_program"),
                           "evaluation": evaluation, "agreement": exported.agreement}}))
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["type"] == "ProgramModule" and report["loaded"] == PROGRAM
    reference = np.load(tmp_path / "reference.npy")
    assert np.abs(np.load(tmp_path / "program_out.npy") - reference).max() < 1e-5
    assert np.abs(np.load(tmp_path / "proba.npy") - predicted).max() < 1e-5
    assert report["evaluation"]["accuracy"] == evaluation["accuracy"]
    assert abs(report["evaluation"]["loss"] - evaluation["loss"]) < 1e-5
    assert report["agreement"] == 1.0
    assert np.abs(np.load(tmp_path / "onnx_out.npy") - reference).max() < 1e-4  # ONNX Runtime on raw rows

    cli = subprocess.run([sys.executable, "-m", "nnopt", "compress", str(run), "--data", "data.npz", "--prune", "0.5",
                          "--finetune-epochs", "1", "--out", str(tmp_path / "small")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600,
                         env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert cli.returncode == 2, cli.stderr
    lines = cli.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), cli.stderr
    assert f"needs the class {nets.__name__}.ResNet importable" in lines[0]
    assert f"No module named '{nets.__name__}'" in lines[0]
    assert "--prune, --qat-epochs or --max-accuracy-drop (they train the network" in lines[0]
    assert not (tmp_path / "small" / "compressed.nnz").exists()
    # rounding the weights trains nothing: the program's graph is quantized, without the class
    cli = subprocess.run([sys.executable, "-m", "nnopt", "compress", str(run), "--data", "data.npz", "--quantize",
                          "int8", "--json", "--out", str(tmp_path / "int8")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600,
                         env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert cli.returncode == 0, cli.stderr
    assert "Warning" not in cli.stderr, cli.stderr  # copying the program once printed torch's LeafSpec FutureWarning
    chosen = json.loads(cli.stdout)["chosen"]
    assert chosen["name"] == "int8" and chosen["identical_after_load"]
    state, header = nnopt.compress.read_compressed(tmp_path / "int8" / "compressed.nnz")
    quantized = sorted(t["name"] for t in header["tensors"] if t.get("quant"))
    assert quantized == ["program.blocks.0.body.0.weight", "program.blocks.0.body.3.weight", "program.head.weight",
                         "program.stem.0.weight"]
    model, _ = nnopt.compress.nnopt_load(tmp_path / "int8")  # with the class at hand, as without: the program
    assert isinstance(model, ProgramModule)
    int8 = nnopt.predict(tmp_path / "int8", X, proba=True).probabilities
    assert np.abs(int8 - predicted).max() < 0.05 and (int8.argmax(1) == predicted.argmax(1)).mean() > 0.97


def test_a_module_defined_in_main_is_used_through_its_program(tmp_path):
    X, y = images(150)
    np.savez(tmp_path / "data.npz", X=X, y=y)
    done = run_without("""
        import json, numpy as np, torch, nnopt
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 4, 3, padding=1)
                self.head = nn.Linear(4, 3)

            def forward(self, x):
                return self.head(torch.relu(self.conv(x)).mean((2, 3)))

        data = np.load("data.npz")
        made = lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                     nn.Linear(4, 3))
        out = {}
        for name, net in (("main", Net()), ("sequential", made())):
            result = nnopt.fit(net, (data["X"], data["y"]), epochs=1, out=name)
            out[name] = {"record": json.load(open(name + "/config.json"))["model_record"],
                         "fit": nnopt.evaluate(result.model, (data["X"], data["y"])).metrics["accuracy"]}
        # compressed in this process, the class in hand: the FitResult (its data's scaling), and the module itself
        # on the data as given
        fitted = nnopt.fit(Net(), (data["X"], data["y"]), epochs=2)
        shrunk = nnopt.compress_model(fitted, prune=0.5, prune_method="structured", quantize="int8",
                                      out="main-small")
        tiny = nnopt.compress_model(made(), (data["X"], data["y"]), quantize="int4", qat_epochs=1, out="seq-int4")
        out["compressed"] = {"main-small": {"chosen": shrunk.chosen, "source": shrunk.config["source"],
                                            "proba": nnopt.predict("main-small", data["X"], proba=True)
                                            .probabilities.tolist()},
                             "seq-int4": {"chosen": tiny.chosen, "source": tiny.config["source"],
                                          "proba": nnopt.predict("seq-int4", data["X"], proba=True)
                                          .probabilities.tolist()}}
        print(json.dumps(out))
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["main"]["record"]["model_spec"] is None and out["main"]["record"]["module_class"] == "__main__:Net"
    assert "defined in __main__" in out["main"]["record"]["recipe_missing"]
    assert out["sequential"]["record"]["model_spec"] is None  # its layers are its arguments: no recipe
    assert "weights do not fit" in out["sequential"]["record"]["recipe_missing"]
    for name in ("main", "sequential"):
        model, meta = nnopt.load_model(tmp_path / name)
        assert isinstance(model, ProgramModule) and meta["model_spec"] is None
        scaled = nnopt.data.apply_preprocessing(X, meta["preprocessing"])
        predicted = nnopt.predict(tmp_path / name, X).predictions.astype(int)
        with torch.no_grad():
            assert np.array_equal(predicted, model(scaled.reshape(-1, 3, 16, 16)).argmax(1).numpy())
        evaluation = nnopt.evaluate(tmp_path / name, (X, y), split="all").metrics
        assert evaluation["accuracy"] == pytest.approx(float((predicted == y).mean()))
        exported = nnopt.export(tmp_path / name, "onnx", tmp_path / f"{name}.onnx")
        assert exported.agreement == 1.0 and exported.max_proba_diff < 1e-5
        with pytest.raises(nnopt.UsageError, match=r"needs the class __main__\.|defined in __main__|weights do not"):
            nnopt.compress_model(tmp_path / name, (X, y), prune=0.5)  # fine-tuned: it trains the network
    # the compressed files of modules without a recipe carry their graph: used here without the class
    assert out["compressed"]["main-small"]["source"] == "<FitResult Net>"
    assert out["compressed"]["seq-int4"]["source"] == "<Sequential>"
    for name, kept in (("main-small", "structured 50% sparse + int8"), ("seq-int4", "int4 QAT")):
        chosen = out["compressed"][name]["chosen"]
        assert chosen["name"] == kept and chosen["identical_after_load"]
        model, meta = nnopt.compress.nnopt_load(tmp_path / name)
        assert isinstance(model, ProgramModule) and meta["model_spec"] is None
        assert meta["loaded_program"] == "the torch.export program inside compressed.nnz"
        with zipfile.ZipFile(tmp_path / name / "compressed.nnz") as zf:
            assert zf.getinfo("program.pt2").compress_size < 8000  # the graph only: its weights are in the payload
        proba = nnopt.predict(tmp_path / name, X, proba=True).probabilities
        assert np.array_equal(proba, np.asarray(out["compressed"][name]["proba"], dtype=proba.dtype))
        evaluation = nnopt.evaluate(tmp_path / name, (X, y), split="all").metrics
        assert evaluation["accuracy"] == pytest.approx(float((proba.argmax(1) == y).mean()))
        exported = nnopt.export(tmp_path / name, "onnx", tmp_path / f"{name}.onnx")
        assert exported.agreement == 1.0 and exported.max_proba_diff < 1e-4
        with pytest.raises(nnopt.UsageError, match=r"needs the class __main__\.|Sequential importable") as caught:
            nnopt.compress_model(tmp_path / name, (X, y), quantize="int4", qat_epochs=1)
        assert str(caught.value).endswith("from the torch.export program inside compressed.nnz")
    # the structured prune made the network smaller: its convolution kept 2 of 4 channels
    assert [t.shape for k, t in nnopt.compress.read_compressed(tmp_path / "main-small" / "compressed.nnz")[0].items()
            if k.endswith("conv.weight")] == [torch.Size([2, 3, 3, 3])]


def test_a_module_torch_export_cannot_trace_says_so_in_one_line_and_keeps_its_state_dict(nets, tmp_path):
    X, y = images(120)
    with pytest.warns(UserWarning) as caught:
        nnopt.fit(nets.Untraceable(), (X, y), epochs=1, out=tmp_path / "run")
    messages = [str(w.message) for w in caught if PROGRAM in str(w.message)]
    assert len(messages) == 1 and "\n" not in messages[0]
    assert messages[0].startswith(f"{PROGRAM} not written: torch.export cannot trace Untraceable (")
    record = json.loads((tmp_path / "run" / "config.json").read_text())["model_record"]
    assert record["program"] is None and record["program_error"] == messages[0]
    assert not (tmp_path / "run" / PROGRAM).exists()
    state = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["state_dict"]
    assert set(state) == {"head.weight", "head.bias"}
    model, _ = nnopt.load_model(tmp_path / "run")  # its class is importable: rebuilt from the recipe
    assert type(model) is nets.Untraceable and torch.equal(model.head.weight, state["head.weight"])

"""The export check compares values, not only classes: a file that the TorchScript tracer wrote along one branch of a
Python `if` on tensor values predicts the same classes on most rows but other numbers, and is refused (exit 2, one
line), without taking the file's name."""

from __future__ import annotations

import inspect

import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

import nnopt
from nnopt.inference import load_predictor, run_exported
from nnopt.inference._export import probe_rows


class Branchy(nn.Module):
    """Halves its input when the row batch's mean is above 0.5: torch.export refuses the branch, tracing keeps one."""

    def __init__(self, in_features: int = 64, n_classes: int = 10):
        super().__init__()
        self.in_features, self.n_classes = in_features, n_classes
        self.linear = nn.Linear(in_features, n_classes)

    def forward(self, x):
        if x.mean() > 0.5:
            x = x * 0.5
        return self.linear(x)


@pytest.fixture(scope="module")
def branchy_run(tmp_path_factory):
    X, y = load_digits(return_X_y=True)
    run = tmp_path_factory.mktemp("runs") / "branchy"
    with pytest.warns(UserWarning, match="torch.export cannot trace Branchy"):
        nnopt.fit(Branchy(), (X.astype(np.float32), y), epochs=2, seed=0, threads=1, out=run)
    return run


def test_probe_rows_sweep_the_range_of_the_features(branchy_run):
    predictor = load_predictor(branchy_run)
    rows = probe_rows(predictor, 1000)
    assert rows.shape == (1000, 64)
    scaled = predictor.inputs(rows).numpy()  # digits are standard-scaled: random rows average about 0
    sweep = scaled[-100:]
    kept = predictor.preprocessing["x_std"] != 0  # constant pixels scale to 0 whatever the row
    assert np.allclose(sweep[:, kept], sweep[:, kept][:, :1], atol=1e-4)  # one point of the range per row
    assert sweep[0, kept].max() == pytest.approx(-3, abs=1e-3) and sweep[-1, kept].min() == pytest.approx(3, abs=1e-3)
    assert np.abs(scaled[:900].mean(axis=1)).max() < 0.5  # no random row reaches the branch


@pytest.mark.parametrize("format,suffix", [("onnx", ".onnx"), ("torchscript", ".pt")])
def test_a_file_traced_along_one_branch_is_refused_and_the_old_file_kept(run_cli, branchy_run, tmp_path, format,
                                                                         suffix):
    out = tmp_path / f"model{suffix}"
    out.write_bytes(b"an earlier export")
    code, stdout, err = run_cli("export", branchy_run, "--format", format, "--out", out)
    assert code == 2 and stdout == ""
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"error: {out} not written: on 1000 sampled rows its class probabilities differ from "
                           "nnopt's by up to "), err
    assert "control flow in the model's forward" in line and "torch.where or torch.cond" in line
    assert "\x1b" not in err and "def forward" not in err  # no terminal colours, no FX graph
    assert out.read_bytes() == b"an earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no staging file left behind
    with pytest.raises(nnopt.UsageError, match=r"not written: .* differ from nnopt's by up to (0\.\d+) "):
        nnopt.export(branchy_run, format, tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_a_traceable_module_exports_within_the_tolerance(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    result = nnopt.export(net, "onnx", tmp_path / "net.onnx", sample_shape=(64,))
    assert result.path == tmp_path / "net.onnx" and result.agreement == 1.0 and result.max_proba_diff < 1e-6
    rows = probe_rows(load_predictor(net, sample_shape=(64,)), 1000)
    with torch.no_grad():
        expected = net(torch.from_numpy(rows)).numpy()
    assert np.abs(run_exported(tmp_path / "net.onnx", "onnx", rows) - expected).max() < 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx"]


def test_a_regression_file_traced_along_one_branch_is_refused_in_target_units(tmp_path):
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    run = tmp_path / "diabetes"
    with pytest.warns(UserWarning, match="torch.export cannot trace Branchy"):
        nnopt.fit(Branchy(10, 1), (X.astype(np.float32), y.astype(np.float32)), epochs=5, seed=0, threads=1,
                  out=run)
    with pytest.raises(nnopt.UsageError, match=r"not written: on 1000 sampled rows its values differ from nnopt's by "
                                               r"up to [\d.e+]+ in target units \(allowed [\d.e-]+\); likely cause: "
                                               r"control flow"):
        nnopt.export(run, "torchscript", tmp_path / "diabetes.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["diabetes"]


# the same class as a module file of its own, for a process that imports it by name
BRANCHY_SOURCE = "import torch\nfrom torch import nn\n\n\n" + inspect.getsource(Branchy)


def test_on_the_command_line_the_fallback_warning_and_the_refusal_are_one_line_each(tmp_path, monkeypatch):
    name = f"branchy_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(BRANCHY_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__(name)
    X, y = load_digits(return_X_y=True)
    with pytest.warns(UserWarning, match="torch.export cannot trace Branchy"):
        nnopt.fit(module.Branchy(), (X.astype(np.float32), y), epochs=1, seed=0, threads=1, out=tmp_path / "run")
    sys.modules.pop(name, None)
    src = str(Path(nnopt.__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-m", "nnopt", "export", "run", "--format", "onnx", "--out", "b.onnx"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": f"{src}:{tmp_path}", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2, done.stderr
    assert lines[0].startswith("warning: torch.onnx's exporter (dynamo=True) could not export Deployed "
                               "(GuardOnDataDependentSymNode: Could not guard on data-dependent expression")
    assert lines[0].endswith("exported it with the TorchScript exporter")
    assert lines[1].startswith("error: b.onnx not written: on 1000 sampled rows its class probabilities differ")
    assert not (tmp_path / "b.onnx").exists()

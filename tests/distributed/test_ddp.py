"""Synchronous data parallel (DDP) with real processes on 127.0.0.1: the same weights as one process, rank 0's
run directory, torchrun on two "nodes", a killed rank restarted from the checkpoint, and bad input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

import nnopt
from nnopt.distributed import DDPParallel
from nnopt.distributed._launch import KILL_EPOCH_ENV, KILL_RANK_ENV
from nnopt.train import fit as fit_one_process
from nnopt.train._batches import make_source
from nnopt.train._evaluate import evaluate as _evaluate

RUN_FILES = {"config.json", "metrics.jsonl", "model.pt", "checkpoint.pt", "summary.json", "report.html", "curves.png"}


HANG_LIMIT_S = 180  # the no_hang fixture in conftest.py


def _max_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return max(float((x - y).abs().max()) for x, y in pairs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loopback_env() -> dict[str, str]:
    """Keep gloo on the loopback interface (torchrun's workers would otherwise use the hostname's address)."""
    names = [name for _, name in socket.if_nameindex()]
    lo = next((n for n in names if n in ("lo", "lo0")), None)
    return {"GLOO_SOCKET_IFNAME": lo} if lo else {}


def _history(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("model, data, optimizer, batch", [
    ("linear", "linear", "gd", "full"),  # batch gradient descent: 700 rows, 350 per process
    ("mlp:32", "digits", "sgd", 64),  # 1,257 rows: the last batch (41) splits 20 / 21
])
def test_two_processes_train_the_weights_of_one(model, data, optimizer, batch):
    # Measured differences: 9e-8 (gd) and 1.5e-8 (sgd): float32 sums in another order, nothing more.
    kwargs = dict(optimizer=optimizer, batch_size=batch, epochs=3, seed=0, device="cpu")  # a GPU adds its rounding
    one = fit_one_process(model, data, **kwargs)
    two = nnopt.fit(model, data, nproc=2, **kwargs)
    assert _max_diff(one.model, two.model) <= 1e-6
    assert [r["train_loss"] for r in two.history] == pytest.approx([r["train_loss"] for r in one.history], rel=1e-6)
    assert two.config["batch_size"] == one.config["batch_size"]  # the global batch is --batch-size
    assert two.config["world_size"] == 2 and two.config["nproc"] == 2


def test_every_rank_scores_a_share_of_the_rows_and_the_metrics_are_those_of_one_process():
    # 3 processes on 1,257 training rows (419 each), 270 val, 270 test; BatchNorm: every rank must score with
    # rank 0's running statistics, which evaluating the returned model in this process also uses
    three = nnopt.fit("mlp:32:bn", "digits", optimizer="adam", epochs=2, seed=0, nproc=3)
    for split in ("train", "val", "test"):
        again = _evaluate(three.model, torch.nn.CrossEntropyLoss(), three.data,
                          make_source(three.data, split, torch.device("cpu"), (64,)), three.metrics[split].keys(),
                          (2, 0))
        assert again["accuracy"] == three.metrics[split]["accuracy"]
        assert again["loss"] == pytest.approx(three.metrics[split]["loss"], rel=1e-6)
    one = fit_one_process("mlp:32", "digits", optimizer="sgd", epochs=2, seed=0, device="cpu")
    two = nnopt.fit("mlp:32", "digits", optimizer="sgd", epochs=2, seed=0, nproc=2, device="cpu")
    for a, b in zip(one.history, two.history, strict=True):
        assert a["val_accuracy"] == b["val_accuracy"] and a["train_accuracy"] == b["train_accuracy"]
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-6)


def test_gather_rows_puts_every_block_in_rank_order():
    blocks = {r: torch.arange(10 * r // 3, 10 * (r + 1) // 3, dtype=torch.float32)[:, None] for r in range(3)}
    assert [len(b) for b in blocks.values()] == [3, 3, 4]
    parallel = DDPParallel(0, 3, 3, torch.device("cpu"))
    gathered = []

    def fake_all_gather(out, block):  # what gloo does: out[r] = rank r's (padded) block
        for r, target in enumerate(out):
            target.zero_()
            target[:len(blocks[r])] = blocks[r]
        gathered.append(block.shape)

    original = torch.distributed.all_gather
    torch.distributed.all_gather = fake_all_gather
    try:
        rows = parallel.gather_rows(blocks[0], 10)
    finally:
        torch.distributed.all_gather = original
    assert gathered == [(4, 1)]  # padded to the largest block
    assert torch.equal(rows[:, 0], torch.arange(10, dtype=torch.float32))


def test_shards_cover_every_row_once_and_weights_restore_the_global_mean():
    torch.manual_seed(0)
    for world in (2, 3):
        for n in (1, 2, 5, 7, 64):
            xb, yb = torch.randn(n, 3), torch.randn(n)
            parts = [DDPParallel(rank, world, world, torch.device("cpu")).shard(xb, yb, n) for rank in range(world)]
            kept = torch.cat([x for x, _, w in parts if w > 0])
            assert torch.equal(kept, xb)  # contiguous slices, in order, each row once
            # DDP averages the ranks' gradients: mean_r(w_r * local_mean_r) must be the global mean
            mean = sum(w * y.mean() for _, y, w in parts if w > 0) / world
            assert float(mean) == pytest.approx(float(yb.mean()), rel=1e-6, abs=1e-7)


def test_cli_two_processes_write_the_run_directory_of_one(run_cli, tmp_path):
    args = ["train", "--data", "digits", "--model", "mlp:64", "--epochs", "8", "--json"]
    code, out, err = run_cli(*args, "--out", tmp_path / "one")
    assert code == 0, err
    code, out2, err2 = run_cli(*args, "--nproc", "2", "--out", tmp_path / "two")
    assert code == 0 and err2 == "", err2  # the parent prints rank 0's result and nothing else
    one, two = json.loads(out)["metrics"]["test"], json.loads(out2)["metrics"]["test"]
    print(f"test accuracy: 1 process {one['accuracy']:.4f}, 2 processes {two['accuracy']:.4f}")
    assert abs(two["accuracy"] - one["accuracy"]) <= 0.02
    run = tmp_path / "two"
    assert {p.name for p in run.iterdir()} == RUN_FILES  # rank 1 wrote nothing, no stray files
    config = json.loads((run / "config.json").read_text())
    assert (config["nproc"], config["world_size"], config["strategy"], config["batch_size"]) == (2, 2, "ddp", 64)
    assert [row["epoch"] for row in _history(run)] == list(range(1, 9))
    model, meta = nnopt.load_model(run)
    assert meta["task"] == "classification"
    code, out, err = run_cli("report", run)
    assert code == 0, err


def test_torchrun_two_nodes_on_loopback_and_a_restart(tmp_path):
    run = tmp_path / "run"  # both "nodes" name the same directory, as on a shared filesystem: rank 0 writes it
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}",
               "--rdzv-id", f"nnopt-test-{os.getpid()}", "--local-addr", "127.0.0.1",  # MASTER_ADDR=127.0.0.1
               "--max-restarts", "1",
               "-m", "nnopt", "train", "--data", "digits", "--model", "mlp:32", "--epochs", "3", "--out", str(run),
               "--device", "cpu", "--json"]  # both "nodes" are this machine: they could not each have its GPU 0
    # rank 1 SIGKILLs itself after epoch 1 of the first attempt: torchrun restarts both nodes' workers, which
    # rejoin (a fresh key prefix per restart) and resume from rank 0's checkpoint
    env = {**os.environ, "OMP_NUM_THREADS": "1", KILL_RANK_ENV: "1", KILL_EPOCH_ENV: "1", **_loopback_env()}
    logs = [(tmp_path / f"node{n}.out", tmp_path / f"node{n}.err") for n in range(2)]  # files: no pipe fills up
    nodes = []
    for out, err in logs:
        with open(out, "w") as stdout, open(err, "w") as stderr:
            nodes.append(subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env, cwd=tmp_path))
    try:
        for node in nodes:
            node.wait(timeout=150)
    finally:
        for node in nodes:
            node.kill()
    outputs = [(out.read_text(), err.read_text()[-3000:]) for out, err in logs]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    printed = [out for out, _ in outputs if out.strip()]
    assert len(printed) == 1, outputs  # rank 0 prints the summary; the other rank prints nothing
    assert json.loads(printed[0])["epochs"] == 3
    assert {p.name for p in run.iterdir()} == RUN_FILES
    assert [row["epoch"] for row in _history(run)] == [1, 2, 3]  # every epoch once
    assert json.loads((run / "config.json").read_text())["world_size"] == 2


def test_a_killed_rank_ends_the_run_with_one_line(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv(KILL_RANK_ENV, "1")
    monkeypatch.setenv(KILL_EPOCH_ENV, "2")
    code, out, err = run_cli("train", "--data", "digits", "--model", "mlp:32", "--epochs", "4", "--nproc", "2",
                             "--out", tmp_path / "run", "--json")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "rank 1 was killed by SIGKILL" in err and "--resume" in err, err
    assert not (tmp_path / "run" / "model.pt").exists()


@pytest.mark.parametrize("strategy", ["ddp", "local-sgd"])
def test_a_killed_rank_is_restarted_from_the_checkpoint(run_cli, tmp_path, monkeypatch, strategy):
    monkeypatch.setenv(KILL_RANK_ENV, "1")  # rank 1 SIGKILLs itself after epoch 2, in the first attempt only
    monkeypatch.setenv(KILL_EPOCH_ENV, "2")
    code, out, err = run_cli("train", "--data", "digits", "--model", "mlp:32", "--epochs", "6", "--nproc", "2",
                             "--strategy", strategy, "--max-restarts", "1", "--out", tmp_path / "run", "--json")
    assert code == 0 and err == "", err
    run = tmp_path / "run"
    assert [row["epoch"] for row in _history(run)] == list(range(1, 7))  # every epoch once
    assert {p.name for p in run.iterdir()} >= RUN_FILES
    reference = fit_one_process("mlp:32", "digits", epochs=6)
    restarted = json.loads(out)["metrics"]["test"]["accuracy"]
    assert abs(restarted - reference.metrics["test"]["accuracy"]) <= 0.02


@pytest.mark.parametrize("args, message", [
    (["--nproc", "0"], "--nproc must be an integer >= 1; got 0"),
    (["--nproc", "2", "--max-restarts", "1"], "--max-restarts needs --out DIR"),
    (["--nproc", "2", "--strategy", "hogwid"], "unknown --strategy 'hogwid'; did you mean 'hogwild'?"),
    (["--max-restarts", "-1", "--out", "r"], "--max-restarts must be an integer >= 0; got -1"),
])
def test_bad_flags_exit_2_with_one_line_and_write_nothing(run_cli, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("train", "--data", "digits", *args)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_nproc_under_torchrun_is_an_error(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, out, err = run_cli("train", "--data", "digits", "--nproc", "2", "--out", tmp_path / "r")
    assert code == 2 and "under torchrun use --nproc-per-node" in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_more_processes_than_training_rows(run_cli, tmp_path):
    data = tmp_path / "tiny.csv"
    data.write_text("a,b,y\n" + "".join(f"{i},{i + 1},{i % 2}\n" for i in range(4)))  # 2 training rows
    code, out, err = run_cli("train", "--data", data, "--val-fraction", "0.25", "--test-fraction", "0.25",
                             "--nproc", "3", "--out", tmp_path / "r")
    assert code == 2 and err == "error: 3 processes but only 2 training samples; use at most 2 processes\n", err
    assert not (tmp_path / "r").exists()


def test_unreachable_rendezvous_times_out_with_one_line(tmp_path):
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port()), "NNOPT_DIST_TIMEOUT": "3"}  # nobody listens there
    # the subprocess timeout turns a hang into a failure (it equals the default rendezvous timeout, so ignoring
    # NNOPT_DIST_TIMEOUT fails too); how long giving up takes is measured in benchmarks/failures.py
    done = subprocess.run([sys.executable, "-m", "nnopt", "train", "--data", "digits", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert done.stderr.count("\n") == 1 and "cannot reach the rendezvous at 127.0.0.1:" in done.stderr
    assert " within 3 s " in done.stderr and "NNOPT_DIST_TIMEOUT" in done.stderr
    assert not (tmp_path / "r").exists()


def test_strategy_hogwild_is_wired_to_train_hogwild(run_cli, tmp_path):
    code, out, err = run_cli("train", "--data", "digits", "--model", "mlp:16", "--optimizer", "sgd", "--epochs", "1",
                             "--strategy", "hogwild", "--nproc", "2", "--json", "--out", tmp_path / "r")
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "config.json").read_text())["strategy"] == "hogwild"

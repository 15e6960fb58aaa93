"""Where the time of a structured-pruned small CNN goes, in torch eager and in ONNX Runtime, one thread.

The network is compress_any.py's ResidualCNN (a stem conv + BatchNorm + ReLU + 2x2 max pool, two residual blocks
of two 3x3 convs with BatchNorm, global average pooling, a linear head) at --width, and the same network pruned
--amount of its channels through nnopt's structured pruning (torch-pruning's dependency graph). Latency does not
depend on the weights' values, so the networks are not trained here: seeded initialisation, BatchNorm statistics
drawn at random (so that folding them is not the identity). Input: batch --batch of 3x32x32.

Parts (--parts, comma-separated):
  ops      torch.profiler: self CPU ms per forward by operator (conv by input shape), unpruned and pruned;
  layouts  forward ms (medians of --rounds interleaved rounds of 10 calls) and minor page faults per forward of
           both networks as written, BatchNorm folded into the convs (torch.fx.experimental.optimization.fuse),
           in channels_last, and both;
  convs    one 3x3 conv c -> c on 64x16x16 (batch 64 of 16x16 maps), c from 6 to 32: ms and GMAC/s;
  ort      ONNX Runtime's per-node profile (enable_profiling), ms per run by operator, of the fp32 and int8 files
           (nnopt's quantize_onnx_int8, calibrated on 256 grating images) of both networks at batch 1 and
           --batch, the int8 file both as nnopt writes it now and with only the thin convolutions left fp32 (the
           rule before 2026-12-04); the operators in each file after ONNX Runtime's graph optimisation; and the
           latency of every file (nnopt's ort_latency_ms, medians of --rounds interleaved rounds of 10 runs).

    PYTHONPATH=src .venv/bin/python benchmarks/prune_latency.py [--width 16] [--amount 0.5] [--batch 64]
        [--rounds 7] [--parts ops,layouts,convs,ort] [--free-first MIB]
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from compress_any import ResidualCNN, flat, grating_images
from nnopt.compress import _export, export_onnx, ort_latency_ms, quantize_onnx_int8
from nnopt.compress._export import ort_session
from nnopt.compress._prune_graph import prune_graph

SHAPE = (3, 32, 32)


def networks(width: int, amount: float) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    net = ResidualCNN(width=width).eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2), m.weight.data.uniform_(0.2, 2)
    return net, prune_graph(net, amount, torch.randn(2, *SHAPE)).eval()


def part_ops(net: nn.Module, pruned: nn.Module, batch: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    x = torch.randn(batch, *SHAPE)
    for name, model in (("unpruned", net), ("pruned", pruned)):
        with torch.inference_mode():
            for _ in range(5):
                model(x)
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                for _ in range(20):
                    model(x)
        rows = collections.defaultdict(float)
        for event in prof.key_averages(group_by_input_shape=True):
            label = event.key if event.key != "aten::mkldnn_convolution" else \
                f"conv {event.input_shapes[0]} x {event.input_shapes[1]}"
            rows[label] += event.self_cpu_time_total / 20 / 1000
        total = sum(rows.values())
        top = sorted(rows.items(), key=lambda kv: -kv[1])[:8]
        print(f"ops {name} batch {batch}: {total:.2f} ms per forward; "
              + "; ".join(f"{k} {v:.2f}" for k, v in top), flush=True)


def part_layouts(net: nn.Module, pruned: nn.Module, batch: int, rounds: int) -> None:
    from torch.fx.experimental.optimization import fuse

    x = torch.randn(batch, *SHAPE)
    variants = {}
    for name, model in (("unpruned", net), ("pruned", pruned)):
        variants[(name, "as written")] = model
        variants[(name, "BN folded")] = fuse(copy.deepcopy(model))
        variants[(name, "channels_last")] = copy.deepcopy(model).to(memory_format=torch.channels_last)
        variants[(name, "BN folded + channels_last")] = \
            fuse(copy.deepcopy(model)).to(memory_format=torch.channels_last)
    inputs = {k: x.contiguous(memory_format=torch.channels_last) if "channels_last" in k[1] else x for k in variants}
    times: dict = collections.defaultdict(list)
    faults: dict = collections.defaultdict(list)
    with torch.inference_mode():
        for key, model in variants.items():  # the same function, whatever the layout or folding
            reference = net if key[0] == "unpruned" else pruned
            assert torch.allclose(model(inputs[key]), reference(x), atol=1e-4), key
        for _ in range(rounds):
            for key, model in variants.items():
                for _ in range(2):
                    model(inputs[key])
                before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                calls = []
                for _ in range(10):
                    start = time.perf_counter_ns()
                    model(inputs[key])
                    calls.append(time.perf_counter_ns() - start)
                faults[key].append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
                times[key].append(statistics.median(calls) / 1e6)
    med = {k: statistics.median(v) for k, v in times.items()}
    for form in ("as written", "BN folded", "channels_last", "BN folded + channels_last"):
        full, small = med[("unpruned", form)], med[("pruned", form)]
        full_faults, small_faults = (statistics.median(faults[(n, form)]) for n in ("unpruned", "pruned"))
        print(f"layouts batch {batch} {form}: unpruned {full:.2f} ms ({full_faults:.0f} page faults), pruned "
              f"{small:.2f} ms ({small_faults:.0f} page faults), {full / small:.2f}x; pruned against the unpruned "
              f"as written {med[('unpruned', 'as written')] / small:.2f}x", flush=True)


def part_convs(rounds: int) -> None:
    times: dict = collections.defaultdict(list)
    with torch.inference_mode():
        for _ in range(rounds):
            for c in range(6, 34, 2):
                x = torch.randn(64, c, 16, 16)
                conv = nn.Conv2d(c, c, 3, padding=1, bias=False).eval()
                for _ in range(3):
                    conv(x)
                calls = []
                for _ in range(10):
                    start = time.perf_counter_ns()
                    conv(x)
                    calls.append(time.perf_counter_ns() - start)
                times[c].append(statistics.median(calls) / 1e6)
    print("convs 3x3 c->c, batch 64 of 16x16: " + "; ".join(
        f"{c}: {statistics.median(v):.2f} ms {64 * 256 * c * c * 9 / statistics.median(v) / 1e6:.0f} GMAC/s"
        for c, v in times.items()), flush=True)


def _thin_convs_only(path: Path, min_channels: int) -> list[str]:
    """The rule before 2026-12-04: only the Conv nodes thinner than min_channels stay fp32."""
    names = _rule_now(path, min_channels)
    import onnx

    kinds = {n.name: n.op_type for n in onnx.load(str(path)).graph.node}
    return [n for n in names if kinds.get(n) == "Conv"]


_rule_now = _export._fp32_nodes


def _profile(path: Path, batch: int, work: Path) -> tuple[float, dict]:
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.enable_profiling = True
    options.profile_file_prefix = str(work / "profile")
    options.optimized_model_filepath = str(work / "optimized.onnx")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((batch, int(np.prod(SHAPE))), dtype=np.float32)
    for _ in range(30):
        session.run(None, {"input": x})
    events = json.loads(Path(session.end_profiling()).read_text())
    per_op: dict = collections.defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"] / 30 / 1000
    optimized = collections.Counter(n.op_type for n in onnx.load(str(work / "optimized.onnx")).graph.node)
    return sum(per_op.values()), {"ms": dict(sorted(per_op.items(), key=lambda kv: -kv[1])), "nodes": optimized}


def part_ort(net: nn.Module, pruned: nn.Module, batch: int, rounds: int) -> None:
    X, _ = grating_images(256)
    calibration = X.reshape(len(X), -1)
    sessions = {}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        for name, model in (("unpruned", net), ("pruned", pruned)):
            fp32 = export_onnx(flat(model, SHAPE), int(np.prod(SHAPE)), work / f"{name}.onnx")
            files = {"fp32": fp32, "int8": quantize_onnx_int8(fp32, work / f"{name}.int8.onnx", calibration)}
            _export._fp32_nodes = _thin_convs_only
            try:
                files["int8, thin convs alone fp32"] = quantize_onnx_int8(fp32, work / f"{name}.old.onnx", calibration)
            finally:
                _export._fp32_nodes = _rule_now
            for tag, path in files.items():
                for b in (1, batch):
                    total, detail = _profile(path, b, work)
                    top = "; ".join(f"{k} {v:.3f}" for k, v in list(detail["ms"].items())[:6])
                    print(f"ort {name} {tag} batch {b}: {total:.3f} ms in kernels; {top}", flush=True)
                print(f"ort {name} {tag} nodes after optimisation: {dict(detail['nodes'])}", flush=True)
                sessions[(name, tag)] = ort_session(path)
    times: dict = collections.defaultdict(list)
    for _ in range(rounds):  # interleaved: every file at every batch size in each round
        for key, session in sessions.items():
            for b in (1, batch):
                times[key + (b,)].append(ort_latency_ms(session, int(np.prod(SHAPE)), batch=b, repeats=10, warmup=2))
    for (name, tag, b), values in times.items():
        fp32 = statistics.median(times[(name, "fp32", b)])
        print(f"ort latency {name} {tag} batch {b}: {statistics.median(values):.3f} ms "
              f"({statistics.median(values) / fp32:.2f}x the fp32 file)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--amount", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--parts", default="ops,layouts,convs,ort")
    parser.add_argument("--free-first", type=int, default=0, metavar="MIB",
                        help="allocate and free a tensor of MIB MiB before anything else, as training does (glibc "
                             "then keeps freed blocks up to that size instead of handing them back)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.free_first:
        del_me = torch.ones(args.free_first * 2**18)  # float32: 4 bytes each
        del del_me
    net, pruned = networks(args.width, args.amount)
    print(f"width {args.width}, pruned {args.amount:g}: channels "
          f"{[m.out_channels for m in net.modules() if isinstance(m, nn.Conv2d)]} -> "
          f"{[m.out_channels for m in pruned.modules() if isinstance(m, nn.Conv2d)]}", flush=True)
    parts = args.parts.split(",")
    if "ops" in parts:
        part_ops(net, pruned, args.batch)
    if "layouts" in parts:
        part_layouts(net, pruned, args.batch, args.rounds)
    if "convs" in parts:
        part_convs(args.rounds)
    if "ort" in parts:
        part_ort(net, pruned, args.batch, args.rounds)


if __name__ == "__main__":
    main()

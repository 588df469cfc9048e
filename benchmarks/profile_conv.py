"""Where the time of one task step on the Leap Omniglot net goes: an op-level
profile of tfmeta's compiled inner loop (``tf.profiler``) beside PyTorch's
standard loop (``torch.profiler``), in milliseconds per step.

    python benchmarks/profile_conv.py [--steps 20] [--out benchmarks/results]

Times are summed over both compute threads (so they add up to more than the
wall time of a step on 2 cores) and grouped by what the op does. The
profilers add overhead of their own: read the table for shares, and
``run.py`` for speeds.
"""

import argparse
import collections
import glob
import os
import pathlib
import re
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as tfmeta does
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

import benchmarks.run as bench  # noqa: E402

# (group, TF op types, PyTorch op names) - first match wins.
GROUPS = [
    ("conv forward", {"FusedConv2D", "Conv2D"},
     {"aten::mkldnn_convolution", "aten::convolution", "aten::_convolution",
      "aten::conv2d"}),
    ("conv backward (input)", {"Conv2DBackpropInput"}, set()),
    ("conv backward (filter)", {"Conv2DBackpropFilter",
                                "Conv2DBackpropFilterWithBias"}, set()),
    ("conv backward (both, PyTorch)", set(),
     {"aten::convolution_backward", "aten::mkldnn_convolution_backward"}),
    ("bias gradient", {"BiasAddGrad"}, set()),
    ("max-pool forward", {"MaxPool"}, {"aten::max_pool2d_with_indices",
                                       "aten::max_pool2d"}),
    ("max-pool backward", {"MaxPoolGrad"},
     {"aten::max_pool2d_with_indices_backward"}),
    ("batch norm (forward and backward)", set(),
     {"aten::native_batch_norm", "aten::native_batch_norm_backward",
      "aten::batch_norm", "aten::_batch_norm_impl_index"}),
    ("ReLU (forward and backward)", {"Relu", "ReluGrad"},
     {"aten::relu", "aten::threshold_backward", "aten::clamp_min"}),
    ("matmul (head)", {"MatMul", "FusedMatMul"},
     {"aten::addmm", "aten::mm"}),
]


def group_of(op, framework):
    if framework == "tf":  # oneDNN's rewrites: _MklNativeConv2D -> Conv2D
        op = re.sub(r"^_Mkl(Native)?", "", op).lstrip("_")
    for name, tf_ops, torch_ops in GROUPS:
        if op in (tf_ops if framework == "tf" else torch_ops):
            return name
    return "everything else"


def profile_tf(steps):
    """Milliseconds per step by group, from the compute threads' op events."""
    w = bench.WORKLOADS["omniglot-conv"]()
    run = bench.tfmeta_loop(w, steps)
    run()  # trace and warm up
    logdir = tempfile.mkdtemp(prefix="tfmeta_profile_")
    tf.profiler.experimental.start(logdir)
    start = time.perf_counter()
    run()
    wall = time.perf_counter() - start
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    path = glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[-1]
    space.ParseFromString(pathlib.Path(path).read_bytes())
    totals = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                match = re.fullmatch(r"(.+):(\w+)", name)
                if not match or "::" in name:
                    continue  # executor bookkeeping, not an op
                op = match.group(2)
                key = group_of(op, "tf")
                if key == "everything else" and "batch_normalization" in match.group(1):
                    key = "batch norm (forward and backward)"
                totals[key] += event.duration_ps / 1e9 / steps
    return totals, 1e3 * wall / steps


def profile_torch(steps):
    import torch
    from torch.profiler import ProfilerActivity, profile
    w = bench.WORKLOADS["omniglot-conv"]()
    run = bench.torch_standard_loop(w, steps)
    run()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        run()
        wall = time.perf_counter() - start
    totals = collections.Counter()
    for avg in prof.key_averages():
        totals[group_of(avg.key, "torch")] += avg.self_cpu_time_total / 1e3 / steps
    del torch
    return totals, 1e3 * wall / steps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    tf_ms, tf_wall = profile_tf(args.steps)
    try:
        torch_ms, torch_wall = profile_torch(args.steps)
    except ImportError:
        torch_ms, torch_wall = collections.Counter(), float("nan")
    groups = [g for g, _, _ in GROUPS] + ["everything else"]
    lines = [
        f"Op-level profile, Leap Omniglot net, batch 20, {args.steps} steps: "
        "`python benchmarks/profile_conv.py`. Milliseconds per step summed "
        "over compute threads (TF: op events of the `tf_Compute` threads; "
        "PyTorch: self CPU time). Wall time per step while profiling: "
        f"TF {tf_wall:.1f} ms, PyTorch {torch_wall:.1f} ms.", "",
        "| where | tfmeta compiled loop, ms/step | PyTorch standard loop, ms/step |",
        "|---|---|---|"]
    for g in groups:
        if tf_ms.get(g) or torch_ms.get(g):
            lines.append(f"| {g} | {tf_ms.get(g, 0):.2f} | {torch_ms.get(g, 0):.2f} |")
    lines.append(f"| **total** | {sum(tf_ms.values()):.2f} | "
                 f"{sum(torch_ms.values()):.2f} |")
    bench.save_markdown(args.out, "profile_conv.md", lines)


if __name__ == "__main__":
    main()

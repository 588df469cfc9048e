"""Where the time of a sine-MLP task step goes, and what Leap's hook adds:
the ops that TensorFlow's executor runs for every step of tfmeta's compiled
inner loop on the Reptile sine MLP (1-64-64-1, batch 10), with and without
Leap's per-step hook, beside the time per step.

    python benchmarks/profile_sine.py [--steps 2000] [--rounds 5] [--out benchmarks/results]

The ops per step are the nodes of the loop body in the graph TensorFlow
actually runs (after Grappler's rewrites and the lowering of the while loop,
from ``run_metadata``'s post-optimization graph): every one of them runs once
per step. (``tf.profiler``'s trace does not help here: it records only the
expensive kernels, and runs the cheap ops inline, unrecorded.) A step does
~0.25 MFLOP, a few microseconds of arithmetic at this machine's matmul
peak, so if the time per step follows the number of ops rather than the
FLOPs, executor overhead per op is what bounds the loop. The whole-loop XLA
contenders (one compiled cluster, no per-op executor) are timed only.
"""

import argparse
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as tfmeta does
os.environ["TFMETA_BENCH_NO_TORCH"] = "1"
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tensorflow as tf  # noqa: E402

import benchmarks.run as bench  # noqa: E402
import tfmeta  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    w = bench.WORKLOADS["sine-mlp"]()
    leap = tfmeta.Leap(w.tf_model())
    init = tfmeta.leap.flat_state
    hook = leap.flat_hook()
    contenders = {
        "plain loop": bench.tfmeta_loop(w, args.steps),
        "loop + Leap hook": bench.tfmeta_loop(w, args.steps,
                                              hook, init),
        "plain loop, whole loop XLA": bench.tfmeta_loop(
            w, args.steps, jit_compile=True),
        "loop + Leap hook, whole loop XLA": bench.tfmeta_loop(
            w, args.steps, hook, init, jit_compile=True),
    }
    # first calls (graphs are recorded when a function is instantiated)
    ops = {name: bench.graph_ops(run, r"^while/body/")
           for name, run in contenders.items()
           if "XLA" not in name}
    times = bench.race(contenders, args.rounds)
    mflop = bench.mlp_flops_per_step() / 1e6
    lines = [
        "Ops per step of the compiled sine-MLP inner loop (1-64-64-1, "
        f"batch 10, {args.steps} steps, {mflop:.2f} MFLOP per step): "
        "`python benchmarks/profile_sine.py`; time per step: medians of "
        f"{args.rounds} alternating rounds. 'ops per step': nodes of the "
        "while-loop body in the post-optimization graph.", "",
        "| contender | µs/step | ops per step | µs per op |",
        "|---|---|---|---|"]
    for name, seconds in times.items():
        us = 1e6 * seconds / args.steps
        n = sum(ops[name].values()) if name in ops else None
        lines.append(f"| {name} | {us:.1f} | {n if n else '—'} | "
                     + (f"{us / n:.2f}" if n else "—") + " |")
    a, b = ops["plain loop"], ops["loop + Leap hook"]
    extra = {k: b.get(k, 0) - a.get(k, 0) for k in set(a) | set(b)}
    lines += ["", "Ops of the plain loop's step by type: " + ", ".join(
        f"{k} {v}" for k, v in a.most_common()) + ".",
        "", "What Leap's hook adds to every step: " + ", ".join(
            f"{k} {v:+d}" for k, v in sorted(extra.items(),
                                             key=lambda kv: -abs(kv[1]))
            if v) + f" ({sum(b.values()) - sum(a.values()):+d} ops).",
        "", "Marginal cost of the hook's ops: "
        f"{1e6 * (times['loop + Leap hook'] - times['plain loop']) / args.steps / max(sum(b.values()) - sum(a.values()), 1):.2f}"
        " µs per op per step."]
    for plain, hooked in (("plain loop", "loop + Leap hook"),
                          ("plain loop, whole loop XLA",
                           "loop + Leap hook, whole loop XLA")):
        lines.append(f"\n{hooked} over {plain}: "
                     f"{100 * (times[hooked] / times[plain] - 1):+.1f} %.")
    bench.save_markdown(args.out, "profile_sine.md", lines)


if __name__ == "__main__":
    main()

"""What Leap's on-the-fly meta-gradient (eq. 8, accumulated after every task
step) costs on top of the plain compiled inner loop: the loop alone, with
Leap's hook, and with the hook compiled as one XLA cluster, alternating in
one process (medians of ``--rounds``); for the sine MLP also the whole loop
compiled with XLA, with and without the hook (overhead against the XLA plain
loop).

    python benchmarks/leap_hook.py [--rounds 15]

Prints task steps per second and the overhead over the plain loop for the
Omniglot conv net (50 steps) and the sine MLP (200 steps); the workloads
are those of ``run.py``.
"""

import argparse
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as tfmeta does
os.environ["TFMETA_BENCH_NO_TORCH"] = "1"
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import tensorflow as tf  # noqa: E402

import benchmarks.run as bench  # noqa: E402
import tfmeta  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    for name, steps in (("omniglot-conv", 50), ("sine-mlp", 200)):
        w = bench.WORKLOADS[name]()
        leap = tfmeta.Leap(w.tf_model())
        init = tfmeta.leap.flat_state
        hook = leap.flat_hook()
        contenders = {
            "plain loop": bench.tfmeta_loop(w, steps),
            "loop + Leap hook": bench.tfmeta_loop(
                w, steps, hook, init),
            "loop + Leap hook (XLA)": bench.tfmeta_loop(
                w, steps, tf.function(hook, jit_compile=True),
                init),
        }
        if name == "sine-mlp":  # XLA is 15-20x slower for the conv net
            contenders["plain loop, whole loop XLA"] = bench.tfmeta_loop(
                w, steps, jit_compile=True)
            contenders["loop + Leap hook, whole loop XLA"] = bench.tfmeta_loop(
                w, steps, hook, init, jit_compile=True)
            per_tensor = lambda params: (  # noqa: E731
                [tf.zeros_like(p) for p in params], tf.zeros([]))
            per_tensor_hook = lambda state, i, *args: (  # noqa: E731
                tfmeta.leap.pull_forward_increment(state, *args,
                                                   **leap.leap_options()))
            contenders["loop + per-tensor hook, whole loop XLA"] = \
                bench.tfmeta_loop(w, steps, per_tensor_hook,
                                  per_tensor, jit_compile=True)
        times = bench.race(contenders, args.rounds)
        for contender, seconds in times.items():
            base = ("plain loop, whole loop XLA" if "whole loop XLA" in contender
                    else "plain loop")
            over = 100 * (seconds / times[base] - 1)
            print(f"{name:14s} {contender:34s} {steps / seconds:9.1f} steps/s "
                  f"({over:+.1f} %)", flush=True)


if __name__ == "__main__":
    main()

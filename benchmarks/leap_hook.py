"""What Leap's on-the-fly meta-gradient (eq. 8, accumulated after every task
step) costs on top of the plain compiled inner loop: the loop alone, with
Leap's hook (``Leap.flat_hook``) and with the hook compiled alone as one XLA
cluster, alternating in one process (medians of
``--rounds``, and the spread of the per-round overheads); for the sine MLP
also the whole loop compiled with XLA, with and without the hook (overhead
against the XLA plain loop).

    python benchmarks/leap_hook.py [--rounds 15] [--only sine-mlp]

Prints task steps per second and the overhead over the plain loop for the
Omniglot conv net (50 steps) and the sine MLP (200 steps); the workloads
are those of ``run.py``.
"""

import argparse
import functools
import os
import pathlib
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as tfmeta does
os.environ["TFMETA_BENCH_NO_TORCH"] = "1"
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import tensorflow as tf  # noqa: E402

import benchmarks.run as bench  # noqa: E402
import tfmeta  # noqa: E402


def race(contenders, rounds):
    """Seconds of each contender in every round (alternating, rotated
    order, after a warm-up): ``{name: [seconds per round]}``."""
    for run in contenders.values():
        run()
    times = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - start)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--only", choices=("omniglot-conv", "sine-mlp"))
    args = parser.parse_args(argv)
    with open("/proc/loadavg") as f:
        print("load average at start:", f.read().split()[0], flush=True)
    for name, steps in (("omniglot-conv", 50), ("sine-mlp", 200)):
        if args.only and name != args.only:
            continue
        w = bench.WORKLOADS[name]()
        leap = tfmeta.Leap(w.tf_model())
        init = tfmeta.leap.flat_state
        plain_hook = functools.partial(tfmeta.leap.flat_increment,
                                       **leap.leap_options())
        xla_hook = tf.function(plain_hook, jit_compile=True)
        contenders = {
            "plain loop": bench.tfmeta_loop(w, steps),
            "loop + Leap hook": bench.tfmeta_loop(
                w, steps, leap.flat_hook(), init),
            "loop + Leap hook (XLA)": bench.tfmeta_loop(
                w, steps, lambda s, i, *a: xla_hook(s, *a), init),
        }
        if name == "sine-mlp":  # XLA is 15-20x slower for the conv net
            contenders["plain loop, whole loop XLA"] = bench.tfmeta_loop(
                w, steps, jit_compile=True)
            contenders["loop + Leap hook, whole loop XLA"] = bench.tfmeta_loop(
                w, steps, leap.flat_hook(), init, jit_compile=True)
            per_tensor = lambda params: (  # noqa: E731
                [tf.zeros_like(p) for p in params], tf.zeros([]))
            per_tensor_hook = lambda state, i, *args: (  # noqa: E731
                tfmeta.leap.pull_forward_increment(state, *args,
                                                   **leap.leap_options()))
            contenders["loop + per-tensor hook, whole loop XLA"] = \
                bench.tfmeta_loop(w, steps, per_tensor_hook,
                                  per_tensor, jit_compile=True)
        times = race(contenders, args.rounds)
        for contender, seconds in times.items():
            base = times["plain loop, whole loop XLA" if "whole loop XLA"
                         in contender else "plain loop"]
            # overhead per round, against the base of the same round
            over = sorted(100 * (a / b - 1) for a, b in zip(seconds, base))
            print(f"{name:14s} {contender:40s} "
                  f"{steps / statistics.median(seconds):9.1f} steps/s "
                  f"({statistics.median(over):+.1f} %, rounds {over[0]:+.1f}"
                  f" to {over[-1]:+.1f} %)", flush=True)


if __name__ == "__main__":
    main()

"""What Leap's on-the-fly meta-gradient (eq. 8, accumulated after every task
step) costs on top of the plain compiled inner loop: the loop alone, with
Leap's hook (``Leap.flat_hook``: on the update's increments), with the hook
as it was before 2026-11-30 evening (on theta_i and theta_{i+1}:
``theta_hook``) and with that hook compiled alone as one XLA cluster, alternating in one process (medians of
``--rounds``, and the spread of the per-round overheads); for the sine MLP
also the whole loop compiled with XLA, with and without the hook (overhead
against the XLA plain loop), and ``fit`` with its default settings (the
fast path: the meta-step XLA-compiled, tasks vectorized, 32 meta-steps per
execution) of Leap against Reptile, which runs the same inner loop,
query loss and outer step without the hook (``--fit-tasks`` tasks of
``--fit-steps`` inner steps per meta-step, the peers' sine workload).

    python benchmarks/leap_hook.py [--rounds 15] [--only sine-mlp|sine-fit]
                                   [--mlp-steps 200] [--intra-op N]

Prints task steps per second (meta-steps per second for ``fit``) and the
overhead over the plain loop (Reptile for ``fit``), median and range of
the per-round overheads, for the Omniglot conv net (50 steps) and the sine
MLP (200 steps); the workloads are those of ``run.py``.
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

import keras  # noqa: E402
import numpy as np  # noqa: E402
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


class PerTensorLeap(tfmeta.Leap):
    """Leap with the per-tensor hook (``pull_forward_increment`` on the
    parameter tensors, no flattening): the same meta-gradient."""

    auto_vectorize = True

    def task_meta_gradient(self, params, nontrainable, task, seed):
        options = self.leap_options()
        result = self.adapt_task(
            params, nontrainable, task, seed,
            hook=lambda state, i, *args: tfmeta.leap.pull_forward_increment(
                state, *args, **options),
            hook_state=([tf.zeros_like(p) for p in params],
                        tf.zeros([], params[0].dtype)))
        acc, length = result.hook_state
        loss, pred = self.query_loss(result.params, result.nontrainable, task)
        return acc, {"loss": loss, "support_loss": result.loss_after,
                     "path_length": length}, pred


def theta_hook(leap):
    """Leap's flat hook as it was before 2026-11-30 evening: eq. 8's
    increment from theta_i and theta_{i+1} (``flat_increment`` without
    ``d_theta``), which under XLA makes the loop copy every parameter and
    gradient at every step; the same meta-gradient up to rounding."""
    increment = functools.partial(tfmeta.leap.flat_increment,
                                  **leap.leap_options())
    return lambda state, i, *args: increment(state, *args)


class ThetaLeap(tfmeta.Leap):
    """Leap with ``theta_hook`` (the hook before 2026-11-30 evening)."""

    auto_vectorize = True

    def flat_hook(self):
        return theta_hook(self)


def fit_contender(cls, tasks, steps, meta_steps=128, seed=0, **kwargs):
    """``fit`` (default settings) of ``cls(**kwargs)`` on the sine MLP:
    ``meta_steps`` meta-steps of ``tasks`` tasks x ``steps`` inner steps
    (SGD 0.01, 10 support and 10 query points, outer Adam 1e-3), one
    call."""
    keras.utils.set_random_seed(seed)
    meta = cls(tfmeta.tasks.sine.mlp(seed=seed),
               inner_optimizer=keras.optimizers.SGD(0.01), inner_steps=steps,
               **kwargs)
    meta.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    rng = np.random.default_rng(seed)
    amp = rng.uniform(0.1, 5.0, size=(tasks, 1, 1))
    phase = rng.uniform(0, np.pi, size=(tasks, 1, 1))
    x = rng.uniform(-5, 5, size=(tasks, 20, 1))
    y = amp * np.sin(x + phase)
    data = tf.data.Dataset.from_tensors({
        "support_x": x[:, :10], "support_y": y[:, :10],
        "query_x": x[:, 10:], "query_y": y[:, 10:]}).map(
            lambda t: {k: tf.cast(v, tf.float32) for k, v in t.items()}
    ).repeat()
    # as tfmeta's task datasets: without tf.data's autotuning, whose
    # stalls at the end of a fit call (docs/performance.md) are noise here
    data = tfmeta.tasks.pipeline.without_autotuning(data)

    def run():
        meta.fit(data, steps_per_epoch=meta_steps, epochs=1, verbose=0)
    run.settings = (f"jit_compile={meta.jit_compile}, vectorize_tasks="
                    f"{meta.vectorize_tasks}")
    return run


def report(name, contender, units, seconds, base):
    # overhead per round, against the base of the same round
    over = sorted(100 * (a / b - 1) for a, b in zip(seconds, base))
    unit = "meta-steps/s" if name == "sine-fit" else "steps/s"
    print(f"{name:14s} {contender:40s} "
          f"{units / statistics.median(seconds):9.1f} {unit} "
          f"({statistics.median(over):+.1f} %, rounds {over[0]:+.1f}"
          f" to {over[-1]:+.1f} %)", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--only", choices=("omniglot-conv", "sine-mlp",
                                           "sine-fit"))
    parser.add_argument("--fit-tasks", type=int, default=10)
    parser.add_argument("--fit-steps", type=int, default=32)
    parser.add_argument("--mlp-steps", type=int, default=200,
                        help="task steps per call on the sine MLP (an XLA "
                        "call of 200 is ~3 ms: scattered by the load)")
    parser.add_argument("--intra-op", type=int, default=0,
                        help="TensorFlow's intra-op threads (default: "
                        "TensorFlow's choice)")
    args = parser.parse_args(argv)
    if args.intra_op:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op)
    with open("/proc/loadavg") as f:
        print("load average at start:", f.read().split()[0], flush=True)
    if args.only in (None, "sine-fit"):
        contenders = {
            "fit, defaults: Reptile (no hook)": fit_contender(
                tfmeta.Reptile, args.fit_tasks, args.fit_steps),
            "fit, defaults: Leap (hook)": fit_contender(
                tfmeta.Leap, args.fit_tasks, args.fit_steps),
            "fit, defaults: Leap (hook on theta_i, before)": fit_contender(
                ThetaLeap, args.fit_tasks, args.fit_steps),
            "fit, defaults: Leap (per-tensor hook)": fit_contender(
                PerTensorLeap, args.fit_tasks, args.fit_steps),
            "fit, tasks serial: Reptile (no hook)": fit_contender(
                tfmeta.Reptile, args.fit_tasks, args.fit_steps,
                vectorize_tasks=False),
            "fit, tasks serial: Leap (hook)": fit_contender(
                tfmeta.Leap, args.fit_tasks, args.fit_steps,
                vectorize_tasks=False)}
        for name, run in contenders.items():
            print(f"sine-fit       {name}: {run.settings}, "
                  f"{args.fit_tasks} tasks x {args.fit_steps} steps")
        times = race(contenders, args.rounds)
        for contender, seconds in times.items():
            base = times[contender.split(":")[0] + ": Reptile (no hook)"]
            report("sine-fit", contender, 128, seconds, base)
    for name, steps in (("omniglot-conv", 50), ("sine-mlp", args.mlp_steps)):
        if args.only and name != args.only:
            continue
        w = bench.WORKLOADS[name]()
        leap = tfmeta.Leap(w.tf_model())
        init = tfmeta.leap.flat_state
        plain_hook = functools.partial(tfmeta.leap.flat_increment,
                                       **leap.leap_options())
        xla_hook = tf.function(plain_hook, jit_compile=True)  # on theta
        contenders = {
            "plain loop": bench.tfmeta_loop(w, steps),
            "loop + Leap hook": bench.tfmeta_loop(
                w, steps, leap.flat_hook(), init),
            "loop + Leap hook on theta_i (before)": bench.tfmeta_loop(
                w, steps, theta_hook(leap), init),
            "loop + Leap hook (XLA)": bench.tfmeta_loop(
                w, steps, lambda s, i, *a: xla_hook(s, *a), init),
        }
        if name == "sine-mlp":  # XLA is 15-20x slower for the conv net
            contenders["plain loop, whole loop XLA"] = bench.tfmeta_loop(
                w, steps, jit_compile=True)
            contenders["loop + Leap hook, whole loop XLA"] = bench.tfmeta_loop(
                w, steps, leap.flat_hook(), init, jit_compile=True)
            contenders["loop + hook on theta_i (before), whole loop XLA"] = \
                bench.tfmeta_loop(w, steps, theta_hook(leap), init,
                                  jit_compile=True)
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
            report(name, contender, steps, seconds, base)


if __name__ == "__main__":
    main()

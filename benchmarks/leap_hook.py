"""What Leap's on-the-fly meta-gradient (eq. 8, accumulated after every task
step) costs on top of the plain compiled inner loop: the loop alone, with
Leap's hook, and with the hook compiled as one XLA cluster, alternating in
one process (medians of ``--rounds``).

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

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import benchmarks.run as bench  # noqa: E402
import tfmeta  # noqa: E402
from tfmeta import inner_loop, inner_optimizers  # noqa: E402
from tfmeta.leap import _flatten  # noqa: E402


def loop(w, steps, hook=None):
    """The compiled inner loop of ``run.tfmeta_loop``, optionally with
    ``hook`` (a Leap flat increment) and its accumulator."""
    model = w.tf_model()
    params = [tf.convert_to_tensor(v) for v in model.trainable_variables]
    nontrainable = [tf.convert_to_tensor(v)
                    for v in model.non_trainable_variables]
    sgd = inner_optimizers.from_keras(keras.optimizers.SGD(bench.LR))
    x, y = tf.constant(w.x), tf.constant(w.y)
    seed = tf.constant([0, 1], tf.int64)

    @tf.function
    def run():
        state = (([tf.zeros_like(_flatten(params))], tf.zeros([]))
                 if hook else ())
        result = inner_loop.adapt(model, w.loss, sgd, params, nontrainable,
                                  x, y, steps, batch_size=w.batch, seed=seed,
                                  hook=hook, hook_state=state)
        if not hook:
            return result.loss_after
        (acc,), length = result.hook_state
        return result.loss_after + length + tf.reduce_sum(acc)

    return lambda: float(run())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    for name, steps in (("omniglot-conv", 50), ("sine-mlp", 200)):
        w = bench.WORKLOADS[name]()
        leap = tfmeta.Leap(w.tf_model())
        contenders = {
            "plain loop": loop(w, steps),
            "loop + Leap hook": loop(w, steps, leap._flat_increment),
            "loop + Leap hook (XLA)": loop(
                w, steps, tf.function(leap._flat_increment, jit_compile=True)),
        }
        times = bench.race(contenders, args.rounds)
        for contender, seconds in times.items():
            over = 100 * (seconds / times["plain loop"] - 1)
            print(f"{name:14s} {contender:24s} {steps / seconds:9.1f} steps/s "
                  f"({over:+.1f} %)", flush=True)


if __name__ == "__main__":
    main()

"""What second order costs in meta-transfer: milliseconds per compiled
meta-step (``MetaTransfer.train_step`` on tensors) of every encoder on
cos -> sin task batches, and for the gradient encoders second vs first
order (``first_order=True``) and 1, 2 and 5 encoder steps. The paper names
second-order cost as its limitation (section 6.2).

    python benchmarks/transfer_cost.py [--tasks 10] [--rounds 30] [--out benchmarks/results]
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

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import benchmarks.run as bench  # noqa: E402
import tfmeta  # noqa: E402
from tfmeta.tasks import cos_sin  # noqa: E402
from tfmeta.transfer import ENCODERS, GRADIENT_ENCODERS  # noqa: E402


def contender(encoder, data, **options):
    keras.utils.set_random_seed(0)
    if encoder == "deep_kernel":
        meta = tfmeta.MetaTransfer(encoder, support_dims=(1, 1),
                                   query_dims=(1, 1), seed=0)
    else:
        meta = tfmeta.MetaTransfer(encoder, query_learner=cos_sin.query_mlp(),
                                   k=2, support_dims=(1, 1), seed=0, **options)
    meta.compile(keras.optimizers.Adam(1e-3), loss="mse")
    step = tf.function(meta.train_step)
    return lambda: float(step(data)["loss"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--support", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    batch = cos_sin.tasks(args.tasks, args.support, 10, seed=0)
    data = {k: tf.constant(batch[k]) for k in tfmeta.TASK_KEYS}
    contenders = {name: contender(name, data) for name in ENCODERS}
    for name in GRADIENT_ENCODERS:
        contenders[f"{name} first-order"] = contender(name, data,
                                                      first_order=True)
        for steps in (2, 5):
            contenders[f"{name} {steps} steps"] = contender(
                name, data, encoder_steps=steps, encoder_lr=0.1)
    times = bench.race(contenders, args.rounds)
    lines = [f"# Meta-transfer: ms per meta-step ({args.tasks} cos -> sin "
             f"tasks of {args.support} support points, median of "
             f"{args.rounds} rounds)", "",
             "| encoder | ms / meta-step | vs second order, 1 step |",
             "|---|---|---|"]
    for name, seconds in times.items():
        base = times[name.split(" ")[0]]
        lines.append(f"| {name} | {1000 * seconds:.2f} | "
                     f"{seconds / base:.2f}x |")
    bench.save_markdown(args.out, "transfer_cost.md", lines)


if __name__ == "__main__":
    main()

"""Second-order MAML memory and time through K inner steps, with and without
the checkpointed inner loop (``MAML(checkpoint_every=...)``).

    python benchmarks/second_order_memory.py [--steps 10 25 50 100]
        [--every sqrt] [--rounds 3] [--out FILE.json]

The Omniglot net of Leap/MAML (``tfmeta.tasks.omniglot.leap_convnet``:
4 x conv 64 + batch norm, 28x28 inputs, 20-way), one 20-way task per
meta-step with 300 support and 100 query images (Leap's protocol), support
minibatches of 20, inner SGD 0.1. Images are random (the memory and time
of a meta-step do not depend on the pixels; no data set needed).

Every point (K, with/without) runs in a fresh process, so that each peak is
its own: the peak resident memory (``ru_maxrss``) of that process, minus
its resident memory just before the first meta-step (the imports, the model
and the data), gives what the meta-step itself needs. Time per meta-step is
the median of ``--rounds`` meta-steps after a first, compiling one.
"""

import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as tfmeta does
ROOT = pathlib.Path(__file__).resolve().parents[1]


def rss_mib():
    """Current resident memory (``/proc/self/statm``) in MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def point(steps, every, rounds):
    """One measurement, in this process: a dict."""
    sys.path.insert(0, str(ROOT))
    import keras
    import numpy as np

    import tfmeta
    from tfmeta.tasks.omniglot import leap_convnet

    every = None if every == "none" else (
        every if every == "sqrt" else int(every))
    meta = tfmeta.MAML(leap_convnet(seed=0),
                       inner_optimizer=keras.optimizers.SGD(0.1),
                       inner_steps=steps, inner_batch_size=20,
                       checkpoint_every=every)
    meta.compile(optimizer=keras.optimizers.SGD(0.1),
                 loss=keras.losses.SparseCategoricalCrossentropy(
                     from_logits=True))
    rng = np.random.default_rng(0)
    batch = {"support_x": rng.random((1, 300, 28, 28, 1), np.float32),
             "support_y": rng.integers(0, 20, (1, 300)),
             "query_x": rng.random((1, 100, 28, 28, 1), np.float32),
             "query_y": rng.integers(0, 20, (1, 100))}
    base = rss_mib()
    start = time.perf_counter()
    meta.train_on_batch(batch)
    first = time.perf_counter() - start
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        logs = meta.train_on_batch(batch, return_dict=True)
        times.append(time.perf_counter() - start)
    assert np.isfinite(logs["loss"]), logs
    return {"steps": steps, "every": every, "base_mib": round(base, 1),
            "peak_mib": round(peak_mib(), 1),
            "step_mib": round(peak_mib() - base, 1),
            "first_s": round(first, 2),
            "median_s": round(statistics.median(times), 3),
            "times_s": [round(t, 3) for t in times]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, nargs="+",
                        default=[10, 25, 50, 100])
    parser.add_argument("--every", default="sqrt",
                        help="checkpoint_every of the checkpointed runs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=pathlib.Path, default=None)
    parser.add_argument("--point", nargs=2, metavar=("K", "EVERY"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.point:
        print(json.dumps(point(int(args.point[0]), args.point[1],
                               args.rounds)))
        return
    rows = []
    print(f"{'K':>4} {'checkpoint_every':>16} {'peak MiB':>9} "
          f"{'meta-step MiB':>13} {'s/meta-step':>11}", flush=True)
    for steps in args.steps:
        for every in ("none", args.every):
            run = subprocess.run(
                [sys.executable, __file__, "--point", str(steps), every,
                 "--rounds", str(args.rounds)],
                capture_output=True, text=True)
            if run.returncode != 0:
                print(f"{steps:>4} {every:>16} failed: "
                      f"{run.stderr.strip().splitlines()[-1:]}", flush=True)
                rows.append({"steps": steps, "every": every,
                             "error": run.stderr[-2000:]})
                continue
            row = json.loads(run.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{steps:>4} {every:>16} {row['peak_mib']:>9.0f} "
                  f"{row['step_mib']:>13.0f} {row['median_s']:>11.2f}",
                  flush=True)
    for steps in args.steps:
        plain, ckpt = (next((r for r in rows if r["steps"] == steps
                             and str(r["every"]).lower() == str(e)
                             and "error" not in r), None)
                       for e in ("none", args.every))
        if plain and ckpt:
            print(f"K={steps}: meta-step memory "
                  f"{ckpt['step_mib'] / plain['step_mib']:.1%} of plain, "
                  f"time {ckpt['median_s'] / plain['median_s']:.2f}x")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()

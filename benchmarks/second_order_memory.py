"""Second-order MAML memory and time through K inner steps, with and without
the checkpointed inner loop (``MAML(checkpoint_every=...)``).

    python benchmarks/second_order_memory.py [--steps 10 25 50 100]
        [--every sqrt] [--rounds 5] [--out FILE.json]

The Omniglot net of Leap/MAML (``tfmeta.tasks.omniglot.leap_convnet``:
4 x conv 64 + batch norm, 28x28 inputs, 20-way), one 20-way task per
meta-step with 300 support and 100 query images (Leap's protocol), support
minibatches of 20, inner SGD 0.1. Images are random (the memory and time
of a meta-step do not depend on the pixels; no data set needed).

Memory: every point (K, with/without) runs in a fresh process, so that
each peak is its own: the peak resident memory (``ru_maxrss``) of that
process, and that minus its resident memory just before the first
meta-step (the imports, the model and the data): what the meta-step needs,
compilation included. Time: for each K one more process builds both
meta-learners and alternates their meta-steps (``--rounds`` pairs after a
compiling one each), so that both see the same load of a shared machine;
it reports the median time of each and the median of the per-pair ratios.
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


def parse_every(every):
    return None if every == "none" else (
        every if every == "sqrt" else int(every))


def build(steps, every):
    """The MAML meta-learner of a point and its task batch."""
    sys.path.insert(0, str(ROOT))
    import keras
    import numpy as np

    import tfmeta
    from tfmeta.tasks.omniglot import leap_convnet

    meta = tfmeta.MAML(leap_convnet(seed=0),
                       inner_optimizer=keras.optimizers.SGD(0.1),
                       inner_steps=steps, inner_batch_size=20,
                       checkpoint_every=parse_every(every))
    meta.compile(optimizer=keras.optimizers.SGD(0.1),
                 loss=keras.losses.SparseCategoricalCrossentropy(
                     from_logits=True))
    rng = np.random.default_rng(0)
    batch = {"support_x": rng.random((1, 300, 28, 28, 1), np.float32),
             "support_y": rng.integers(0, 20, (1, 300)),
             "query_x": rng.random((1, 100, 28, 28, 1), np.float32),
             "query_y": rng.integers(0, 20, (1, 100))}
    return meta, batch


def timed_step(meta, batch):
    import numpy as np
    start = time.perf_counter()
    logs = meta.train_on_batch(batch, return_dict=True)
    assert np.isfinite(logs["loss"]), logs
    return time.perf_counter() - start


def point(steps, every):
    """The memory of one meta-step (compiling, then one more), in this
    process: a dict."""
    meta, batch = build(steps, every)
    base = rss_mib()
    first = timed_step(meta, batch)
    second = timed_step(meta, batch)
    return {"steps": steps, "every": parse_every(every),
            "base_mib": round(base, 1), "peak_mib": round(peak_mib(), 1),
            "step_mib": round(peak_mib() - base, 1),
            "first_s": round(first, 2), "second_s": round(second, 2)}


def race(steps, every, rounds):
    """Alternating meta-steps of the plain and checkpointed learners."""
    plain, batch = build(steps, "none")
    ckpt, _ = build(steps, every)
    timed_step(plain, batch)
    timed_step(ckpt, batch)
    pairs = [(timed_step(plain, batch), timed_step(ckpt, batch))
             for _ in range(rounds)]
    return {"steps": steps, "every": parse_every(every),
            "plain_s": round(statistics.median(p for p, _ in pairs), 3),
            "ckpt_s": round(statistics.median(c for _, c in pairs), 3),
            "ratio": round(statistics.median(c / p for p, c in pairs), 3),
            "ratios": [round(c / p, 3) for p, c in pairs]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, nargs="+",
                        default=[10, 25, 50, 100])
    parser.add_argument("--every", default="sqrt",
                        help="checkpoint_every of the checkpointed runs")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=pathlib.Path, default=None)
    parser.add_argument("--point", nargs=2, metavar=("K", "EVERY"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--race", nargs=2, metavar=("K", "EVERY"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.point:
        print(json.dumps(point(int(args.point[0]), args.point[1])))
        return
    if args.race:
        print(json.dumps(race(int(args.race[0]), args.race[1], args.rounds)))
        return

    def child(*flags):
        run = subprocess.run([sys.executable, __file__, *flags],
                             capture_output=True, text=True)
        if run.returncode != 0:
            return {"error": run.stderr[-3000:]}
        return json.loads(run.stdout.strip().splitlines()[-1])

    rows = []
    print(f"{'K':>4} {'plain peak':>10} {'ckpt peak':>9} {'plain step':>10} "
          f"{'ckpt step':>9} {'memory':>7} {'plain s':>8} {'ckpt s':>7} "
          f"{'time':>6}  (MiB; memory, time: checkpointed / plain)",
          flush=True)
    for steps in args.steps:
        plain = child("--point", str(steps), "none")
        ckpt = child("--point", str(steps), args.every)
        timing = child("--race", str(steps), args.every,
                       "--rounds", str(args.rounds))
        row = {"steps": steps, "every": args.every, "plain": plain,
               "checkpointed": ckpt, "race": timing}
        rows.append(row)
        if any("error" in r for r in (plain, ckpt, timing)):
            print(f"{steps:>4} failed:", {k: r["error"][-300:] for k, r in
                                          row.items() if isinstance(r, dict)
                                          and "error" in r}, flush=True)
            continue
        print(f"{steps:>4} {plain['peak_mib']:>10.0f} {ckpt['peak_mib']:>9.0f} "
              f"{plain['step_mib']:>10.0f} {ckpt['step_mib']:>9.0f} "
              f"{ckpt['step_mib'] / plain['step_mib']:>7.1%} "
              f"{timing['plain_s']:>8.2f} {timing['ckpt_s']:>7.2f} "
              f"{timing['ratio']:>5.2f}x", flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")

if __name__ == "__main__":
    main()

"""Second-order MAML memory and time through K inner steps, with and without
the checkpointed inner loop (``MAML(checkpoint_every=...)``).

    python benchmarks/second_order_memory.py [--steps 10 25 50 100]
        [--every sqrt] [--rounds 5] [--out FILE.json]
    python benchmarks/second_order_memory.py --separate 100 [--processes 2]
        [--rounds 3] [--every sqrt] [--out FILE.json]

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

``--separate K``: for a K too large to hold both learners in one process
(K = 100: the plain one alone needs ~13 GiB), fresh processes of one side
each, alternated plain, checkpointed, plain, checkpointed, ...
(``--processes`` of each), each timing ``--rounds`` meta-steps after the
compiling one, one process at a time; it reports every process's times,
peak memory and load average, the median of each side over its processes'
medians and their ratio, and the ratio of each plain/checkpointed pair.
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


def point(steps, every, timed=1):
    """The memory of the meta-steps (compiling, then ``timed`` more) in
    this process, and their times: a dict."""
    meta, batch = build(steps, every)
    base = rss_mib()
    first = timed_step(meta, batch)
    times = [timed_step(meta, batch) for _ in range(timed)]
    return {"steps": steps, "every": parse_every(every),
            "base_mib": round(base, 1), "peak_mib": round(peak_mib(), 1),
            "step_mib": round(peak_mib() - base, 1),
            "first_s": round(first, 2), "second_s": round(times[0], 2),
            "times_s": [round(t, 3) for t in times],
            "median_s": round(statistics.median(times), 3)}


def load():
    """The 1-minute load average."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def separate(steps, every, processes, rounds, child):
    """Plain and checkpointed in alternating fresh processes, one at a
    time (``--separate``): a dict with every process and the ratios."""
    runs = []
    print(f"K = {steps}: {processes} processes of each side, alternated, "
          f"{rounds} timed meta-steps each after the compiling one",
          flush=True)
    for i in range(processes):
        for side in ("none", every):
            before = load()
            run = child("--point", str(steps), side, "--rounds", str(rounds))
            run.update(side="plain" if side == "none" else "checkpointed",
                       process=i + 1, load_before=before, load_after=load())
            runs.append(run)
            if "error" in run:
                print(f"  {run['side']:12s} #{i + 1} failed: "
                      f"{run['error'][-300:]}", flush=True)
                continue
            print(f"  {run['side']:12s} #{i + 1}: compiling step "
                  f"{run['first_s']:.1f} s, then {run['times_s']} s "
                  f"(median {run['median_s']:.2f}); peak {run['peak_mib']:.0f}"
                  f" MiB, meta-step {run['step_mib']:.0f} MiB; load "
                  f"{before:.2f} -> {run['load_after']:.2f}", flush=True)
    ok = [r for r in runs if "error" not in r]
    plain = [r for r in ok if r["side"] == "plain"]
    ckpt = [r for r in ok if r["side"] == "checkpointed"]
    result = {"steps": steps, "every": parse_every(every), "runs": runs}
    if plain and ckpt:
        p = statistics.median(r["median_s"] for r in plain)
        c = statistics.median(r["median_s"] for r in ckpt)
        pairs = [(a["median_s"], b["median_s"]) for a, b in zip(
            [r for r in runs if r["side"] == "plain"],
            [r for r in runs if r["side"] == "checkpointed"])
            if "error" not in a and "error" not in b]
        result.update(
            plain_s=p, ckpt_s=c, ratio=round(c / p, 3),
            pair_ratios=[round(b / a, 3) for a, b in pairs],
            plain_peak_mib=max(r["peak_mib"] for r in plain),
            ckpt_peak_mib=max(r["peak_mib"] for r in ckpt),
            memory=round(statistics.median(r["step_mib"] for r in ckpt)
                         / statistics.median(r["step_mib"] for r in plain),
                         3))
        print(f"K = {steps}: plain {p:.2f} s, checkpointed {c:.2f} s per "
              f"meta-step (medians over processes): {c / p:.2f}x (pairs: "
              f"{result['pair_ratios']}); peak {result['plain_peak_mib']:.0f}"
              f" vs {result['ckpt_peak_mib']:.0f} MiB, meta-step memory "
              f"{result['memory']:.1%}", flush=True)
    return result


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
    parser.add_argument("--separate", type=int, metavar="K",
                        help="time K in alternating one-sided processes")
    parser.add_argument("--processes", type=int, default=2,
                        help="processes of each side for --separate")
    parser.add_argument("--point", nargs=2, metavar=("K", "EVERY"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--race", nargs=2, metavar=("K", "EVERY"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.point:
        print(json.dumps(point(int(args.point[0]), args.point[1],
                               args.rounds)))
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

    if args.separate:
        result = separate(args.separate, args.every, args.processes,
                          args.rounds, child)
        if args.out:
            args.out.write_text(json.dumps(result, indent=1) + "\n")
        return

    rows = []
    print(f"{'K':>4} {'plain peak':>10} {'ckpt peak':>9} {'plain step':>10} "
          f"{'ckpt step':>9} {'memory':>7} {'plain s':>8} {'ckpt s':>7} "
          f"{'time':>6}  (MiB; memory, time: checkpointed / plain)",
          flush=True)
    for steps in args.steps:
        plain = child("--point", str(steps), "none", "--rounds", "1")
        ckpt = child("--point", str(steps), args.every, "--rounds", "1")
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

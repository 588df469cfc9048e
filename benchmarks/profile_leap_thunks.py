"""Where Leap's hook costs on the sine MLP under XLA: the time of every XLA
kernel ("thunk") of the whole-loop XLA inner loop, plain and with Leap's
hook (on the update's increments, and on theta_i as before 2026-11-30
evening), from TensorFlow's profiler with XLA's per-thunk trace events.

    python benchmarks/profile_leap_thunks.py [--steps 1000] [--intra-op 1] [--top 45]

Prints, per contender, microseconds per loop step of each thunk that runs
once per step (the loop body), the largest first, and their sum. The trace
events cost ~0.2 µs each, so the sums are above the untraced step time;
compare contenders, not absolute times. ``--intra-op 1`` runs the thunks one
after another (one thread): without it XLA's runtime runs independent
thunks concurrently and their times overlap and contend.
"""

import argparse
import collections
import glob
import os
import pathlib
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_cpu_enable_xprof_traceme=true")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def thunk_times(run, steps, calls=3):
    """``{thunk name: µs per loop step}`` of the thunks that run once per
    step in ``calls`` profiled calls of ``run``."""
    import tensorflow as tf
    try:
        from tsl.profiler.protobuf import xplane_pb2
    except ImportError:  # older layouts
        from tensorflow.tsl.profiler.protobuf import xplane_pb2
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(calls):
            run()
        tf.profiler.experimental.stop()
        path = sorted(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True))[-1]
        space = xplane_pb2.XSpace()
        space.ParseFromString(pathlib.Path(path).read_bytes())
    total, count = collections.Counter(), collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                total[name] += event.duration_ps
                count[name] += 1
    n = calls * (steps - 1)  # loop iterations (the last step is peeled off)
    return {name: total[name] / 1e6 / n for name in total
            if 0.9 * n <= count[name] <= 1.1 * n}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--intra-op", type=int, default=1)
    parser.add_argument("--top", type=int, default=45)
    args = parser.parse_args(argv)
    import tensorflow as tf
    if args.intra_op:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op)
    import benchmarks.run as bench
    import leap_hook
    import tfmeta
    w = bench.WORKLOADS["sine-mlp"]()
    leap = tfmeta.Leap(w.tf_model())
    init = tfmeta.leap.flat_state
    contenders = {
        "plain loop": (None, None),
        "Leap hook (on the update's increments)": (leap.flat_hook(), init),
        "Leap hook on theta_i (before)": (leap_hook.theta_hook(leap), init)}
    for name, (hook, state) in contenders.items():
        run = bench.tfmeta_loop(w, args.steps, hook, state, jit_compile=True)
        run()
        times = thunk_times(run, args.steps)
        kernels = {k: v for k, v in times.items()
                   if not k.startswith(("ThunkExecutor", "end:"))}
        print(f"{name}: {len(kernels)} thunks per step, "
              f"{sum(kernels.values()):.1f} µs per step (traced)")
        for k, v in sorted(kernels.items(), key=lambda kv: -kv[1])[:args.top]:
            print(f"  {v:7.3f} µs  {k}")


if __name__ == "__main__":
    main()

"""Time single ``fit`` calls of the sine workloads, one after another in
one process, to see Reptile's slow calls (docs/performance.md: ~625 ms
instead of ~305 ms for 128 meta-steps, a ~300 ms stall at the end of the
call, in tf.data's autotuning).

    python benchmarks/fit_calls.py [--only reptile-sine] [--calls 128] [--repeats 16]
                                   [--busy] [--intra-op N] [--jax] [--no-autotune]

Prints the milliseconds of each ``fit(steps_per_epoch=calls)`` of tfmeta
with its defaults (``profile_meta_step.tfmeta_contenders``), or with
``--jax`` of ``calls`` jitted JAX meta-steps (``peers_jax``). ``--busy``
keeps one core busy meanwhile (a Python busy loop in a child process,
ended at exit), as another job on the 2-core machine does; ``--intra-op``
sets TensorFlow's intra-op threads (default: TensorFlow's choice);
``--no-autotune`` turns tf.data's autotuning off on the task dataset
(``tf.data.Options().autotune.enabled = False``), which removes the slow
calls.
"""

import argparse
import os
import pathlib
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="reptile-sine,maml-sine")
    parser.add_argument("--calls", type=int, default=128,
                        help="meta-steps per fit call (a multiple of 32)")
    parser.add_argument("--repeats", type=int, default=16)
    parser.add_argument("--busy", action="store_true")
    parser.add_argument("--intra-op", type=int, default=0)
    parser.add_argument("--jax", action="store_true")
    parser.add_argument("--no-autotune", action="store_true")
    args = parser.parse_args(argv)
    import tensorflow as tf
    if args.intra_op:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op)
    import peers
    import profile_meta_step
    busy = (subprocess.Popen([sys.executable, "-c", "while True: pass"])
            if args.busy else None)
    try:
        for wl in args.only.split(","):
            w = peers.WORKLOADS[wl]
            data = peers.task_data(w)
            if args.jax:
                import peers_jax
                run = peers_jax.contender(w, data, peers.OUTER_LR)
            else:
                run = profile_meta_step.tfmeta_contenders(
                    w, data, autotune=not args.no_autotune)[0]
            run(32)  # warm-up: tracing, compiling
            ms = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                run(args.calls)
                ms.append(round((time.perf_counter() - start) * 1000))
            with open("/proc/loadavg") as f:
                load = f.read().split()[0]
            print(f"{wl} {'jax' if args.jax else 'tfmeta fit'} "
                  f"(busy={args.busy}, intra_op={args.intra_op or 'default'}"
                  f", autotune={not args.no_autotune}"
                  f", load average {load}): ms per {args.calls} meta-steps: "
                  f"{ms}", flush=True)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()


if __name__ == "__main__":
    main()

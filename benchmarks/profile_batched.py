"""Where the time of a batched meta-batch goes (``vectorize_tasks=True``) on
the sine MLP (1-64-64-1, batch 10), against one task after another: a
Reptile meta-step of 10 tasks x 32 steps, with and without XLA.

    python benchmarks/profile_batched.py [--rounds 7] [--tasks 10 25] [--out benchmarks/results]

Three parts:

1. time per meta-step of the four contenders, alternating in one process,
   for each meta-batch size of ``--tasks`` (the benchmark suite's figure is
   10 tasks);
2. ops per inner step, counted in the graph TensorFlow actually runs
   (post-optimization graph from ``run_metadata``, as in
   ``profile_sine.py``): the per-task loop body of the serial meta-step and
   the body of the loop that ``tf.vectorized_map`` (pfor) makes of the
   batched one, whose body pfor wraps in a ``tf.cond`` (Switch / Merge /
   Identity nodes);
3. the matmul kernels a batched step is made of, timed alone in a compiled
   loop of 2000 iterations: one task's ``[10, 64] x [64, 64]`` MatMul against
   the BatchMatMul of 2, 10 and 25 tasks (``[T, 10, 64] x [T, 64, 64]``), with
   TensorFlow's default intra-op pool (both cores) and with one thread (a
   fresh process each, since the pool is fixed at start-up), and under XLA.
"""

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as tfmeta does
os.environ["TFMETA_BENCH_NO_TORCH"] = "1"
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TASKS, STEPS = 10, 32
# the inner loop's body: inside the per-task loop (serial), or the loop that
# pfor made of it (vectorized)
SERIAL_BODY = re.compile(r"while(_\d+)?/body/.*/while/body/")
VECTORIZED_BODY = re.compile(r"pfor/PartitionedCall/while/body/")
COND_OPS = ("Switch", "Merge", "Identity")


def kernels(threads, iterations=2000):
    """µs per iteration of a compiled loop around each matmul (the loop's
    own ops, an add and a multiply, included; 'loop only' measures them)."""
    import tensorflow as tf
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    one = (tf.random.normal([10, 64]), tf.random.normal([64, 64]))
    cases = {"loop only": (lambda a, b: a, one),
             "MatMul [10,64]x[64,64] (one task)": (tf.matmul, one)}
    for tasks in (2, TASKS, 25):
        cases[f"BatchMatMul [{tasks},10,64]x[{tasks},64,64] ({tasks} tasks)"] = (
            tf.matmul, (tf.random.normal([tasks, 10, 64]),
                        tf.random.normal([tasks, 64, 64])))
    out = {}
    for name, (fn, (a, b)) in cases.items():
        for jit in (False, True):
            @tf.function(jit_compile=jit)
            def loop(a, b, fn=fn):
                def body(i, acc):
                    return i + 1, acc + fn(a + acc * 0.0, b)
                return tf.while_loop(lambda i, _: i < iterations, body,
                                     (0, tf.zeros_like(fn(a, b))))[1]
            loop(a, b).numpy()
            best = min(_seconds(lambda: loop(a, b).numpy()) for _ in range(5))
            out[name + (", XLA" if jit else "")] = 1e6 * best / iterations
    return out


def _seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tasks", type=int, nargs="+", default=[TASKS, 25],
                        help="meta-batch sizes to time (ops and kernels: "
                        f"{TASKS} tasks)")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--kernels-only", type=int, default=None,
                        help=argparse.SUPPRESS)  # child process: threads
    args = parser.parse_args(argv)
    if args.kernels_only is not None:
        print(json.dumps(kernels(args.kernels_only)))
        return

    import benchmarks.run as bench
    import tfmeta
    w = bench.WORKLOADS["sine-mlp"]()
    def contenders(tasks):
        return {
            "one task after another": bench.meta_step(
                tfmeta.Reptile, w, STEPS, tasks),
            "vectorize_tasks": bench.meta_step(
                tfmeta.Reptile, w, STEPS, tasks, vectorize_tasks=True),
            "one after another, XLA": bench.meta_step(
                tfmeta.Reptile, w, STEPS, tasks, jit_compile=True),
            "vectorize_tasks, XLA": bench.meta_step(
                tfmeta.Reptile, w, STEPS, tasks, jit_compile=True,
                vectorize_tasks=True)}

    fresh = contenders(TASKS)
    ops = {"one task after another": bench.graph_ops(
               fresh["one task after another"], SERIAL_BODY),
           "vectorize_tasks": bench.graph_ops(fresh["vectorize_tasks"],
                                              VECTORIZED_BODY)}
    times = {tasks: bench.race(fresh if tasks == TASKS else contenders(tasks),
                               args.rounds) for tasks in args.tasks}
    per_kernel = {}
    for threads in (0, 1):  # 0: TensorFlow's default pool
        child = subprocess.run(
            [sys.executable, __file__, "--kernels-only", str(threads)],
            capture_output=True, text=True, check=True)
        per_kernel[threads] = json.loads(child.stdout.strip().splitlines()[-1])

    lines = [
        f"Reptile meta-step on the sine MLP (1-64-64-1, batch 10), tasks x "
        f"{STEPS} steps: `python benchmarks/profile_batched.py --rounds "
        f"{args.rounds} --tasks {' '.join(map(str, args.tasks))}`; medians of "
        f"{args.rounds} alternating rounds in one process.", "",
        "| tasks | contender | ms per meta-step | µs per inner step (of all "
        "tasks) | vs one after another | vs one after another, XLA |",
        "|---|---|---|---|---|---|"]
    for tasks, race in times.items():
        serial = race["one task after another"]
        serial_xla = race["one after another, XLA"]
        for name, seconds in race.items():
            lines.append(
                f"| {tasks} | {name} | {1e3 * seconds:.2f} | "
                f"{1e6 * seconds / STEPS:.0f} | {serial / seconds:.2f}x | "
                f"{serial_xla / seconds:.2f}x |")
    lines += ["", f"Ops per inner step, {TASKS} tasks (nodes of the loop "
              "body in the post-optimization graph; the serial step runs once "
              f"per task, {TASKS} times per step of the batch):", "",
              "| contender | ops | of which Switch / Merge / Identity | by type |",
              "|---|---|---|---|"]
    for name, counts in ops.items():
        cond = sum(counts[k] for k in COND_OPS)
        lines.append(f"| {name} | {sum(counts.values())} | {cond} | "
                     + ", ".join(f"{k} {v}" for k, v in counts.most_common())
                     + " |")
    lines += ["", "The matmul kernels alone (µs per iteration of a compiled "
              "loop of 2000, best of 5; 'loop only' is the loop's own add and "
              "multiply):", "",
              "| kernel | default pool (2 threads) | 1 intra-op thread |",
              "|---|---|---|"]
    for name in per_kernel[0]:
        lines.append(f"| {name} | {per_kernel[0][name]:.1f} | "
                     f"{per_kernel[1][name]:.1f} |")
    bench.save_markdown(args.out, "profile_batched.md", lines)


if __name__ == "__main__":
    main()

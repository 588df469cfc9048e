"""Leap on the Omniglot net over 1, 2, 4 local worker processes
(``MultiWorkerMirroredStrategy``, CPU only): meta-steps per second and the
cost of the all-reduces of a meta-step.

    python benchmarks/distributed.py [--workers 1,2,4] [--tasks 4]
        [--inner-steps 5] [--steps 6] [--out docs/bench/distributed.json]

Each configuration starts its worker processes with
``experiments/launch_multiworker.py``'s ``TF_CONFIG`` (one process: one
device, no strategy). A worker fits ``--warmup`` meta-steps (tracing), then
``--steps`` more, timed (the median interval between their ends); then it times, alone, the
all-reduce of a meta-gradient (the net's 113 k float32 parameters) and of
a scalar: the median of ``--repeats`` calls of a function that makes the
values and all-reduces them, less the same without the all-reduce. The meta-batch (``--tasks``
20-way Omniglot tasks of 15 + 5 shots, synthetic images: the cost does not
depend on the pixels) is the same for every worker count, split over the
workers (strong scaling). Prints a Markdown table and writes the numbers
as JSON.
"""

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

#: Collectives of one meta-step besides the meta-gradient's: the task
#: counts (task seeds), the replica share (twice), the finite flag rides
#: with the gradient, the logs (one all-reduce), and Keras's reduction of
#: the step's logs (one per log: loss, support_loss, grad_norm,
#: path_length).
SCALAR_COLLECTIVES = 4 + 4


def worker(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    multi = "TF_CONFIG" in os.environ
    strategy = (tf.distribute.MultiWorkerMirroredStrategy() if multi
                else tf.distribute.get_strategy())
    import keras

    import tfmeta
    from tfmeta.tasks import omniglot

    rng = np.random.default_rng(0)
    ways, shots, query = omniglot.NUM_CLASSES, 15, 5

    def split(n):
        return (rng.uniform(size=(args.tasks, ways * n, 28, 28, 1))
                .astype("float32"),
                np.tile(np.repeat(np.arange(ways), n), (args.tasks, 1))
                .astype("int32"))

    (sx, sy), (qx, qy) = split(shots), split(query)
    data = tf.data.Dataset.from_tensors(
        {"support_x": sx, "support_y": sy, "query_x": qx,
         "query_y": qy}).repeat()
    with strategy.scope():
        meta = tfmeta.Leap(omniglot.leap_convnet(seed=0),
                           inner_optimizer=keras.optimizers.SGD(0.1),
                           inner_steps=args.inner_steps, inner_batch_size=20,
                           seed=0)
        meta.compile(optimizer=keras.optimizers.SGD(0.1),
                     loss=keras.losses.SparseCategoricalCrossentropy(
                         from_logits=True))
    ends = []
    clock = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: ends.append(
            time.perf_counter()))
    meta.fit(data, epochs=1, steps_per_epoch=args.warmup + args.steps,
             verbose=0, callbacks=[clock])
    # the median interval between the ends of the timed meta-steps (after
    # the warm-up ones, which trace the step and start the pipeline)
    seconds = float(np.median(np.diff(ends[args.warmup - 1:])))
    params = int(sum(np.prod(v.shape)
                     for v in meta.learner.trainable_variables))

    def timed(values, reduce):
        """Median seconds of a replica function making ``values()`` and
        all-reducing them (``reduce``) or not."""
        def step():
            out = values()
            if reduce:
                out = tf.distribute.get_replica_context().all_reduce(
                    "SUM", out)
            return tf.add_n([tf.reduce_sum(t) for t in tf.nest.flatten(out)])

        run = tf.function(lambda: strategy.run(step))
        times = []
        for i in range(3 + args.repeats):
            start = time.perf_counter()
            strategy.experimental_local_results(run())[0].numpy()
            times.append(time.perf_counter() - start)
        return float(np.median(times[3:]))

    def collective(values):
        """The all-reduce's own cost: with it, less without it."""
        return max(timed(values, True) - timed(values, False), 0.0)

    variables = meta.learner.trainable_variables
    gradient = collective(lambda: [tf.ones_like(v) for v in variables])
    scalar = collective(lambda: tf.ones([]))
    with open(args.out, "w") as f:
        json.dump({"seconds_per_meta_step": seconds, "parameters": params,
                   "gradient_all_reduce_s": gradient,
                   "scalar_all_reduce_s": scalar,
                   "replicas": strategy.num_replicas_in_sync}, f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--tasks", type=int, default=4,
                        help="meta-batch (all workers together)")
    parser.add_argument("--inner-steps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=6,
                        help="timed meta-steps")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench"
                                             / "distributed.json"))
    parser.add_argument("--worker", action="store_true",
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    import launch_multiworker as launcher
    rows = []
    for n in map(int, args.workers.split(",")):
        if args.tasks < n:
            parser.error(f"--tasks {args.tasks}: at least one task per "
                         f"worker ({n})")
        with tempfile.TemporaryDirectory() as tmp:
            command = [sys.executable, __file__, "--worker",
                       "--tasks", str(args.tasks),
                       "--inner-steps", str(args.inner_steps),
                       "--steps", str(args.steps),
                       "--warmup", str(args.warmup),
                       "--repeats", str(args.repeats),
                       "--out", os.path.join(tmp, "w{index}.json")]
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            if n == 1:
                env.pop("TF_CONFIG", None)
                env["CUDA_VISIBLE_DEVICES"] = ""
                processes = [launcher.subprocess.Popen(
                    [a.replace("{index}", "0") for a in command], env=env)]
            else:
                _, processes = launcher.start(command, workers=n, env=env)
            codes = launcher.wait(processes)
            if any(codes):
                raise SystemExit(f"{n} workers failed: exit statuses {codes}")
            results = [json.load(open(os.path.join(tmp, f"w{i}.json")))
                       for i in range(n)]
        chief = results[0]
        step = max(r["seconds_per_meta_step"] for r in results)
        allreduce = (chief["gradient_all_reduce_s"]
                     + SCALAR_COLLECTIVES * chief["scalar_all_reduce_s"])
        rows.append({"workers": n, "tasks_per_worker": args.tasks / n,
                     "meta_steps_per_s": 1 / step,
                     "seconds_per_meta_step": step,
                     "gradient_all_reduce_ms": 1e3 * chief[
                         "gradient_all_reduce_s"],
                     "scalar_all_reduce_ms": 1e3 * chief[
                         "scalar_all_reduce_s"],
                     "all_reduce_ms_per_meta_step": 1e3 * allreduce,
                     "parameters": chief["parameters"]})
        print(json.dumps(rows[-1]), flush=True)
    settings = {k: getattr(args, k) for k in
                ("tasks", "inner_steps", "steps", "warmup", "repeats")}
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"settings": settings, "rows": rows}, f, indent=2)
    print("\n| workers | tasks/worker | meta-steps/s | all-reduce ms/meta-step "
          "(gradient + 8 scalars) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['tasks_per_worker']:g} | "
              f"{r['meta_steps_per_s']:.3f} | "
              f"{r['all_reduce_ms_per_meta_step']:.2f} "
              f"({r['gradient_all_reduce_ms']:.2f} + 8 x "
              f"{r['scalar_all_reduce_ms']:.2f}) |")


if __name__ == "__main__":
    main()

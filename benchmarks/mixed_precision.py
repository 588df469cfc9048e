"""The conv inner loop in bfloat16 (and float16) against float32 on this
machine: time per inner step of the compiled inner loop of the Omniglot net.

    python benchmarks/mixed_precision.py [--policies float32 mixed_bfloat16
        mixed_float16] [--steps 10] [--rounds 5]

The Leap/MAML Omniglot net (4 x conv 64 + batch norm, 28x28, 20-way),
support minibatches of 20 of a 300-image task, inner SGD 0.1: ``K = --steps``
updates of ``tfmeta.inner_loop.optimize`` in one ``tf.function`` (what
``adapt``/``evaluate`` and the first-order methods run), and the same loop
differentiated (second-order MAML's task meta-gradient). One model per
policy, built under it, all in one process, called in turn round after
round (so that all see the same load of a shared machine). Prints the CPU's
bfloat16 instructions (``/proc/cpuinfo`` flags: ``avx512_bf16``,
``amx_bf16``), then the median over ``--rounds`` calls after a first,
compiling one, and the range.
"""

import argparse
import json
import os
import pathlib
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as tfmeta does
ROOT = pathlib.Path(__file__).resolve().parents[1]


def cpu_flags():
    """The bfloat16/float16-related flags of this CPU."""
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    return sorted(f for f in set(flags)
                  if "bf16" in f or "amx" in f or "fp16" in f or f in (
                      "avx512f", "avx2", "f16c"))


def functions(policy, steps):
    """``(adapt, second_order)``: compiled functions of a model built under
    ``policy`` (a layer keeps the policy it was built under, so models of
    several policies live in one process)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tfmeta import inner_loop, inner_optimizers
    from tfmeta.tasks.omniglot import leap_convnet

    keras.config.set_dtype_policy(policy)
    model = leap_convnet(seed=0)
    keras.config.set_dtype_policy("float32")
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = inner_optimizers.from_keras(keras.optimizers.SGD(0.1))
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((300, 28, 28, 1), np.float32))
    y = tf.constant(rng.integers(0, 20, 300))
    params = [tf.convert_to_tensor(v) for v in model.trainable_variables]
    nontrainable = [tf.convert_to_tensor(v)
                    for v in model.non_trainable_variables]
    seed = tf.constant([1, 2], tf.int64)
    assert params[0].dtype == tf.float32, params[0].dtype

    def adapt(params):
        return inner_loop.adapt(model, loss_fn, optimizer, params,
                                nontrainable, tf.cast(x, model.compute_dtype),
                                y, steps, batch_size=20, seed=seed)

    @tf.function
    def first_order():
        return adapt(params).loss_after

    @tf.function
    def second_order():
        with tf.GradientTape() as tape:
            tape.watch(params)
            result = adapt(params)
        return tape.gradient(result.loss_after, params)

    return model.compute_dtype, {"adapt": first_order, "maml": second_order}


def race(policies, steps, rounds):
    """Every policy's functions in this process, called in turn, round
    after round (after a compiling call each)."""
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import tensorflow as tf

    built = {p: functions(p, steps) for p in policies}
    times = {(p, name): [] for p in policies for name in ("adapt", "maml")}
    for p, (_, fns) in built.items():
        for fn in fns.values():
            value = fn()
            assert all(np.all(np.isfinite(v)) for v in tf.nest.flatten(value))
    for _ in range(rounds):
        for p, (_, fns) in built.items():
            for name, fn in fns.items():
                start = time.perf_counter()
                tf.nest.map_structure(lambda t: t.numpy(), fn())
                times[p, name].append(time.perf_counter() - start)
    rows = []
    for p, (compute, _) in built.items():
        row = {"policy": p, "steps": steps, "compute_dtype": compute}
        for name in ("adapt", "maml"):
            t = times[p, name]
            row[name + "_ms_per_step"] = round(
                1000 * statistics.median(t) / steps, 2)
            row[name + "_spread_ms"] = [round(1000 * min(t) / steps, 2),
                                        round(1000 * max(t) / steps, 2)]
        rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policies", nargs="+",
                        default=["float32", "mixed_bfloat16", "mixed_float16"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args()
    print("CPU flags:", " ".join(cpu_flags()) or "(none found)")
    rows = race(args.policies, args.steps, args.rounds)
    for row in rows:
        print(f"{row['policy']:>15} ({row['compute_dtype']}): adapt "
              f"{row['adapt_ms_per_step']:7.2f} ms/step "
              f"{row['adapt_spread_ms']}, second-order "
              f"{row['maml_ms_per_step']:7.2f} ms/step {row['maml_spread_ms']}",
              flush=True)
    base = next((r for r in rows if r["policy"] == "float32"), None)
    for row in rows:
        if base and row is not base:
            print(f"{row['policy']}: adapt "
                  f"{row['adapt_ms_per_step'] / base['adapt_ms_per_step']:.2f}x"
                  f", second-order "
                  f"{row['maml_ms_per_step'] / base['maml_ms_per_step']:.2f}x"
                  " the float32 time")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""``fit`` on tfmeta's own task datasets with tf.data's autotuning on and
off, alternating in one process (``tfmeta.tasks.pipeline.without_autotuning``,
docs/performance.md).

    python benchmarks/autotune.py [--only maml-sine,reptile-sine,reptile-omniglot]
                                  [--rounds 8] [--calls N]

Workloads (the peers' settings, ``benchmarks/peers.py``): ``maml-sine`` and
``reptile-sine`` (the sine MLP, 10 tasks, 10 support and 10 query points, 5
and 32 SGD steps of 0.01, outer Adam 1e-3) on ``tfmeta.tasks.sine.dataset``;
``reptile-omniglot`` (the 4 x conv 64 net, 5-way 5-shot, 5 query shots, 5
steps of SGD 0.1, meta-batch 5) on ``tfmeta.tasks.omniglot.dataset`` with its
augmentation (the images drawn and transformed in tf.data). Each workload
builds one meta-learner and two datasets from the same builder, one with
the autotuning on and one with it off (set explicitly on both, whatever the
builder sets), warms both up, then times ``--rounds`` rounds of one
``fit(steps_per_epoch=calls)`` per dataset in rotated order. Prints the
milliseconds of every call, the medians and the per-round ratio off/on.
"""

import argparse
import os
import pathlib
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CALLS = {"maml-sine": 128, "reptile-sine": 128, "reptile-omniglot": 8}


def autotuned(dataset, enabled):
    import tensorflow as tf
    options = tf.data.Options()
    options.autotune.enabled = enabled
    return dataset.with_options(options)


def build(workload):
    """``(meta, dataset)`` of a workload."""
    import keras
    import tfmeta
    keras.utils.set_random_seed(0)
    if workload.endswith("sine"):
        maml = workload == "maml-sine"
        meta = (tfmeta.MAML if maml else tfmeta.Reptile)(
            tfmeta.tasks.sine.mlp(seed=0),
            inner_optimizer=keras.optimizers.SGD(0.01),
            inner_steps=5 if maml else 32)
        meta.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
        return meta, tfmeta.tasks.sine.dataset(meta_batch_size=10)
    layers = [keras.Input((28, 28, 1))]
    for _ in range(4):
        layers += [keras.layers.Conv2D(64, 3, padding="same"),
                   tfmeta.layers.BatchNormalization(),
                   keras.layers.ReLU(), keras.layers.MaxPooling2D(2)]
    learner = keras.Sequential(layers + [keras.layers.Flatten(),
                                         keras.layers.Dense(5)])
    meta = tfmeta.Reptile(learner, inner_optimizer=keras.optimizers.SGD(0.1),
                          inner_steps=5)
    meta.compile(optimizer=keras.optimizers.Adam(1e-3),
                 loss=keras.losses.SparseCategoricalCrossentropy(
                     from_logits=True))
    data = tfmeta.tasks.omniglot.dataset(
        meta_batch_size=5, ways=5, support_shots=5, query_shots=5)
    return meta, data


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="maml-sine,reptile-sine,reptile-omniglot")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--calls", type=int, default=0,
                        help="meta-steps per fit call (default: 128 on sine, "
                        "8 on Omniglot)")
    args = parser.parse_args(argv)
    for workload in args.only.split(","):
        meta, data = build(workload)
        calls = args.calls or CALLS[workload]
        sets = {"autotune on": autotuned(data, True),
                "autotune off": autotuned(data, False)}
        for ds in sets.values():  # warm-up: tracing, compiling
            meta.fit(ds, steps_per_epoch=calls, epochs=1, verbose=0)
        ms = {name: [] for name in sets}
        names = list(sets)
        loads = []
        for r in range(args.rounds):
            for name in names[r % 2:] + names[:r % 2]:
                start = time.perf_counter()
                meta.fit(sets[name], steps_per_epoch=calls, epochs=1, verbose=0)
                ms[name].append(round((time.perf_counter() - start) * 1000))
            with open("/proc/loadavg") as f:
                loads.append(f.read().split()[0])
        ratios = sorted(a / b for a, b in zip(ms["autotune off"],
                                              ms["autotune on"]))
        print(f"{workload} ({calls} meta-steps per call, load average "
              f"{min(loads, key=float)}-{max(loads, key=float)}):")
        for name, values in ms.items():
            print(f"  {name:13s} median {statistics.median(values):6.0f} ms "
                  f"({calls / statistics.median(values) * 1000:7.1f} "
                  f"meta-steps/s): {values}")
        print(f"  time off / on per round: median "
              f"{statistics.median(ratios):.3f} ({ratios[0]:.3f}-"
              f"{ratios[-1]:.3f})", flush=True)


if __name__ == "__main__":
    main()

"""Where a sine-MLP meta-step's time goes under ``fit``'s fast path, beside
the JAX reference of ``peers.py`` (the same workloads: MAML 5 steps and
Reptile 32 steps, meta-batch 10, 1-64-64-1 tanh, outer Adam).

    python benchmarks/profile_meta_step.py [--only maml-sine,reptile-sine] [--rounds 5]

For each workload and contender, in one process, alternating rounds:

* ``fit``: tfmeta's ``fit`` with its default settings (what a user runs);
  ``fit, tasks serial``: the same with ``vectorize_tasks=False`` (the
  defaults before tasks were vectorized);
* ``train_step``: tfmeta's meta-step alone, ``tf.function(train_step,
  jit_compile=True)`` called from a Python loop on one task batch, as the
  JAX reference calls its step (so ``fit`` minus this is Keras's loop
  around the step: the dataset iterator, optionals, the launch of the
  compiled step);
* ``jax``: the jitted JAX meta-step of ``peers_jax.py`` from a Python loop.

and, from the optimized HLO module XLA compiled for each step, what one
execution of it runs (``hlo_counts``: a loop's body once per iteration):
the instructions outside fused computations ("thunks": roughly what the
CPU runtime dispatches one by one), ``while`` loops, ``dot``s (matmuls,
those fused into other kernels too), fusions (XLA-generated kernels);
with ``--dots``, the matmuls by shape. ``--rounds 0`` counts only.
"""

import argparse
import collections
import os
import pathlib
import re
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import peers  # noqa: E402
import tfmeta  # noqa: E402

_FREE = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast"}


def _computations(text):
    """``{name: [(opcode, line), ...]}`` of an HLO module's text, and the
    name of its entry computation."""
    comps, entry, name = {}, None, None
    for line in text.splitlines():
        head = re.match(r"^(ENTRY )?%(\S+) ", line)
        if head and line.rstrip().endswith("{"):
            name = head.group(2)
            comps[name] = []
            if head.group(1):
                entry = name
            continue
        op = re.search(r" = .*? ([a-z][a-z0-9-]*)\(", line)
        if name and op:
            comps[name].append((op.group(1), line))
    return comps, entry


def _callee(line, attr):
    found = re.search(attr + r"=%([^\s,}]+)", line)
    return found.group(1) if found else None


def _dot_shape(line):
    """``"dot f32[10,64,64]"``: a matmul's result type (no layout)."""
    return "dot " + re.search(r" = (\S+?)(\{[^}]*\})? dot\(", line).group(1)


def hlo_counts(text, unknown_trip=1):
    """What one execution of an optimized HLO module runs: ``{kind: count}``
    with ``thunks`` (the kernels the CPU runtime dispatches one by one:
    instructions outside fused computations, but not parameters, constants,
    tuples or bitcasts), ``dot`` (matmuls, also those inside fusions),
    ``fusion``, ``while``, ``conditional``, ``custom-call``, and
    ``"dot SHAPE"``: the matmuls by result shape. A ``while``
    loop's body and condition count once per iteration (its
    ``known_trip_count``; without one, ``unknown_trip`` times, and counted
    in ``unknown trip count``), a conditional's branch as its largest, a
    ``call`` as its callee.

    Args:
      text: the module's text (``as_text()``, ``stage="optimized_hlo"``).
      unknown_trip: iterations of a loop without a known trip count
        (default 1; tfmeta's vectorized inner loop, a ``pfor`` loop,
        runs ``inner_steps - 1`` times).
    """
    comps, entry = _computations(text)
    memo = {}

    def dots_in(name):  # the matmuls of a fused computation, nested ones too
        n = collections.Counter()
        for kind, line in comps.get(name, ()):
            if kind == "dot":
                n[_dot_shape(line)] += 1
            if kind == "fusion":
                n.update(dots_in(_callee(line, "calls")))
        return n

    def run(name):
        if name in memo:
            return memo[name]
        counts = collections.Counter()
        for kind, line in comps.get(name, ()):
            if kind in _FREE:
                continue
            if kind == "call":
                counts.update(run(_callee(line, "to_apply")))
                continue
            counts["thunks"] += 1
            if kind in ("while", "dot", "fusion", "custom-call", "conditional"):
                counts[kind] += 1
            if kind == "dot":
                counts[_dot_shape(line)] += 1
            if kind == "fusion":
                fused = dots_in(_callee(line, "calls"))
                counts["dot"] += sum(fused.values())
                counts.update(fused)
            elif kind == "while":
                trip = re.search(r'known_trip_count[^0-9]*(\d+)', line)
                n = int(trip.group(1)) if trip else unknown_trip
                counts["unknown trip count"] += not trip
                for _ in range(n):
                    counts.update(run(_callee(line, "body")))
                for _ in range(n + 1):
                    counts.update(run(_callee(line, "condition")))
            elif kind == "conditional":
                names = re.findall(r"%([^\s,}]+)", re.search(
                    r"(branch_computations=\{[^}]*\}|true_computation=.*)",
                    line).group(0))
                branches = [run(b) for b in names if b in comps]
                if branches:
                    counts.update(max(branches, key=lambda c: c["thunks"]))
        memo[name] = counts
        return counts

    return run(entry)


def tfmeta_contenders(w, data, vectorize=None, autotune=True):
    keras.utils.set_random_seed(0)
    cls = {"maml": tfmeta.MAML, "reptile": tfmeta.Reptile}[w["method"]]
    kwargs = {} if vectorize is None else {"vectorize_tasks": vectorize}
    meta = cls(tfmeta.tasks.sine.mlp(seed=0),
               inner_optimizer=keras.optimizers.SGD(w["inner_lr"]),
               inner_steps=w["steps"], **kwargs)
    meta.compile(optimizer=keras.optimizers.Adam(peers.OUTER_LR), loss="mse")
    batch = dict(zip(("support_x", "support_y", "query_x", "query_y"),
                     (tf.constant(a) for a in data)))
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    if not autotune:  # (fit_calls.py --no-autotune)
        options = tf.data.Options()
        options.autotune.enabled = False
        dataset = dataset.with_options(options)

    def fit(calls):
        meta.fit(dataset, steps_per_epoch=calls, epochs=1, verbose=0)

    step = tf.function(meta.train_step, jit_compile=True)

    def loop(calls):
        for _ in range(calls):
            out = step(batch)
        float(out["loss"])

    loop.hlo = lambda: step.experimental_get_compiler_ir(batch)(
        stage="optimized_hlo")
    fit.settings = (f"jit_compile={meta.jit_compile}, "
                    f"vectorize_tasks={meta.vectorize_tasks}")
    return fit, loop


def jax_contender(w, data):
    import jax
    import jax.numpy as jnp
    import peers_jax
    run = peers_jax.contender(w, data, peers.OUTER_LR)
    run.hlo = lambda: run.meta_step.lower(
        run.holder["params"], run.holder["state"],
        *[jnp.asarray(a) for a in data]).compile().as_text()
    del jax
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="maml-sine,reptile-sine")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=128,
                        help="meta-steps per round (a multiple of 32)")
    parser.add_argument("--hlo-dir", help="also write the HLO modules here")
    parser.add_argument("--dots", action="store_true",
                        help="also print the matmuls executed, by shape")
    args = parser.parse_args(argv)
    with open("/proc/loadavg") as f:
        print("load average at start:", f.read().split()[0], flush=True)
    for wl in args.only.split(","):
        w = peers.WORKLOADS[wl]
        data = peers.task_data(w)
        fit, loop = tfmeta_contenders(w, data)
        fit_serial, loop_serial = tfmeta_contenders(w, data, vectorize=False)
        contenders = {f"fit ({fit.settings})": fit,
                      "fit, tasks serial": fit_serial,
                      "train_step, XLA, Python loop": loop,
                      "train_step, tasks serial": loop_serial,
                      "jax": jax_contender(w, data)}
        for run in (contenders.values() if args.rounds else ()):
            run(32)  # warm-up: tracing, compiling
        rates = {name: [] for name in contenders}
        names = list(contenders)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                start = time.perf_counter()
                contenders[name](args.calls)
                rates[name].append(args.calls / (time.perf_counter() - start))
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
        print(f"\n{wl} (load average at end: {load}): meta-steps/s, median "
              f"of {args.rounds} rounds (range); µs per meta-step")
        for name, r in (rates.items() if args.rounds else ()):
            m = statistics.median(r)
            print(f"  {name:48s} {m:8.1f} ({min(r):.0f}-{max(r):.0f}) "
                  f"{1e6 / m:8.0f} µs", flush=True)
        for name in ("train_step, XLA, Python loop",
                     "train_step, tasks serial", "jax"):
            text = contenders[name].hlo()
            if args.hlo_dir:
                pathlib.Path(args.hlo_dir).mkdir(parents=True, exist_ok=True)
                (pathlib.Path(args.hlo_dir) / f"{wl} {name}.hlo".replace(
                    " ", "_").replace(",", "")).write_text(text)
            # tfmeta's vectorized inner loop (no known trip count) runs
            # steps - 1 times; the serial step's nested loops: counted once.
            trips = w["steps"] - 1 if name.startswith("train_step, XLA") else 1
            counts = hlo_counts(text, trips)
            print(f"  HLO of {name:40s} " + ", ".join(
                f"{k} {counts[k]}" for k in ("thunks", "while", "dot",
                                             "fusion", "conditional",
                                             "custom-call",
                                             "unknown trip count")),
                  flush=True)
            if args.dots:
                print("    matmuls: " + ", ".join(
                    f"{k[4:]} x{n}" for k, n in sorted(counts.items())
                    if k.startswith("dot ")), flush=True)


if __name__ == "__main__":
    main()

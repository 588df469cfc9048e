"""Sine-wave regression demo: Leap, Reptile, FOMAML, MAML, FineTune, Scratch.

Meta-trains each method on the Reptile/MAML sine family (10-shot, 1-64-64-1
tanh MLP), adapts it on held-out tasks with 32 SGD steps and reports the
post-adaptation MSE (mean and spread over tasks), plus a figure like Figure 1
of the Reptile paper. Needs no data download. About five minutes on 2 cores:

    python experiments/sine_demo.py                  # the default budget
    python experiments/sine_demo.py --meta-steps 200 # a quick look
"""

import argparse
import csv
import logging
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as tfmeta does

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import tfmeta  # noqa: E402
from tfmeta.tasks import sine  # noqa: E402

class _OneTracePerMetaLearner(logging.Filter):
    """Drops TensorFlow's retracing warnings for evaluate_tasks and adapt:
    each of the six meta-learners traces its own evaluate_tasks and adapt
    functions once, and TensorFlow counts the traces of all six together
    (they wrap the same methods), as if one function were retraced. Other
    retracing warnings still show."""

    def filter(self, record):
        message = record.getMessage()
        return not ("triggered tf.function retracing" in message and (
            "MetaLearner._evaluate_tasks_graph" in message
            or "MetaLearner._adapt_graph" in message))


logging.getLogger("tensorflow").addFilter(_OneTracePerMetaLearner())

INNER_LR = 0.02     # Reptile's sine set-up: SGD 0.02 on 10 points
EVAL_STEPS = 32     # adaptation steps on a held-out task (Reptile fig. 1)


def methods(meta_steps):
    """(class, constructor kwargs, outer optimizer) of every method."""
    annealed = lambda lr: keras.optimizers.SGD(  # noqa: E731
        tfmeta.linear_annealing(lr, meta_steps))
    return {
        "Leap": (tfmeta.Leap, {"inner_steps": 32}, annealed(0.01)),
        "Reptile": (tfmeta.Reptile, {"inner_steps": 32}, annealed(0.1)),
        "FOMAML": (tfmeta.FOMAML, {"inner_steps": 32},
                   keras.optimizers.Adam(1e-3)),
        "MAML": (tfmeta.MAML, {"inner_steps": 5}, keras.optimizers.Adam(1e-3)),
        "FineTune": (tfmeta.FineTune, {}, keras.optimizers.Adam(1e-3)),
        "Scratch": (tfmeta.Scratch, {}, keras.optimizers.SGD(0.0)),  # no outer step
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--meta-steps", type=int, default=3000,
                        help="meta-steps per method (default 3000)")
    parser.add_argument("--meta-batch", type=int, default=5,
                        help="tasks per meta-step (default 5)")
    parser.add_argument("--test-tasks", type=int, default=200,
                        help="held-out tasks to evaluate on (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default=",".join(methods(1)),
                        help="comma-separated subset of " + ",".join(methods(1)))
    parser.add_argument("--out", default="runs/sine_demo",
                        help="directory for results.md, results.csv and the PNG")
    args = parser.parse_args(argv)
    unknown = set(args.methods.split(",")) - set(methods(1))
    if unknown:
        parser.error(f"unknown method(s) {sorted(unknown)}; "
                     f"choose from {sorted(methods(1))}")
    for name in ("meta_steps", "meta_batch", "test_tasks"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def plot(trained, task, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(-5, 5, 200, dtype="float32")[:, None]
    truth = task["amplitude"] * np.sin(grid + task["phase"])
    cols = min(3, len(trained))
    rows = -(-len(trained) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows),
                             sharey=True, squeeze=False)
    for ax in axes.flat[len(trained):]:
        ax.set_visible(False)
    for i, (ax, (name, meta)) in enumerate(zip(axes.flat, trained.items())):
        ax.plot(grid, truth, "k-", lw=2, label="true")
        # Direct calls, not predict(): each adapted model is a new Keras
        # model, and predict() would trace a new function for each one.
        ax.plot(grid, meta.learner(grid), "C0--", label="before")
        for steps, color in ((8, "C1"), (EVAL_STEPS, "C2")):
            adapted = meta.adapt(task["support_x"], task["support_y"], steps=steps)
            ax.plot(grid, adapted(grid), color=color,
                    label=f"after {steps} steps")
        ax.plot(task["support_x"], task["support_y"], "k^", label="support")
        ax.set_title(name)
        ax.set_ylim(-6, 6)
        ax.set_xlabel("x")
        if i % cols == 0:
            ax.set_ylabel("y (held-out task)")
    axes.flat[0].legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    test = sine.tasks(args.test_tasks, support_size=10, query_size=100,
                      seed=10_000 + args.seed)
    rows, trained = [], {}
    chosen = args.methods.split(",")
    for name, (cls, kwargs, outer) in methods(args.meta_steps).items():
        if name not in chosen:
            continue
        keras.utils.set_random_seed(args.seed)
        meta = cls(sine.mlp(seed=args.seed), seed=args.seed,
                   inner_optimizer=keras.optimizers.SGD(INNER_LR),
                   eval_steps=EVAL_STEPS, **kwargs)
        meta.compile(optimizer=outer, loss="mse")
        print(f"== {name}: {args.meta_steps} meta-steps of {args.meta_batch} tasks",
              flush=True)
        start = time.perf_counter()
        if cls is not tfmeta.Scratch:
            meta.fit(sine.dataset(meta_batch_size=args.meta_batch,
                                  seed=args.seed),
                     epochs=10, steps_per_epoch=max(1, args.meta_steps // 10),
                     verbose=2)
        seconds = time.perf_counter() - start
        losses = meta.evaluate_tasks(test)
        before, after = losses["loss_before"], losses["loss_after"]
        rows.append({
            "method": name, "mse_before": before.mean(),
            "mse_after": after.mean(), "mse_after_std": after.std(),
            "mse_after_median": np.median(after), "train_seconds": seconds})
        print(f"   post-adaptation MSE {after.mean():.3f} ± {after.std():.3f} "
              f"(before {before.mean():.3f}), {seconds:.0f} s", flush=True)
        trained[name] = meta

    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"Held-out sine tasks: {args.test_tasks} tasks, 10 support points, "
        f"100 query points, {EVAL_STEPS} SGD steps (lr {INNER_LR}) of "
        "adaptation; MSE on the query points.",
        "",
        "| method | MSE before adaptation | MSE after (mean ± std over tasks) "
        "| median | meta-training time (s) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['mse_before']:.3f} | {r['mse_after']:.3f} ± "
            f"{r['mse_after_std']:.3f} | {r['mse_after_median']:.3f} | "
            f"{r['train_seconds']:.0f} |")
    table = "\n".join(lines)
    (out / "results.md").write_text(table + "\n")
    print("\n" + table)
    shown = int(np.argmax(test["amplitude"][:10]))  # a task with a visible wave
    task = {k: v[shown] for k, v in test.items()}
    plot(trained, task, out / "sine_demo.png")
    print(f"\nwrote {out / 'results.md'}, {out / 'results.csv'} and "
          f"{out / 'sine_demo.png'}")


if __name__ == "__main__":
    main()

"""Warp-RNN (WarpGrad, section 4.3 and appendix I): a recurrent task learner
whose weights a meta-LSTM warp modulates (eq. 20), meta-trained continually
(Algorithm 3) with the approximate objective (eq. 12), against the plain RNN
and a HyperRNN with the same meta-LSTM trained as ordinary weights.

The paper's experiment is maze navigation with advantage actor-critic
(Figure 4: Warp-RNN reaches a mean cumulative reward of ~160 in 60 000
episodes, the baselines ~125 after 100 000). This script runs the same
three learners on a small supervised stream instead (no RL environment, a
few minutes on 2 CPU cores): every training step brings a batch of new sine
tasks ``a sin(w x + b)`` (``tfmeta.tasks.sine.sequence_dataset``: random
amplitude, phase and frequency); an example is a window of ``length``
values and the target is the next one, so the RNN has to infer each task's
frequency from the window in its hidden state, as the maze agent infers the
goal. As in the paper, nothing is reset between tasks: the task parameters
(W, V, b and the linear head) are trained on the stream, and

* ``RNN``: a plain ``tanh`` RNN (``keras.layers.SimpleRNN``) trained by Adam
  (lr 1e-3, the paper's task optimizer) on each batch's support windows;
* ``HyperRNN``: ``tfmeta.layers.WarpRNN`` trained by Adam as an ordinary
  model (the meta-LSTM and its projection updated with every task step:
  the paper's control for the meta-LSTM's capacity);
* ``Warp-RNN``: the same ``WarpRNN`` learner with ``tfmeta.WarpGrad(
  meta_training="continual", objective="approximate")``: theta takes an
  Adam step on ``lambda`` times the support-loss gradient every step, the
  warp parameters (meta-LSTM, projection) an Adam step on the eq. 12
  gradient (L_task on the support windows, one SGD step of ``alpha``,
  L_meta on the query windows) averaged over ``eta`` steps, every ``eta``
  steps (the paper: eta = 30). The paper's eq. 12 evaluates L_meta at the
  step theta actually took; our continual mode takes that step with the
  inner SGD (lr ``alpha``), so ``alpha`` should be about as small as
  Adam's steps: 1e-4 by default (with ``alpha = 0.01`` the look-ahead
  lands far from where theta goes and Warp-RNN trails the plain RNN;
  docs/warpgrad.md).

All three start from the same W, V, b and head (the untrained Warp-RNN is
the plain RNN: ``modulation_offset=1``, projection 0). We report the
mean squared error of the next-value prediction on a fixed set of held-out
tasks during training (lower is better), mean over seeds.

    python experiments/warpgrad_rnn.py --out runs/warpgrad_rnn
    python experiments/warpgrad_rnn.py --steps 100 --seeds 1 --eval-every 50  # smoke

Writes ``curves.csv``, ``results.md`` and ``warpgrad_rnn.png`` to ``--out``.
"""

import argparse
import pathlib
import sys
import time

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
import tfmeta  # noqa: E402
from tfmeta import layers as L  # noqa: E402
from tfmeta.tasks import sine  # noqa: E402

METHODS = ("RNN", "HyperRNN", "Warp-RNN")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000,
                        help="training steps (task batches) per run")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--units", type=int, default=32,
                        help="task RNN hidden units (the paper: 100)")
    parser.add_argument("--meta-units", type=int, default=32,
                        help="meta-LSTM units")
    parser.add_argument("--length", type=int, default=10,
                        help="window length (time steps)")
    parser.add_argument("--tasks-per-step", type=int, default=8)
    parser.add_argument("--windows", type=int, default=16,
                        help="support (and query) windows per task")
    parser.add_argument("--lr", type=float, default=1e-3,
                        help="beta: Adam learning rate of theta (x lambda = "
                        "1) and phi (the paper's task optimizer: Adam 1e-3)")
    parser.add_argument("--optimizer", choices=("adam", "sgd"),
                        default="adam", help="optimizer of theta and phi")
    parser.add_argument("--task-lr", type=float, default=1e-4,
                        help="alpha: the SGD task step inside L_meta (eq. 12);"
                        " small, as Adam's steps of theta are")
    parser.add_argument("--eta", type=int, default=30,
                        help="steps between warp updates (Algorithm 3)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", default="runs/warpgrad_rnn")
    args = parser.parse_args(argv)
    for key in ("steps", "seeds", "eval_every", "units", "meta_units",
                "length", "tasks_per_step", "windows", "eta"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be positive")
    for key in ("lr", "task_lr"):
        if not getattr(args, key) > 0:
            parser.error(f"--{key.replace('_', '-')} must be positive")
    args.methods = args.methods.split(",")
    if set(args.methods) - set(METHODS):
        parser.error(f"unknown method(s) {sorted(set(args.methods) - set(METHODS))}"
                     f"; choose from {list(METHODS)}")
    return args


def optimizer(args):
    return (keras.optimizers.Adam if args.optimizer == "adam"
            else keras.optimizers.SGD)(args.lr)


def warp_rnn_learner(args, seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((args.length, 1)),
        L.WarpRNN(args.units, meta_units=args.meta_units, name="warp_rnn"),
        keras.layers.Dense(1, name="head")], name="warp_rnn_learner")


def plain_rnn_learner(args, like):
    """keras SimpleRNN + head with ``like``'s task weights (W, V, b, head)."""
    model = keras.Sequential([keras.Input((args.length, 1)),
                              keras.layers.SimpleRNN(args.units, name="rnn"),
                              keras.layers.Dense(1, name="head")])
    warp_rnn, head = like.layers
    for mine, theirs in zip(model.layers[0].cell.weights + model.layers[1].weights,
                            warp_rnn.task_variables + head.weights):
        mine.assign(theirs)
    return model


def flat_support(batch):
    """A task batch -> (windows, targets) of all its support windows."""
    x, y = batch["support_x"], batch["support_y"]
    return (tf.reshape(x, [-1] + x.shape[2:].as_list()), tf.reshape(y, [-1, 1]))


class HeldOutError(keras.callbacks.Callback):
    """Held-out next-value MSE of ``model`` after every epoch."""

    def __init__(self, model, tasks, every, rows, keys):
        super().__init__()
        self.net, self.every, self.rows, self.keys = model, every, rows, keys
        self.x = tasks["query_x"].reshape((-1,) + tasks["query_x"].shape[2:])
        self.y = tasks["query_y"].reshape(-1, 1)

    def record(self, step):
        pred = self.net.predict(self.x, batch_size=1024, verbose=0)
        mse = float(np.mean((pred - self.y) ** 2))
        self.rows.append(dict(self.keys, step=step, heldout_mse=mse))
        return mse

    def on_epoch_end(self, epoch, logs=None):
        mse = self.record((epoch + 1) * self.every)
        print(f"   {self.keys['method']} seed {self.keys['seed']} step "
              f"{(epoch + 1) * self.every}: held-out MSE {mse:.4f}", flush=True)


def run(method, seed, args, heldout, rows):
    learner = warp_rnn_learner(args, seed)
    stream = sine.sequence_dataset(args.tasks_per_step, args.windows,
                                   args.windows, length=args.length,
                                   seed=100 + seed)
    if method == "Warp-RNN":
        model = tfmeta.WarpGrad(
            learner, objective="approximate", meta_training="continual",
            replay_batch_size=args.eta, init_weight=1.0, inner_steps=1,
            inner_optimizer=keras.optimizers.SGD(args.task_lr))
        model.compile(optimizer=optimizer(args), loss="mse")
        net, data = learner, stream
    else:
        net = learner if method == "HyperRNN" else plain_rnn_learner(
            args, learner)
        net.compile(optimizer=optimizer(args), loss="mse")
        model, data = net, stream.map(flat_support)
    callback = HeldOutError(net, heldout, args.eval_every, rows,
                            dict(method=method, seed=seed))
    callback.record(0)
    t0 = time.perf_counter()
    model.fit(data, epochs=args.steps // args.eval_every,
              steps_per_epoch=args.eval_every, callbacks=[callback],
              verbose=0)
    return time.perf_counter() - t0


def write_outputs(out, rows, seconds, args, command):
    import csv

    with open(out / "curves.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["method", "seed", "step",
                                               "heldout_mse"])
        writer.writeheader()
        writer.writerows(rows)
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    steps = sorted({r["step"] for r in rows})
    marks = [s for s in steps if s in (0, steps[-1]) or s % max(
        1, steps[-1] // 5) == 0]

    def mse(m, s):
        v = [r["heldout_mse"] for r in rows if r["method"] == m
             and r["step"] == s]
        return (np.mean(v), np.std(v)) if v else (np.nan, np.nan)

    lines = [
        "Warp-RNN on a stream of sine sequence tasks (WarpGrad appendix I's "
        "learners on a supervised stand-in for the maze): held-out "
        "next-value MSE (mean ± std over seeds), lower is better.", "",
        f"Command: `{command}`", "",
        f"{args.steps} steps of {args.tasks_per_step} new tasks x "
        f"{args.windows} windows of length {args.length}; RNN {args.units} "
        f"units, meta-LSTM {args.meta_units}; {args.optimizer} {args.lr} (theta, "
        f"phi; lambda 1), alpha {args.task_lr}, eta {args.eta}; seeds "
        f"{args.seeds}. Wall time per run: " + ", ".join(
            f"{m} {np.mean(seconds[m]):.0f} s" for m in methods) + ".", "",
        "| step | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods)]
    for s in marks:
        lines.append(f"| {s} | " + " | ".join(
            "{:.4f} ± {:.4f}".format(*mse(m, s)) for m in methods) + " |")
    tail = [s for s in steps if s > steps[-1] / 2]
    lines += ["", "Mean held-out MSE over the second half of training: "
              + ", ".join(f"{m} {np.mean([mse(m, s)[0] for s in tail]):.4f}"
                          for m in methods) + "."]
    (out / "results.md").write_text("\n".join(lines) + "\n")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, m in enumerate(methods):
        mean = np.array([mse(m, s)[0] for s in steps])
        sd = np.array([mse(m, s)[1] for s in steps])
        ax.plot(steps, mean, color=f"C{i}", label=m)
        ax.fill_between(steps, mean - sd, mean + sd, color=f"C{i}", alpha=0.2)
    ax.set_yscale("log")
    ax.set_xlabel("training steps (task batches)")
    ax.set_ylabel("held-out next-value MSE")
    ax.set_title("Warp-RNN vs RNN and HyperRNN (sine sequences)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "warpgrad_rnn.png", dpi=110)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python experiments/warpgrad_rnn.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    heldout = sine.sequence_tasks(50, query_size=32, length=args.length,
                                  seed=10_000)
    rows, seconds = [], {m: [] for m in args.methods}
    for seed in range(args.seeds):
        for method in args.methods:
            print(f"== {method}, seed {seed}", flush=True)
            seconds[method].append(run(method, seed, args, heldout, rows))
            write_outputs(out, rows, seconds, args, command)
    print(f"wrote {out}/", flush=True)


if __name__ == "__main__":
    main()

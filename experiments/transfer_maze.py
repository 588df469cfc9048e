"""Maze meta-transfer: Table 3 of the gradient-based transfer paper
(section 5.5, appendix A.5).

Support: the occupancy of a 2 x N maze's cells (``(row, column) ->
occupied``); query: the optimal action at a free cell (a depth-first
search's first move). Every encoder is meta-trained for each width N and
seed; on held-out mazes the decoded query learner's greedy policy is rolled
out from the start for 2N moves and scored by Table 3's reward, minus the
normalized Manhattan distance of the final cell to the goal (0 = reached,
-1 = never left the start).

Choices where the paper is silent (stated in results.md): the query learner
is a 2-40-40-4 ReLU MLP with a softmax cross-entropy loss; the gradient
encoders' support loss is a logistic loss on the occupancy; k = N/2, the
number of independent obstacle choices of a maze (the task dimension); the
support is all 2N cells, the query N free cells.

Writes ``results.md`` (ours beside the paper's Table 3), ``results.csv``
and ``table3_reward.png``.

Presets: ``tiny`` (1 seed, N = 6, 40 meta-steps: a check that everything
runs), ``small`` (3 seeds, N = 6, 12, 24, ``SMALL_STEPS`` meta-steps of 10
mazes; 63 runs, sized for about 30 minutes on 2 idle CPU cores from the
tiny preset's cost; run once on the loaded machine: 1542 s of
training, docs/transfer.md), ``paper`` (Adam 5e-4, 100 epochs of 500
meta-steps, as for the other experiments).

    python experiments/transfer_maze.py --preset tiny --out runs/transfer_maze_tiny
"""

import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as tfmeta does

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import tfmeta  # noqa: E402
import transfer_report as report  # noqa: E402
from tfmeta.tasks import maze  # noqa: E402
from tfmeta.transfer import GRADIENT_ENCODERS  # noqa: E402

SMALL_STEPS = 800
PRESETS = {
    "tiny": dict(seeds=[0], widths=[6], meta_steps=40, meta_batch=5, lr=1e-3,
                 test_tasks=20),
    "small": dict(seeds=[0, 1, 2], widths=[6, 12, 24], meta_steps=SMALL_STEPS,
                  meta_batch=10, lr=1e-3, test_tasks=200),
    "paper": dict(seeds=[0, 1, 2], widths=[6, 12, 24], meta_steps=50_000,
                  meta_batch=10, lr=5e-4, test_tasks=200),
}
# Table 3 of the paper: normalized distance to the goal (mean, std).
PAPER_WIDTHS = (6, 12, 24)
PAPER = {
    "context": [(-0.237, 0.022), (-0.368, 0.000), (-0.435, 0.000)],
    "nonlinear": [(0.000, 0.000), (-0.348, 0.037), (-0.415, 0.015)],
    "linear": [(0.000, 0.000), (-0.036, 0.029), (-0.355, 0.041)],
    "mean": [(0.000, 0.000), (-0.291, 0.020), (-0.396, 0.003)],
    "max": [(0.000, 0.000), (-0.156, 0.093), (-0.386, 0.017)],
    "transformer": [(-0.028, 0.039), (-0.275, 0.029), (-0.400, 0.025)],
    "deep_kernel": [(0.000, 0.000), (-0.257, 0.010), (-0.428, 0.010)],
}


def parse_args(argv=None):
    parser = report.parser(__doc__, PRESETS)
    parser.add_argument("--widths", default=None, help="e.g. 6,12,24")
    args = parser.parse_args(argv)
    config = report.config(parser, args, PRESETS, "transfer_maze")
    if args.widths is not None:
        config["widths"] = [int(w) for w in args.widths.split(",")]
        bad = [w for w in config["widths"] if w < 2 or w % 2]
        if bad:
            parser.error(f"--widths must be even numbers >= 2, got {bad}")
    return config


def build(encoder, width, seed):
    keras.utils.set_random_seed(seed)
    if encoder == "deep_kernel":
        return tfmeta.MetaTransfer(encoder, support_dims=(2, 1),
                                   query_dims=(2, len(maze.ACTIONS)), seed=seed)
    options = {}
    if encoder in GRADIENT_ENCODERS:
        options["support_loss"] = keras.losses.BinaryCrossentropy(
            from_logits=True, reduction=None)
    return tfmeta.MetaTransfer(encoder, query_learner=maze.query_mlp(seed),
                               k=width // 2, support_dims=(2, 1), seed=seed,
                               **options)


def rewards(meta, test):
    """Table 3's reward of each held-out maze: the greedy policy decoded
    from its support, rolled out from the start for 2N moves."""
    grids = test["grid"]
    width = grids.shape[2]
    cells = np.array([(r, c) for r in range(2) for c in range(width)],
                     np.float32)
    query = np.repeat(cells[None], len(grids), 0)
    logits = meta.transfer(test["support_x"], test["support_y"], query)
    out = []
    for grid, task_logits in zip(grids, logits):
        policy = np.argmax(task_logits, -1).reshape(2, width)
        out.append(maze.normalized_distance(grid, maze.rollout(grid, policy)))
    return np.array(out)


def run(encoder, width, seed, config, test):
    meta = build(encoder, width, seed)
    meta.compile(keras.optimizers.Adam(config["lr"]),
                 loss=keras.losses.SparseCategoricalCrossentropy(
                     from_logits=True))
    steps = config["meta_steps"]
    data = maze.dataset(config["meta_batch"], width, seed=seed)
    start = time.perf_counter()
    epochs = min(10, steps)
    meta.fit(data, epochs=epochs, steps_per_epoch=steps // epochs, verbose=0)
    seconds = time.perf_counter() - start
    done = steps // epochs * epochs
    reward = rewards(meta, test)
    return {"encoder": encoder, "width": width, "seed": seed,
            "reward": float(reward.mean()),
            "reached": float(np.mean(reward == 0.0)),
            "meta_steps": done, "train_seconds": seconds,
            "ms_per_meta_step": 1000 * seconds / done}


def write_results(rows, config, out):
    report.write_csv(rows, out / "results.csv")
    seeds = sorted({r["seed"] for r in rows})
    lines = [
        f"# Maze meta-transfer (preset `{config['preset']}`)", "",
        f"Table 3's reward (minus the normalized distance of the final cell "
        f"to the goal after 2N greedy moves; 0 = every maze solved) on "
        f"{config['test_tasks']} held-out mazes, mean ± std over seeds "
        f"{seeds}; {config['meta_steps']} meta-steps of {config['meta_batch']} "
        f"mazes, Adam {config['lr']:g}, k = N/2. The paper's Table 3 in "
        "brackets.", ""]
    lines += report.table(rows, config["encoders"], PAPER, PAPER_WIDTHS,
                          key="reward", column="width", digits=3)
    lines += ["", "Fraction of held-out mazes solved:", ""]
    lines += report.table(rows, config["encoders"], key="reached",
                          column="width")
    lines += ["", "Choices where the paper is silent: a 2-40-40-4 ReLU "
              "policy MLP with softmax cross-entropy; a logistic support "
              "loss for the gradient encoders; k = N/2; support = all 2N "
              "cells, query = N free cells.", "",
              "Cost (ms per meta-step in `fit`, median over runs):", ""]
    lines += report.cost_table(rows, config["encoders"])
    total = sum(r["train_seconds"] for r in rows)
    lines += ["", f"Total training time {total:.0f} s."]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(rows, config, out)


def plot(rows, config, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    widths = sorted({r["width"] for r in rows})
    fig, ax = plt.subplots(figsize=(6, 4))
    for e in config["encoders"]:
        pts = [(w, report.stats(rows, e, w, "reward", "width")) for w in widths]
        pts = [(w, st) for w, st in pts if st]
        ax.errorbar([w for w, _ in pts], [st[0] for _, st in pts],
                    yerr=[st[1] for _, st in pts], marker="o", capsize=3,
                    label=e, ls="-" if e in GRADIENT_ENCODERS else "--")
    ax.set_xlabel("maze width N")
    ax.set_ylabel("reward (- normalized distance to goal)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "table3_reward.png", dpi=110)
    plt.close(fig)


def main(argv=None):
    config = parse_args(argv)
    out = pathlib.Path(config["out"])
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for width in config["widths"]:
        test = maze.tasks(config["test_tasks"], width, seed=10_000)
        for encoder in config["encoders"]:
            for seed in config["seeds"]:
                row = run(encoder, width, seed, config, test)
                rows.append(row)
                print(f"N {width:2d} {encoder:12s} seed {seed}: reward "
                      f"{row['reward']:.3f}, solved {row['reached']:.0%} "
                      f"({row['train_seconds']:.0f} s)", flush=True)
    write_results(rows, config, out)
    return rows


if __name__ == "__main__":
    main()

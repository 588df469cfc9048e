"""WarpGrad on multi-shot Omniglot: the WarpGrad (Warp-Leap) column of
Table 2 and the warp-layer ablation of Table 3 (Flennerhag et al., ICLR
2020, section 4.1 / 4.2, appendices B, C, E and F).

Protocol (appendix E; the task family, held-out evaluation and Leap baseline
are those of ``experiments/omniglot_multishot.py``, whose functions this
script imports): each alphabet is a 20-way task; the learner is Leap's
4 x [3x3 conv 64, BN, ReLU, 2x2 pool] + linear net, and Warp-Leap inserts a
warp layer after every conv block, ``W o w4 o h4 o ... o w1 o h1``
(``omniglot.leap_convnet`` + ``tfmeta.layers.warped_sequential``). The
task-learner initialization is meta-learned with Leap (eq. 16-17) and the
warp parameters with the canonical WarpGrad objective (eq. 11): Warp-Leap,
``J = L(phi) + lambda C_Leap(theta_0)`` (eq. 13, 15), trained offline
(Algorithm 2): each meta-step adapts a meta-batch of tasks for K steps with
phi fixed, stores theta_0..theta_{K-1} in a replay buffer, then takes one
outer step per buffer entry (eta = 1, so meta_batch x K warp updates per
meta-step; the paper: 20 x 100 = 2000). L_task and L_meta are the
cross-entropy on different minibatches of the task's training images.
After meta-training, each of the 10 held-out alphabets is trained for 100
SGD steps (lr 0.1, batch 20) from the learned initialization with the warps
fixed; we report test accuracy (%) on its held-out images.

Table 3 rows (``--warps``; all at 25 pretraining tasks):

================  ==================================  ====================
name              warp layer (``tfmeta.layers``)      meta-training
================  ==================================  ====================
conv3             ``ConvWarp()``: 3x3 conv (default)  offline, eq. 11
conv3-approx      ``ConvWarp()``                      offline, eq. 12
conv3-online      ``ConvWarp()``                      online (Alg. 1), eq. 11
conv3-lr          ``ConvWarp()``                      offline, eq. 11,
                                                      learned alpha
scaling           ``ConvWarp(scaling=True)``          offline, eq. 11
conv1             ``ConvWarp(kernel_size=1)``         offline, eq. 11
conv3-relu        ``+ activation="relu"``             offline, eq. 11
conv3-bn          ``+ batch_norm=True``               offline, eq. 11
conv3-bn-relu     ``+ batch_norm, relu``              offline, eq. 11
conv3-bn-res-relu ``+ batch_norm, residual, relu``    offline, eq. 11
2conv3-bn-res     ``ConvWarp(stacked=2, batch_norm,   offline, eq. 11
                  residual)``: 64 -> 128 -> 64
2conv3-bn-res-    ``ConvWarp(stacked=2, batch_norm,   offline, eq. 11
film              residual, film=True)``: FiLM task
                  embeddings between the two convs
================  ==================================  ====================

``conv3-lr`` meta-learns the task learning rate (``WarpGrad(learn_task_lr=
True)``): one scalar alpha, starting at the task lr 0.1, meta-gradient of
eq. 11 clipped at 0.001 and applied by SGD with lr 0.001 (appendix F), so
alpha moves by at most 1e-6 per warp update (at most 3.2e-4 in the
``small`` preset's 320 updates; the paper's 2 million updates allow 2).
``2conv3-bn-res-film``: the FiLM gamma, beta (128 per warp) are task
parameters, adapted in every task's training; the paper adapts them "from
a 0 initialisation", here Warp-Leap meta-learns their initialization with
the task layers' (it starts at 0).

Hyper-parameters and what differs from the paper:

* task step SGD lr 0.1, minibatch 20 (Leap's, as appendix E says; the
  authors' code defaults to minibatch 128); meta step plain SGD lr 0.1 for
  both theta_0 and phi (the authors' code: one SGD optimizer, lr 0.1,
  momentum 0), lambda = 1. Online (Algorithm 1) uses lr 0.001 (appendix F);
  our API has one outer optimizer, so there lambda = 100 keeps theta_0's
  step at Leap's 0.1 (Algorithm 1, line 14: ``theta_0 -= lambda beta g``).
* warp convolutions start as the identity (``ConvWarp``'s default), so an
  untrained Warp-Leap *is* Leap; the authors' code uses PyTorch's default
  random init. Residual warps therefore start as ``x + BN(x)`` or ``2x``.
* BN inside a warp is ``conv -> BN -> ReLU -> + x`` (the authors' code puts
  a BN before the conv and one after the residual sum).
* the task batch is augmented once per meta-step (see omniglot_multishot).
* L_meta is evaluated on a minibatch of the task's query split (its held-out
  drawers; ``tfmeta.WarpGrad``), the authors' code on a second minibatch of
  the training split (appendix E found no difference); their init update
  is Leap without the loss term (``loss_in_manifold=False``), ours Leap's
  default d1 metric with it, as in ``omniglot_multishot``.

Presets (``--budget``; flags override any value; Table 3 runs
``--ablation-meta-steps``, Table 2 ``--meta-steps``):

======  ==========  ==========  ==========  =======  ========  =======  ===================
preset  meta-steps  meta-batch  task steps  seeds    Table 2   Table 3  time
        T2 / T3                             T2 / T3  tasks     warps
======  ==========  ==========  ==========  =======  ========  =======  ===================
paper   1000 / 1000 20          100         10 / 4   1,...,25  all 12   ~115 h per conv3
                                                                        Warp-Leap run: GPU
small   12 / 4      4           20          2 / 1    25        all 12   38 min (measured,
                                                                        cores shared)
tiny    1 / 1       2           5           1 / 1    1         4        1.7 min (measured)
======  ==========  ==========  ==========  =======  ========  =======  ===================

``tiny``'s four Table 3 rows are conv3 (shared with Table 2), 2conv3-bn-res,
conv3-lr and 2conv3-bn-res-film. When both tables use the same number of
meta-steps, Table 3's Leap and conv3 rows are Table 2's runs.

Measured costs (``--time-steps``, meta-batch 5 x 20 task steps, while
another job shared the cores): a meta-step takes 3.7 s for Leap, 20.7 s for
Warp-Leap with the 3x3 conv warp (most of it in the 100 second-order replay
updates) and 41.1 s with the 2-layer warp; tracing adds 6-13 s per run; the
held-out evaluation (100 steps + error checkpoints) takes 4.1 / 5.8 / 8.8 s
per alphabet. The ``small`` run of 2026-11-27 (4 Table 2 runs at 12
meta-steps, 13 Table 3 runs at 4) took 2302 s of runs with the cores shared
by other jobs most of the time: Warp-Leap beat Leap at 25 tasks in both
seeds (20.2 / 20.7 vs 17.4 / 17.0 % accuracy); the Table 3 rows at 4
meta-steps are not distinguishable (docs/warpgrad.md).

    python experiments/warpgrad_omniglot.py --budget small --out runs/warpgrad_omniglot
    python experiments/warpgrad_omniglot.py --budget tiny    # smoke test
    python experiments/warpgrad_omniglot.py --methods Leap,Warp-Leap --warps none --tasks 25
    # held-out accuracy every 10 meta-steps (progress.csv, third panel):
    python experiments/warpgrad_omniglot.py --warps none --meta-steps 40 --eval-every 10
    python experiments/warpgrad_omniglot.py --budget small --time-steps   # s/step

Writes to ``--out``: ``runs.csv`` (one row per run), ``curves.csv``
(held-out train/test error along the 100 steps), ``results.md`` (ours beside
the paper's Table 2 and Table 3, with the command) and ``warpgrad_omniglot.png``
(held-out training curves of Leap and Warp-Leap at the largest number of
pretraining tasks; Table 3 accuracies, ours and the paper's).
"""

import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as tfmeta does

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import omniglot_multishot as base  # noqa: E402
import tfmeta  # noqa: E402
from tfmeta import layers as L  # noqa: E402
from tfmeta.maml import SECOND_ORDER_GRAPH_OPTIONS  # noqa: E402
from tfmeta.tasks import omniglot  # noqa: E402

METHODS = ("Leap", "Warp-Leap")
TASK_COUNTS = base.TASK_COUNTS

# WarpGrad paper, Table 2 (appendix F): mean test *accuracy* (%) after 100
# training steps on the held-out alphabets, mean +- std over 10 seeds. (The
# caption says "error", but the numbers rise with the number of tasks and
# Leap's 74.8 is close to 100 minus the Leap paper's 24.8% error.)
PAPER_T2 = {
    1: {"Warp-Leap": (49.5, 7.8), "Leap": (37.6, 4.8)},
    3: {"Warp-Leap": (68.8, 2.8), "Leap": (53.4, 3.1)},
    5: {"Warp-Leap": (75.0, 3.6), "Leap": (59.5, 3.7)},
    10: {"Warp-Leap": (81.2, 2.4), "Leap": (67.4, 2.4)},
    15: {"Warp-Leap": (82.7, 3.3), "Leap": (70.0, 2.4)},
    20: {"Warp-Leap": (82.0, 2.6), "Leap": (73.3, 2.3)},
    25: {"Warp-Leap": (83.8, 1.9), "Leap": (74.8, 2.7)},
}
# Table 3: accuracy (%) at 25 pretraining tasks, mean +- std over 4 runs.
PAPER_T3 = {
    "Leap": ("None (Leap)", "online", "none", 74.8, 2.7),
    "conv3": ("3x3 conv (default)", "offline", "full (eq. 11)", 84.4, 1.7),
    "conv3-approx": ("3x3 conv", "offline", "approx (eq. 12)", 83.1, 2.7),
    "conv3-online": ("3x3 conv", "online", "full", 76.3, 2.1),
    "conv3-lr": ("3x3 conv", "offline", "full, learned α", 83.1, 3.3),
    "scaling": ("Scaling (FiLM-like)", "offline", "full", 77.5, 1.8),
    "conv1": ("1x1 conv", "offline", "full", 79.4, 2.2),
    "conv3-relu": ("3x3 conv + ReLU", "offline", "full", 83.4, 1.6),
    "conv3-bn": ("3x3 conv + BN", "offline", "full", 84.7, 1.7),
    "conv3-bn-relu": ("3x3 conv + BN + ReLU", "offline", "full", 85.0, 0.9),
    "conv3-bn-res-relu": ("3x3 conv + BN + Res + ReLU", "offline", "full",
                          86.3, 1.1),
    "2conv3-bn-res": ("2-layer 3x3 conv + BN + Res", "offline", "full",
                      88.0, 1.0),
    "2conv3-bn-res-film": ("2-layer 3x3 conv + BN + Res + FiLM task "
                           "embeddings", "offline", "full", 88.1, 1.0),
}

# name -> (ConvWarp kwargs, WarpGrad kwargs)
WARPS = {
    "conv3": ({}, {}),
    "conv3-approx": ({}, dict(objective="approximate")),
    "conv3-online": ({}, dict(meta_training="online")),
    "conv3-lr": ({}, dict(learn_task_lr=True)),
    "scaling": (dict(scaling=True), {}),
    "conv1": (dict(kernel_size=1), {}),
    "conv3-relu": (dict(activation="relu"), {}),
    "conv3-bn": (dict(batch_norm=True), {}),
    "conv3-bn-relu": (dict(batch_norm=True, activation="relu"), {}),
    "conv3-bn-res-relu": (dict(batch_norm=True, residual=True,
                               activation="relu"), {}),
    "2conv3-bn-res": (dict(stacked=2, batch_norm=True, residual=True), {}),
    "2conv3-bn-res-film": (dict(stacked=2, batch_norm=True, residual=True,
                                film=True), {}),
}
TABLE2_WARP = "conv3"          # the paper's main Warp-Leap (appendix E)
META_LR = 0.1                  # offline: theta_0 and phi (authors' default)
ONLINE_META_LR = 0.001         # appendix F
ONLINE_INIT_WEIGHT = base.META_LR["Leap"] / ONLINE_META_LR   # lambda = 100

PRESETS = {
    "paper": dict(meta_steps=1000, meta_batch=20, inner_steps=100, seeds=10,
                  tasks=TASK_COUNTS, ablation_tasks=25, ablation_seeds=4,
                  ablation_meta_steps=1000,
                  warps=tuple(WARPS), eval_steps=100, test_tasks=10),
    "small": dict(meta_steps=12, meta_batch=4, inner_steps=20, seeds=2,
                  tasks=(25,), ablation_tasks=25, ablation_seeds=1,
                  ablation_meta_steps=4,
                  warps=tuple(WARPS), eval_steps=100, test_tasks=10),
    "tiny": dict(meta_steps=1, meta_batch=2, inner_steps=5, seeds=1,
                 tasks=(1,), ablation_tasks=1, ablation_seeds=1,
                 ablation_meta_steps=1,
                 warps=("conv3", "2conv3-bn-res", "conv3-lr",
                        "2conv3-bn-res-film"), eval_steps=10,
                 test_tasks=2),
}


def warped_convnet(seed, **warp_kwargs):
    """Leap's Omniglot net (same task-layer initialization as
    ``omniglot.leap_convnet(seed=seed)``) with a ``ConvWarp(**warp_kwargs)``
    after each conv block (after its max-pooling), before the linear head."""
    keras.utils.set_random_seed(seed)
    net = omniglot.leap_convnet(seed=seed)
    body, head = net.layers[:-2], net.layers[-2:]   # head: Flatten, Dense
    blocks = iter(range(1, len(body) + 1))

    def factory(i, layer):
        if isinstance(layer, keras.layers.MaxPooling2D):
            return L.ConvWarp(name=f"warp_{next(blocks)}", **warp_kwargs)
        return None

    return L.warped_sequential(net.input_shape[1:], body, factory, head=head,
                               name="warped_leap_convnet")


def build(method, warp, seed, cfg):
    """Leap (``omniglot_multishot.build``) or Warp-Leap with ``warp``."""
    if method == "Leap":
        return base.build("Leap", None, seed, cfg)
    warp_kwargs, meta_kwargs = WARPS[warp]
    meta_kwargs = {**dict(objective="full", meta_training="offline",
                          replay_batch_size=1), **meta_kwargs}
    lr, lam = META_LR, 1.0
    if meta_kwargs["meta_training"] == "online":
        lr, lam = ONLINE_META_LR, ONLINE_INIT_WEIGHT
    net = warped_convnet(seed, **warp_kwargs)
    meta = tfmeta.WarpGrad(
        net, initialization="leap", init_weight=lam, leap_metric="length",
        inner_steps=cfg["inner_steps"], **meta_kwargs,
        **base.common_kwargs(seed, cfg))
    meta.compile(optimizer=keras.optimizers.SGD(lr), loss=base.loss())
    return meta


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", choices=sorted(PRESETS), default="small")
    parser.add_argument("--meta-steps", type=int,
                        help="Table 2 meta-steps (also Table 3's unless "
                        "--ablation-meta-steps is given)")
    parser.add_argument("--ablation-meta-steps", type=int,
                        help="Table 3 meta-steps")
    parser.add_argument("--meta-batch", type=int)
    parser.add_argument("--inner-steps", type=int,
                        help="task steps per task during meta-training")
    parser.add_argument("--eval-steps", type=int,
                        help="task steps on held-out alphabets (paper: 100)")
    parser.add_argument("--test-tasks", type=int,
                        help="held-out alphabets evaluated (default all 10)")
    parser.add_argument("--seeds", type=int, help="Table 2 seeds 0..n-1")
    parser.add_argument("--ablation-seeds", type=int, help="Table 3 seeds")
    parser.add_argument("--tasks", help="Table 2: comma-separated numbers of "
                        "pretraining tasks")
    parser.add_argument("--ablation-tasks", type=int,
                        help="Table 3: pretraining tasks (paper: 25)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="Table 2 methods (Leap, Warp-Leap; 'none')")
    parser.add_argument("--warps", help="Table 3 rows, comma-separated, from "
                        f"{list(WARPS)}, 'all' or 'none' (default: preset)")
    parser.add_argument("--support-copies", type=int, default=1)
    parser.add_argument("--data-dir", help="directory holding omniglot/ "
                        "(default $TFMETA_DATA or ../shared/data)")
    parser.add_argument("--out", default="runs/warpgrad_omniglot")
    parser.add_argument("--eval-every", type=int,
                        help="Table 2 runs: also evaluate on the held-out "
                        "alphabets before meta-training and every this many "
                        "meta-steps (progress.csv, third panel of the figure)")
    parser.add_argument("--rewrite", action="store_true",
                        help="only rewrite results.md and the figure from the "
                        "CSV files already in --out (same flags as the run)")
    parser.add_argument("--time-steps", action="store_true",
                        help="only time one meta-step of Leap and of each "
                        "selected warp, and the held-out evaluation")
    args = parser.parse_args(argv)
    cfg = dict(PRESETS[args.budget], support_copies=args.support_copies)
    if args.meta_steps is not None and args.ablation_meta_steps is None:
        args.ablation_meta_steps = args.meta_steps
    for key in ("meta_steps", "ablation_meta_steps", "meta_batch", "inner_steps", "seeds",
                "ablation_seeds", "ablation_tasks", "eval_steps", "test_tasks",
                "support_copies"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
        if cfg[key] < 1:
            parser.error(f"--{key.replace('_', '-')} must be positive")
    if args.eval_every is not None:
        if args.eval_every < 1:
            parser.error("--eval-every must be positive")
        cfg["eval_every"] = args.eval_every
    if args.tasks:
        cfg["tasks"] = tuple(int(t) for t in args.tasks.split(","))
    if any(not 1 <= t <= 36 for t in cfg["tasks"] + (cfg["ablation_tasks"],)):
        parser.error("--tasks/--ablation-tasks must lie in 1..36")
    methods = [] if args.methods == "none" else args.methods.split(",")
    if set(methods) - set(METHODS):
        parser.error(f"unknown method(s) {sorted(set(methods) - set(METHODS))};"
                     f" choose from {list(METHODS)} or 'none'")
    args.methods = methods
    if args.warps is not None:
        cfg["warps"] = (() if args.warps == "none" else tuple(WARPS)
                        if args.warps == "all" else tuple(args.warps.split(",")))
    if set(cfg["warps"]) - set(WARPS):
        parser.error(f"unknown warp(s) {sorted(set(cfg['warps']) - set(WARPS))};"
                     f" choose from {list(WARPS)}, 'all' or 'none'")
    return args, cfg


def plan(args, cfg):
    """The runs, in order: ``(table, method, warp, num_tasks, seed)``.
    Table 3's Leap row and its default row are Table 2's Leap and Warp-Leap
    runs at the ablation's task count when those exist with the same
    settings (same number of meta-steps)."""
    runs = []
    for n in cfg["tasks"]:
        for seed in range(cfg["seeds"]):
            for m in args.methods:
                runs.append(("T2", m, TABLE2_WARP if m == "Warp-Leap" else "",
                             n, seed))
    n = cfg["ablation_tasks"]
    shared = cfg["ablation_meta_steps"] == cfg["meta_steps"]
    if cfg["warps"]:
        for seed in range(cfg["ablation_seeds"]):
            for m, w in [("Leap", "")] + [("Warp-Leap", w) for w in cfg["warps"]]:
                if not (shared and any(r[1:] == (m, w, n, seed)
                                       for r in runs)):
                    runs.append(("T3", m, w, n, seed))
    return runs


def time_steps(data, cfg, warps):
    """Seconds per meta-step (after one traced step) of Leap and of
    Warp-Leap with each of ``warps``, and per held-out alphabet."""
    ds = omniglot.dataset(num_tasks=5, meta_batch_size=cfg["meta_batch"],
                          data=data)
    test = omniglot.tasks("test", num_tasks=1, data=data)
    for method, warp in [("Leap", "")] + [("Warp-Leap", w) for w in warps]:
        meta = build(method, warp, 0, cfg)
        t0 = time.perf_counter()
        meta.fit(ds, epochs=1, steps_per_epoch=1, verbose=0)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        meta.fit(ds, epochs=1, steps_per_epoch=1, verbose=0)
        step = time.perf_counter() - t0
        curve = base.HeldOutCurve(meta)
        t0 = time.perf_counter()
        curve(test, cfg["eval_steps"])
        first_eval = time.perf_counter() - t0
        t0 = time.perf_counter()
        curve(test, cfg["eval_steps"])
        per = time.perf_counter() - t0
        print(f"{method} {warp}: {step:.1f} s per meta-step of "
              f"{cfg['meta_batch']} tasks x {cfg['inner_steps']} steps (first,"
              f" with tracing: {first:.1f} s); held-out: {per:.1f} s per "
              f"alphabet (first {first_eval:.1f} s)", flush=True)


def train_in_chunks(meta, num_tasks, seed, cfg, data, test, every, keys):
    """``omniglot_multishot.train_and_evaluate`` with held-out evaluations
    at meta-steps 0, every, 2 every, ... (the task stream continues where
    the previous chunk stopped). Returns ``(errors, meta-training seconds,
    progress rows)``."""
    curve = base.HeldOutCurve(meta)
    marks = base.checkpoints(cfg["eval_steps"])
    done, seconds, progress = 0, 0.0, []
    while True:
        errors = curve(test, cfg["eval_steps"], seed=seed)
        mean = errors.mean(0)
        progress.append(dict(**keys, meta_step=done, test_error=mean[-1, 1],
                             train_error=mean[-1, 0], train_auc=np.trapezoid(
                                 mean[:, 0], marks) / (marks[-1] - marks[0])))
        print(f"   meta-step {done}: held-out test error {mean[-1, 1]:.1f}% "
              f"(train {mean[-1, 0]:.1f}%)", flush=True)
        if done >= cfg["meta_steps"]:
            return errors, seconds, progress
        k = min(every, cfg["meta_steps"] - done)
        t0 = time.perf_counter()
        meta.fit(omniglot.dataset(
            num_tasks=num_tasks, meta_batch_size=cfg["meta_batch"], seed=seed,
            data=data, support_copies=cfg["support_copies"], start=done),
            epochs=1, steps_per_epoch=k, verbose=2)
        seconds += time.perf_counter() - t0
        done += k


def main(argv=None):
    args, cfg = parse_args(argv)
    # as omniglot_multishot: one set of graph options for every method
    tf.config.optimizer.set_experimental_options(SECOND_ORDER_GRAPH_OPTIONS)
    data = omniglot.load(args.data_dir, verbose=True)
    if args.time_steps:
        time_steps(data, cfg, cfg["warps"])
        return
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python experiments/warpgrad_omniglot.py " + " ".join(
        a for a in (sys.argv[1:] if argv is None else argv)
        if a != "--rewrite")
    if args.rewrite:
        rewrite(out, args, cfg, data, command)
        return
    print(f"budget {args.budget}: {cfg}; methods {args.methods}", flush=True)
    test = omniglot.tasks("test", num_tasks=cfg["test_tasks"], seed=10_000,
                          data=data, support_copies=cfg["support_copies"])
    rows, curves, progress = [], [], []
    start = time.perf_counter()
    for table, method, warp, n, seed in plan(args, cfg):
        t0 = time.perf_counter()
        print(f"== [{table}] {method} {warp}, {n} pretraining tasks, seed "
              f"{seed} ({t0 - start:.0f} s elapsed)", flush=True)
        run_cfg = cfg if table == "T2" else dict(
            cfg, meta_steps=cfg["ablation_meta_steps"])
        meta = build(method, warp, seed, run_cfg)
        keys = dict(table=table, method=method, warp=warp, num_tasks=n,
                    seed=seed)
        if cfg.get("eval_every") and table == "T2":
            errors, seconds, prog = train_in_chunks(
                meta, n, seed, cfg, data, test, cfg["eval_every"], keys)
            progress += prog
        else:
            errors, seconds = base.train_and_evaluate(meta, n, seed, run_cfg,
                                                      data, test)
        history = meta.history.history
        row, curve = base.summarize(errors, run_cfg, keys, seconds, t0)
        row["test_accuracy"] = 100.0 - row["test_error"]
        marks = base.checkpoints(cfg["eval_steps"])
        if len(marks) > 1:  # mean test error along the held-out training
            row["test_auc"] = float(np.trapezoid(errors.mean(0)[:, 1], marks)
                                    / (marks[-1] - marks[0]))
        for key in ("loss", "meta_loss", "path_length", "task_lr"):
            if key in history:  # last meta-step's query loss, L(phi), length,
                # learned alpha
                row[f"final_{key}"] = float(history[key][-1])
        rows.append(row)
        curves += curve
        elapsed = time.perf_counter() - start
        write_outputs(out, rows, curves, args, cfg, data, command, elapsed,
                      progress)
    print(f"\ntotal {time.perf_counter() - start:.0f} s; wrote {out}/",
          flush=True)


def _read_csv(path):
    import csv

    def value(v):
        try:
            return int(v)
        except ValueError:
            try:
                return float(v)
            except ValueError:
                return v

    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: value(v) for k, v in r.items()} for r in csv.DictReader(f)]


def rewrite(out, args, cfg, data, command):
    """``results.md`` and the figure again from ``runs.csv``, ``curves.csv``
    and ``progress.csv`` (e.g. after a change of the report's layout)."""
    rows, curves = _read_csv(out / "runs.csv"), _read_csv(out / "curves.csv")
    for r in rows:
        r["warp"] = "" if r["warp"] in ("", None) else r["warp"]
        sel = [c for c in curves if all(c[k] == r[k] for k in (
            "table", "method", "warp", "num_tasks", "seed"))]
        if sel and r.get("test_auc", "") == "":
            marks = [c["step"] for c in sel]
            r["test_auc"] = float(np.trapezoid(
                [c["test_error"] for c in sel], marks) / (marks[-1] - marks[0]))
    for c in curves:
        c["warp"] = "" if c["warp"] in ("", None) else c["warp"]
    elapsed = sum(r["total_seconds"] for r in rows)
    write_outputs(out, rows, curves, args, cfg, data, command, elapsed,
                  _read_csv(out / "progress.csv"))


def _cell(values, paper=None):
    v = np.array(values)
    ours = (f"{v.mean():.1f} ± {v.std():.1f}" if len(v) > 1
            else f"{v.mean():.1f}" if len(v) else "—")
    return ours if paper is None else f"{ours} ({paper[0]} ± {paper[1]})"


def write_outputs(out, rows, curves, args, cfg, data, command, elapsed,
                  progress=()):
    """CSV files, ``results.md`` and the figure (after every run)."""
    first = ("table", "method", "warp", "num_tasks", "seed", "test_accuracy",
             "test_error", "train_error", "train_auc", "test_auc")
    keys = list(dict.fromkeys([k for k in first if any(k in r for r in rows)]
                              + [k for r in rows for k in r]))
    base.write_csv(out / "runs.csv", [{k: r.get(k, "") for k in keys}
                                      for r in rows])
    base.write_csv(out / "curves.csv", curves)
    if progress:
        base.write_csv(out / "progress.csv", list(progress))

    shared = cfg["ablation_meta_steps"] == cfg["meta_steps"]

    def accs(method, warp, n, table="T2"):
        """Table 2's cells come from its own runs; Table 3's from its runs,
        plus Table 2's when both tables use the same meta-steps."""
        return [r["test_accuracy"] for r in rows if r["method"] == method
                and r["warp"] == warp and r["num_tasks"] == n
                and (r["table"] == table or shared)]

    lines = [
        "WarpGrad on multi-shot Omniglot (WarpGrad paper, appendix E-F): "
        "mean test **accuracy** (%) on the held-out images of the "
        f"{cfg['test_tasks']} held-out alphabets after {cfg['eval_steps']} "
        f"SGD steps (lr {base.TASK_LR}, batch {base.INNER_BATCH}); ours "
        "(mean ± std over seeds where > 1) beside (the paper's mean ± std).",
        "",
        f"Command: `{command}`",
        "",
        f"Budget `{args.budget}`: {cfg['meta_steps']} meta-steps "
        + ("" if shared else f"(Table 3: {cfg['ablation_meta_steps']}) ")
        + f"of {cfg['meta_batch']} tasks x {cfg['inner_steps']} task steps "
        f"(Warp-Leap offline: {cfg['meta_batch'] * cfg['inner_steps']} warp "
        f"updates per meta-step), Table 2 seeds {cfg['seeds']}, Table 3 seeds "
        f"{cfg['ablation_seeds']}. The paper: 1000 meta-steps of 20 tasks x "
        "100 steps (2000 warp updates per meta-step), 10 / 4 seeds. "
        f"Time of the runs so far: {elapsed / 60:.1f} min.",
        "Held-out alphabets: "
        f"{', '.join(data.test_alphabets[:cfg['test_tasks']])}.",
        "",
    ]
    t2_methods = [m for m in METHODS if m in args.methods]
    counts = sorted({n for n in cfg["tasks"]})
    if t2_methods:
        lines += ["Table 2 (WarpGrad column beside Leap): accuracy (%)", "",
                  "| pretraining tasks | " + " | ".join(
                      "WarpGrad (Warp-Leap)" if m == "Warp-Leap" else m
                      for m in t2_methods) + " |",
                  "|---|" + "---|" * len(t2_methods)]
        for n in counts:
            cells = [_cell(accs(m, TABLE2_WARP if m == "Warp-Leap" else "", n),
                           PAPER_T2.get(n, {}).get(m)) for m in t2_methods]
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Every run: held-out training error after "
              f"{cfg['eval_steps']} steps, mean training / test error along "
              "the steps (AUC, lower = faster), test accuracy; meta-training "
              "seconds.", "",
              "| table | method | warp | tasks | seed | train error | "
              "train AUC | test AUC | test accuracy | meta-training s |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['table']} | {r['method']} | {r['warp'] or '—'} | "
            f"{r['num_tasks']} | {r['seed']} | {r['train_error']:.1f} | "
            f"{r['train_auc']:.1f} | {r.get('test_auc', float('nan')):.1f} | "
            f"{r['test_accuracy']:.1f} | {r['train_seconds']:.0f} |")
    lines.append("")
    if progress:
        lines += ["Held-out evaluation during meta-training (`--eval-every`):"
                  " test accuracy (%) after "
                  f"{cfg['eval_steps']} steps / training-error AUC", "",
                  "| method | tasks | seed | meta-step | test accuracy | "
                  "train AUC |", "|---|---|---|---|---|---|"]
        for p in progress:
            lines.append(f"| {p['method']} | {p['num_tasks']} | {p['seed']} "
                         f"| {p['meta_step']} | {100 - p['test_error']:.1f} | "
                         f"{p['train_auc']:.1f} |")
        lines.append("")
    n3 = cfg["ablation_tasks"]
    if cfg["warps"]:
        lines += [f"Table 3 (warp-layer ablation, {n3} pretraining tasks, "
                  f"{cfg['ablation_meta_steps']} meta-steps): accuracy (%)",
                  "",
                  "| `--warps` | architecture | meta-training | "
                  "meta-objective | ours | paper |",
                  "|---|---|---|---|---|---|"]
        for w in ("Leap",) + tuple(cfg["warps"]):
            label, training, objective, acc, sd = PAPER_T3[w]
            v = accs("Leap", "", n3, "T3") if w == "Leap" else accs(
                "Warp-Leap", w, n3, "T3")
            paper = f"{acc} ± {sd}" if n3 == 25 else "(25 tasks only)"
            lines.append(f"| {w if w != 'Leap' else '(Leap)'} | {label} | "
                         f"{training} | {objective} | {_cell(v)} | {paper} |")
        alphas = [r["final_task_lr"] for r in rows
                  if r.get("final_task_lr") not in (None, "")]
        if alphas:
            lines += ["", "Learned task learning rate (conv3-lr) after "
                      "meta-training: " + ", ".join(
                          f"{a:.6f}" for a in alphas)
                      + f" (initial {base.TASK_LR})."]
    (out / "results.md").write_text("\n".join(lines) + "\n")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 1 + bool(cfg["warps"]) + bool(progress)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4),
                             squeeze=False)
    axes = list(axes[0])
    left = axes.pop(0)
    right = axes.pop(0) if cfg["warps"] else None
    largest = max(counts) if t2_methods else n3
    for i, (m, w) in enumerate([("Leap", ""), ("Warp-Leap", TABLE2_WARP)]):
        sel = [c for c in curves if c["method"] == m and c["warp"] == w
               and c["num_tasks"] == largest
               and (c["table"] == "T2" or shared or not t2_methods)]
        if not sel:
            continue
        steps = sorted({c["step"] for c in sel})
        for key, style in (("train_error", "-"), ("test_error", "--")):
            ys = [np.mean([c[key] for c in sel if c["step"] == s])
                  for s in steps]
            left.plot(steps, ys, style, color=f"C{i}",
                      label=f"{m} {key.split('_')[0]}")
    left.set_xlabel("SGD steps on held-out alphabet")
    left.set_ylabel("error (%)")
    left.set_title(f"Held-out alphabets, {largest} pretraining tasks",
                   fontsize=9)
    left.legend(fontsize=7)
    if right is not None:
        names = [w for w in ("Leap",) + tuple(cfg["warps"])]
        ours = [np.mean(accs("Leap", "", n3, "T3") if w == "Leap"
                        else accs("Warp-Leap", w, n3, "T3") or [np.nan])
                for w in names]
        ys = np.arange(len(names))
        right.barh(ys - 0.2, ours, 0.4, color="C0",
                   label=f"ours ({args.budget})")
        right.barh(ys + 0.2, [PAPER_T3[w][3] for w in names], 0.4, color="C7",
                   label="paper (Table 3)")
        right.set_yticks(ys, names, fontsize=7)
        right.invert_yaxis()
        right.set_xlabel(f"held-out test accuracy (%), {n3} pretraining tasks")
        right.set_title("Table 3: warp-layer ablation", fontsize=9)
        right.set_xlim(0, 125)
        right.legend(fontsize=7, loc="lower right")
    if progress:
        ax = axes.pop(0)
        for i, (m, w) in enumerate([("Leap", ""), ("Warp-Leap", TABLE2_WARP)]):
            sel = [p for p in progress if p["method"] == m and p["warp"] == w
                   and p["num_tasks"] == largest]
            steps = sorted({p["meta_step"] for p in sel})
            for key, style in (("test_error", "o-"), ("train_auc", "x--")):
                ax.plot(steps, [np.mean([p[key] for p in sel
                                         if p["meta_step"] == s])
                                for s in steps], style, color=f"C{i}",
                        label=f"{m}: " + ("test error after 100 steps"
                                          if key == "test_error" else
                                          "train-error AUC"))
        ax.set_xlabel("meta-steps")
        ax.set_ylabel("held-out error (%)")
        ax.set_title(f"Held-out alphabets during meta-training ({largest} "
                     "tasks)", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "warpgrad_omniglot.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()

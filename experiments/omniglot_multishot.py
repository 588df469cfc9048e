"""Omniglot multi-shot benchmark: Leap's Table 2 (Flennerhag et al., 2019,
section 4.1, appendix D).

Each alphabet is a 20-way task (15 training / 5 held-out drawings per
character, random affine augmentation; ``tfmeta.tasks.omniglot``). For each
number of pretraining alphabets in {1, 3, 5, 10, 15, 20, 25} and each seed,
every method meta-trains the 4-layer conv net (``omniglot.leap_convnet``) on
those alphabets; then each of the 10 held-out alphabets is trained from the
learned initialization for 100 SGD steps (lr 0.1, batch 20) on its 300
support images, and we report the error (%) on its 100 query images,
averaged over held-out alphabets and seeds.

Methods and hyper-parameters (paper's Table 3, appendix D): Leap (length
metric d1, loss in the task manifold, stabilizer), Reptile, FOMAML, MAML
(backprop through 5 steps, second order), FineTune (multi-headed: one
output layer per pretraining alphabet; fine-tuning starts from the
pretrained body and a fresh output layer) and Scratch (no pretraining). Meta
step: plain SGD, lr 0.1 (Leap, Reptile; FineTune's pretraining) or 0.5
(MAML, FOMAML); task step: SGD lr 0.1, minibatch 20; meta-batch 20 tasks;
1000 meta-steps; 100 task steps (MAML: 5).

Presets (``--budget``; every value can be overridden by its flag). Predicted
times come from ``predict_seconds`` with costs measured on the 2 quiet CPU
cores of the dev machine (2026-11-27), plus a 30 % margin:

======  ==========  ==========  ============  =====  =================  ==========
preset  meta-steps  meta-batch  task steps    seeds  pretraining tasks  predicted
======  ==========  ==========  ============  =====  =================  ==========
paper   1000        20          100 (MAML 5)  10     1,3,5,10,15,20,25  ~80 days
medium  100         5           50  (MAML 5)  2      1,3,5,10,15,20,25  ~6 hours
small   20 / 50 /   5           20  (MAML 5)  1      1, 5, 25           ~62 min (48
        250                                                         without the
                                                                    margin;
                                                                    measured 60:
                                                                    3592 s)
tiny    2           2           5   (MAML 2)  1      1                  ~2-4 min
======  ==========  ==========  ============  =====  =================  ==========

``small`` spends its hour where the table's criterion is: 20, 50 and 250
meta-steps for 1, 5 and 25 pretraining tasks (``meta_steps_by_tasks``; the
same for every method of a column; ``--meta-steps`` sets one number for
all), i.e. 100, 50 and 50 visits per alphabet. With 100 meta-steps at 25
tasks (20 visits per alphabet) Reptile reached 72.1 % validation error;
with 400, 50.3 % (Scratch: 81.8 %; docs/results.md). On the test
alphabets ``small`` gave Leap 59.1 % and Reptile 55.5 % at 25 tasks, 22.1
and 25.7 points below Scratch (81.2 %).

Augmentation: each task's support split is augmented once per meta-step (a
fixed tensor while the task trains); ``--support-copies c`` gives it ``c``
independently augmented copies to come closer to per-step augmentation
(the reference implementation draws a fresh transform for every image it
loads). ``small`` uses ``c = 10`` (3000 images per task, more than the
2000 a task's 100 steps of 20 draw) for meta-training and held-out tasks;
``--support-copies 1`` lets Scratch memorise its 300 images (train error
~20 %, test 86.5 % on the validation alphabets against 78 % / 81.8 % with
10 copies).

Meta learning rates are the paper's except in ``small``, where Reptile's is
1.0 (the Reptile paper's outer step size, which it anneals to 0; here
constant): with 100 meta-steps it beat 0.1 on the
validation alphabets (``--eval-split validation``: 76.4 % against 84.2 %,
25 tasks, one copy), while Leap's 0.1 beat 0.3 (81.0 % against 85.7 %);
docs/results.md has the runs.

Held-out evaluation uses the paper's 100 task steps on all 10 held-out
alphabets in every preset but ``tiny`` (10 steps, 2 alphabets: a smoke
test). Measured costs (``--budget paper --time-steps``, quiet machine,
2026-11-27): a task of 100 inner steps of batch 20 takes 1.3 s for Leap and
Reptile, 0.95 s for FOMAML; a task of 5 second-order MAML steps 0.33 s; a
FineTune step on 20 tasks x 20 images 0.6 s; a held-out alphabet 1.6 s
(5.4 s with 10 augmented copies);
producing a batch of 20 augmented tasks (8000 images) 0.06 s, i.e. 0.2 % of
a Leap meta-step of 20 tasks (~26 s). The paper's table needs a GPU;
``small`` gives every method the same, much smaller meta-training budget, so
its numbers show the pipeline working, not the paper's final errors.

    python experiments/omniglot_multishot.py --budget small --out runs/omniglot
    python experiments/omniglot_multishot.py --budget tiny   # ~3 minutes
    python experiments/omniglot_multishot.py --budget paper --time-steps  # s/step

Writes to ``--out``: ``runs.csv`` (one row per method x tasks x seed),
``curves.csv`` (held-out train/test error along the 100 steps), ``results.md``
(Table 2 layout, ours beside the paper's numbers), ``test_error.png`` (test
error vs number of pretraining tasks) and ``heldout_curves.png`` (Figure 3
left: training error on held-out tasks vs steps, for the largest number of
pretraining tasks run).
"""

import argparse
import csv
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
import tfmeta  # noqa: E402
from tfmeta.maml import SECOND_ORDER_GRAPH_OPTIONS  # noqa: E402
from tfmeta import inner_loop  # noqa: E402
from tfmeta.tasks import omniglot  # noqa: E402

METHODS = ("Leap", "Reptile", "FineTune", "MAML", "FOMAML", "Scratch")
TASK_COUNTS = (1, 3, 5, 10, 15, 20, 25)

# Leap (ICLR 2019) appendix D, Table 2: mean test error (%) after 100 training
# steps on held-out alphabets (the protocol implemented here: augmentation,
# 20-way alphabets, up to 25 pretraining tasks). Finetuning is multi-headed.
# (leap_appendix.txt's Table 1 is another protocol: no augmentation, up to
# 30 tasks, and is not used.)
PAPER = {
    1: dict(Leap=62.3, Reptile=59.8, FineTune=46.5, MAML=64.0, FOMAML=64.5, Scratch=82.3),
    3: dict(Leap=46.5, Reptile=46.5, FineTune=36.0, MAML=56.2, FOMAML=59.0, Scratch=82.3),
    5: dict(Leap=40.3, Reptile=41.4, FineTune=32.5, MAML=50.1, FOMAML=53.0, Scratch=82.5),
    10: dict(Leap=32.6, Reptile=35.6, FineTune=28.7, MAML=49.3, FOMAML=49.6, Scratch=82.9),
    15: dict(Leap=29.6, Reptile=33.3, FineTune=26.9, MAML=45.5, FOMAML=47.8, Scratch=82.6),
    20: dict(Leap=26.0, Reptile=30.8, FineTune=24.7, MAML=41.7, FOMAML=45.4, Scratch=82.6),
    25: dict(Leap=24.8, Reptile=29.4, FineTune=23.5, MAML=42.9, FOMAML=44.0, Scratch=82.8),
}

PRESETS = {
    "paper": dict(meta_steps=1000, meta_batch=20, inner_steps=100,
                  maml_steps=5, seeds=10, tasks=TASK_COUNTS, eval_steps=100,
                  test_tasks=10),
    "medium": dict(meta_steps=100, meta_batch=5, inner_steps=50,
                   maml_steps=5, seeds=2, tasks=TASK_COUNTS, eval_steps=100,
                   test_tasks=10),
    "small": dict(meta_steps=100, meta_batch=5, inner_steps=20, maml_steps=5,
                  seeds=1, tasks=(1, 5, 25), eval_steps=100, test_tasks=10,
                  support_copies=10, meta_lr=dict(Reptile=1.0),
                  meta_steps_by_tasks={1: 20, 5: 50, 25: 250}),
    "tiny": dict(meta_steps=2, meta_batch=2, inner_steps=5, maml_steps=2,
                 seeds=1, tasks=(1,), eval_steps=10, test_tasks=2),
}
META_LR = dict(Leap=0.1, Reptile=0.1, FineTune=0.1, MAML=0.5, FOMAML=0.5,
               Scratch=0.0)
TASK_LR = 0.1
INNER_BATCH = 20
CHECKPOINT_FRACTIONS = (0.01, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)


def checkpoints(eval_steps):
    """Steps at which held-out errors are recorded (1 ... eval_steps)."""
    return sorted({max(1, round(f * eval_steps)) for f in CHECKPOINT_FRACTIONS})

# Measured on the 2 CPU cores of the dev machine on 2026-11-27 (quiet;
# oneDNN and fused batch norm on; --budget paper --time-steps): seconds per task of 100 inner steps of batch 20
# (MAML: per task of 5 second-order steps), seconds per FineTune meta-step of
# 20 tasks (20 images each), seconds per held-out alphabet (100 steps and the
# error checkpoints) and seconds of tracing per run. Only for the prediction.
SECONDS_PER_TASK = dict(Leap=1.3, Reptile=1.3, FOMAML=0.95, MAML=0.33)
FINETUNE_SECONDS_PER_STEP = 0.6
EVAL_SECONDS_PER_ALPHABET = 1.6
# Each augmented copy beyond the first adds to a held-out alphabet's error
# checkpoints (the training error runs over all copies): 5.4 s per alphabet
# with 10 copies (Scratch cell of the 2026-11-27 small run, 64 s).
EVAL_SECONDS_PER_COPY = 0.42
TRACE_SECONDS = 10.0
LOAD_FACTOR = 1.3   # margin for a shared or slower machine


def common_kwargs(seed, cfg):
    """Meta-learner arguments shared by every method: the task step (SGD,
    lr ``TASK_LR``, minibatch ``INNER_BATCH``), held-out steps and seed."""
    return dict(inner_optimizer=keras.optimizers.SGD(TASK_LR),
                inner_batch_size=INNER_BATCH, eval_steps=cfg["eval_steps"],
                seed=seed)


def loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def build(name, num_tasks, seed, cfg):
    """The meta-learner of ``name`` with the paper's settings."""
    keras.utils.set_random_seed(seed)
    net = omniglot.leap_convnet(seed=seed)
    common = common_kwargs(seed, cfg)
    steps = cfg["inner_steps"]
    if name == "Leap":
        meta = tfmeta.Leap(net, metric="length", inner_steps=steps, **common)
    elif name == "Reptile":
        meta = tfmeta.Reptile(net, inner_steps=steps, **common)
    elif name == "FOMAML":
        meta = tfmeta.FOMAML(net, inner_steps=steps, **common)
    elif name == "MAML":
        meta = tfmeta.MAML(net, inner_steps=cfg["maml_steps"], **common)
    elif name == "FineTune":
        meta = tfmeta.FineTune(net, num_heads=num_tasks, **common)
    else:
        meta = tfmeta.Scratch(net, **common)
    lr = cfg.get("meta_lr", {}).get(name, META_LR[name])
    meta.compile(optimizer=keras.optimizers.SGD(lr), loss=loss())
    return meta


class HeldOutCurve:
    """Train/test error of held-out tasks along their 100 training steps.

    Adapts from the meta-learned initialization in chunks between
    ``checkpoints(steps)`` with the library's compiled inner loop; with plain
    SGD (no optimizer state) the chained chunks are one run of ``steps``
    steps (only the minibatch draws differ from ``evaluate``'s). Errors use
    inference mode with the adapted batch-norm statistics, as ``evaluate``.
    Parameters its adaptation spec's ``mask`` holds fixed (WarpGrad's warp
    layers) are held fixed, as in its own adaptation.
    """

    def __init__(self, meta):
        self.meta = meta
        self.chunk = tf.function(self._chunk, reduce_retracing=True)
        self.error = tf.function(self._error, reduce_retracing=True)

    def _chunk(self, params, nontrainable, x, y, steps, seed):
        meta = self.meta
        spec = meta.adaptation()
        result = inner_loop.adapt(
            meta.learner, meta.task_loss_fn, spec.optimizer, params,
            nontrainable, x, y, steps, batch_size=spec.batch_size,
            seed=seed, mask=spec.mask)
        return result.params, result.nontrainable

    def _error(self, params, nontrainable, x, y):
        meta = self.meta
        _, pred, _ = inner_loop.task_loss(
            meta.learner, meta.task_loss_fn, params, nontrainable, x, y,
            training=False)
        wrong = tf.not_equal(tf.argmax(pred, -1, output_type=tf.int32), y)
        return tf.reduce_mean(tf.cast(wrong, tf.float32))

    def __call__(self, test, steps, seed=0):
        """``[tasks, checkpoints, 2]`` errors (train on support, test on
        query) in percent."""
        out = []
        for t in range(test["support_x"].shape[0]):
            learner = self.meta.learner
            params = [tf.convert_to_tensor(v) for v in learner.trainable_variables]
            nontrainable = [tf.convert_to_tensor(v)
                            for v in learner.non_trainable_variables]
            sx, sy = tf.constant(test["support_x"][t]), tf.constant(test["support_y"][t])
            qx, qy = tf.constant(test["query_x"][t]), tf.constant(test["query_y"][t])
            done, rows = 0, []
            for k in checkpoints(steps):
                key = tf.constant([seed, 1000 * t + k], tf.int64)
                params, nontrainable = self.chunk(
                    params, nontrainable, sx, sy, tf.constant(k - done), key)
                done = k
                rows.append([float(self.error(params, nontrainable, sx, sy)),
                             float(self.error(params, nontrainable, qx, qy))])
            out.append(rows)
        return 100.0 * np.array(out)


def meta_steps_for(cfg, num_tasks):
    """Meta-steps of the cells with ``num_tasks`` pretraining tasks:
    ``cfg["meta_steps_by_tasks"][num_tasks]`` where the preset sets one
    (``small``), else ``cfg["meta_steps"]``."""
    return cfg.get("meta_steps_by_tasks", {}).get(num_tasks,
                                                   cfg["meta_steps"])


def predict_seconds(cfg, methods):
    """Predicted wall time of a preset from the measured costs above:
    meta-training scales linearly in meta-steps x meta-batch x task steps;
    every run adds its held-out evaluation (``test_tasks`` alphabets x
    ``eval_steps``, more with augmented copies) and its tracing; Scratch is
    evaluated once per seed. Includes the ``LOAD_FACTOR`` margin."""
    per_alphabet = (EVAL_SECONDS_PER_ALPHABET + EVAL_SECONDS_PER_COPY
                    * (cfg.get("support_copies", 1) - 1))
    evaluation = (cfg["test_tasks"] * per_alphabet * cfg["eval_steps"] / 100
                  + TRACE_SECONDS)
    total = 0.0
    for name in methods:
        if name == "Scratch":
            total += cfg["seeds"] * evaluation
            continue
        for n in cfg["tasks"]:
            steps = meta_steps_for(cfg, n)
            if name == "FineTune":
                train = steps * FINETUNE_SECONDS_PER_STEP * (
                    cfg["meta_batch"] / 20)
            elif name == "MAML":
                train = (steps * cfg["meta_batch"]
                         * SECONDS_PER_TASK["MAML"] * cfg["maml_steps"] / 5)
            else:
                train = (steps * cfg["meta_batch"]
                         * SECONDS_PER_TASK[name] * cfg["inner_steps"] / 100)
            total += cfg["seeds"] * (train + evaluation + TRACE_SECONDS)
    return LOAD_FACTOR * total


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", choices=sorted(PRESETS), default="small")
    parser.add_argument("--meta-steps", type=int)
    parser.add_argument("--meta-batch", type=int)
    parser.add_argument("--inner-steps", type=int,
                        help="task steps during meta-training (not MAML)")
    parser.add_argument("--maml-steps", type=int)
    parser.add_argument("--eval-steps", type=int,
                        help="task steps on held-out alphabets (paper: 100)")
    parser.add_argument("--test-tasks", type=int,
                        help="held-out alphabets evaluated (default all 10)")
    parser.add_argument("--seeds", type=int, help="number of seeds 0..n-1")
    parser.add_argument("--support-copies", type=int,
                        help="independently augmented copies of each support "
                        "split (approximates on-the-fly augmentation during "
                        "task training; 1 = augmented once per task; "
                        "default: the preset's)")
    parser.add_argument("--tasks", help="comma-separated pretraining task counts")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--data-dir", help="directory holding omniglot/ "
                        "(default $TFMETA_DATA or ../shared/data)")
    parser.add_argument("--out", default="runs/omniglot_multishot")
    parser.add_argument("--meta-lr", help="meta learning rate(s): one number "
                        "for every method or 'Leap=0.3,Reptile=1' (default: "
                        "the preset's, else the paper's)")
    parser.add_argument("--eval-split", choices=("test", "validation"),
                        default="test", help="held-out alphabets to evaluate "
                        "on: the 10 test alphabets (the table) or the 10 "
                        "validation alphabets (for choosing hyper-parameters)")
    parser.add_argument("--time-steps", action="store_true",
                        help="only time the input pipeline and meta-steps")
    args = parser.parse_args(argv)
    cfg = dict(PRESETS[args.budget])
    cfg.setdefault("support_copies", 1)
    if args.meta_steps is not None:  # one number for every cell
        cfg.pop("meta_steps_by_tasks", None)
    for key in ("meta_steps", "meta_batch", "inner_steps", "maml_steps",
                "seeds", "eval_steps", "test_tasks", "support_copies"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
        if cfg[key] < 1:
            parser.error(f"--{key.replace('_', '-')} must be positive")
    if args.tasks:
        cfg["tasks"] = tuple(int(t) for t in args.tasks.split(","))
    if any(not 1 <= t <= 36 for t in cfg["tasks"]):
        parser.error("--tasks must lie in 1..36 (the pretraining alphabets)")
    args.methods = args.methods.split(",")
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown method(s) {sorted(unknown)}; choose from "
                     f"{list(METHODS)}")
    if args.meta_lr:
        cfg["meta_lr"] = dict(cfg.get("meta_lr", {}), **parse_meta_lr(
            args.meta_lr, args.methods, parser.error))
    if args.eval_split == "validation" and max(cfg["tasks"]) > 26:
        parser.error("--eval-split validation needs --tasks <= 26 (the "
                     "validation alphabets are pretraining alphabets 27-36)")
    return args, cfg


def parse_meta_lr(text, methods, error):
    """``"0.3"`` (every method) or ``"Leap=0.3,Reptile=1"`` -> dict."""
    try:
        if "=" not in text:
            return {m: float(text) for m in methods}
        pairs = [item.split("=") for item in text.split(",")]
        out = {m.strip(): float(v) for m, v in pairs}
    except ValueError:
        error(f"--meta-lr: cannot read {text!r}; use 0.3 or Leap=0.3,Reptile=1")
    unknown = set(out) - set(METHODS)
    if unknown:
        error(f"--meta-lr: unknown method(s) {sorted(unknown)}")
    if any(v <= 0 for v in out.values()):
        error("--meta-lr values must be positive")
    return out


def time_steps(data, cfg, meta_batch=2, repeats=2):
    """Seconds per meta-step of each method at the configured inner
    settings, and seconds to produce task batches (input pipeline)."""
    ds = omniglot.dataset(num_tasks=5, meta_batch_size=20, data=data)
    it = iter(ds)
    next(it)
    start = time.perf_counter()
    for _ in range(10):
        next(it)
    per_batch = (time.perf_counter() - start) / 10
    print(f"input pipeline: {per_batch:.3f} s per batch of 20 tasks "
          "(300+100 augmented images each)", flush=True)
    for name in ("Leap", "Reptile", "FOMAML", "MAML", "FineTune"):
        meta = build(name, 5, 0, cfg)
        ds = omniglot.dataset(
            num_tasks=5, meta_batch_size=meta_batch, data=data,
            support_batch=INNER_BATCH if name == "FineTune" else None)
        start = time.perf_counter()
        meta.fit(ds, epochs=1, steps_per_epoch=1, verbose=0)
        first = time.perf_counter() - start
        start = time.perf_counter()
        meta.fit(ds, epochs=1, steps_per_epoch=repeats, verbose=0)
        per = (time.perf_counter() - start) / repeats
        steps = (cfg["maml_steps"] if name == "MAML" else 0 if name == "FineTune"
                 else cfg["inner_steps"])
        print(f"{name}: {per:.2f} s per meta-step of {meta_batch} tasks "
              f"({per / meta_batch:.2f} s per task, {steps} task steps of "
              f"batch {INNER_BATCH}; first step with tracing {first:.1f} s); "
              f"a meta-batch of 20: ~{20 * per / meta_batch:.1f} s", flush=True)
    test = omniglot.tasks("test", num_tasks=2, data=data)
    curve = HeldOutCurve(meta)
    curve(test, cfg["eval_steps"])              # traces
    start = time.perf_counter()
    curve(test, cfg["eval_steps"])
    per = (time.perf_counter() - start) / 2
    print(f"held-out evaluation: {per:.2f} s per alphabet "
          f"({cfg['eval_steps']} steps + error checkpoints)", flush=True)


def main(argv=None):
    args, cfg = parse_args(argv)
    # MAML runs its graphs with Grappler's arithmetic optimizer off (a TF
    # 2.21 bug on this net's second-order graph); turn it off for the whole
    # run so that every method of the table runs under the same options.
    tf.config.optimizer.set_experimental_options(SECOND_ORDER_GRAPH_OPTIONS)
    data = omniglot.load(args.data_dir, verbose=True)
    if args.time_steps:
        time_steps(data, cfg)
        return
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"budget {args.budget}: {cfg}; methods {args.methods}", flush=True)
    print(f"held-out ({args.eval_split}) alphabets: "
          f"{', '.join(data.split(args.eval_split))}", flush=True)
    print(f"predicted time: {predict_seconds(cfg, args.methods) / 60:.0f} min",
          flush=True)
    test = omniglot.tasks(args.eval_split, num_tasks=cfg["test_tasks"],
                          seed=10_000, data=data,
                          support_copies=cfg["support_copies"])
    rows, curves = [], []
    scratch = {}
    start_all = time.perf_counter()
    for num_tasks in cfg["tasks"]:
        cell_cfg = dict(cfg, meta_steps=meta_steps_for(cfg, num_tasks))
        for seed in range(cfg["seeds"]):
            for name in args.methods:
                t0 = time.perf_counter()
                if name == "Scratch" and seed in scratch:
                    errors, seconds = scratch[seed]   # independent of tasks
                else:
                    meta = build(name, num_tasks, seed, cell_cfg)
                    print(f"== {name}, {num_tasks} pretraining tasks, seed "
                          f"{seed} ({time.perf_counter() - start_all:.0f} s "
                          "elapsed)", flush=True)
                    errors, seconds = train_and_evaluate(
                        meta, num_tasks, seed, cell_cfg, data, test,
                        train=name != "Scratch", support_batch=(
                            INNER_BATCH if name == "FineTune" else None))
                    if name == "Scratch":
                        scratch[seed] = (errors, seconds)
                row, rows_c = summarize(
                    errors, cell_cfg, dict(method=name, num_tasks=num_tasks,
                                      seed=seed), seconds, t0)
                rows.append(row)
                curves += rows_c
            write_outputs(out, rows, curves, args, cfg, data)
    print(f"\ntotal {time.perf_counter() - start_all:.0f} s; wrote {out}/",
          flush=True)


def progress_epochs(meta_steps):
    """Up to 10 Keras "epochs" that divide the meta-steps exactly (one
    progress line each)."""
    return next(e for e in range(min(10, meta_steps), 0, -1)
                if meta_steps % e == 0)


def train_and_evaluate(meta, num_tasks, seed, cfg, data, test, train=True,
                       support_batch=None):
    """Meta-trains ``meta`` for ``cfg["meta_steps"]`` steps of
    ``cfg["meta_batch"]`` tasks drawn from the first ``num_tasks``
    pretraining alphabets, then trains on each held-out alphabet of ``test``
    for ``cfg["eval_steps"]`` steps. Returns ``(errors [tasks, checkpoints,
    2] in %, meta-training seconds)``."""
    t0 = time.perf_counter()
    if train:
        epochs = progress_epochs(cfg["meta_steps"])
        meta.fit(omniglot.dataset(
            num_tasks=num_tasks, meta_batch_size=cfg["meta_batch"], seed=seed,
            data=data, support_copies=cfg["support_copies"],
            support_batch=support_batch),
            epochs=epochs, steps_per_epoch=cfg["meta_steps"] // epochs,
            verbose=2)
    seconds = time.perf_counter() - t0
    errors = HeldOutCurve(meta)(test, cfg["eval_steps"], seed=seed)
    return errors, seconds


def summarize(errors, cfg, keys, train_seconds, t0):
    """The ``runs.csv`` row (``keys`` first, then held-out errors, AUC of
    the training error curve, timings and the budget) and the
    ``curves.csv`` rows of one run; prints a progress line."""
    mean = errors.mean(0)
    marks = checkpoints(cfg["eval_steps"])
    auc = (np.trapezoid(mean[:, 0], marks) / (marks[-1] - marks[0])
           if len(marks) > 1 else mean[0, 0])
    row = dict(**keys, test_error=mean[-1, 1], train_error=mean[-1, 0],
               train_auc=auc, test_error_std_over_tasks=errors[:, -1, 1].std(),
               train_seconds=train_seconds,
               total_seconds=time.perf_counter() - t0,
               **{k: cfg[k] for k in ("meta_steps", "meta_batch", "inner_steps",
                                      "maml_steps", "eval_steps",
                                      "support_copies") if k in cfg})
    curves = [dict(**keys, step=k, train_error=mean[c, 0],
                   test_error=mean[c, 1]) for c, k in enumerate(marks)]
    label = " ".join(f"{k}={v}" for k, v in keys.items())
    print(f"   {label}: held-out test error {row['test_error']:.1f}% (train "
          f"{row['train_error']:.1f}%, AUC {auc:.1f}), "
          f"{row['total_seconds']:.0f} s", flush=True)
    return row, curves


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_outputs(out, rows, curves, args, cfg, data):
    """CSV files, the markdown table and both figures (after every cell, so
    a long run can be inspected while it goes)."""
    write_csv(out / "runs.csv", rows)
    write_csv(out / "curves.csv", curves)
    methods = [m for m in METHODS if m in args.methods]
    counts = sorted({r["num_tasks"] for r in rows})
    cell = {}
    for r in rows:
        cell.setdefault((r["method"], r["num_tasks"]), []).append(r["test_error"])
    lines = [
        "Omniglot multi-shot (Leap, section 4.1 / appendix D Table 2): mean "
        "test error (%) on the query images of the "
        f"{cfg['test_tasks']} held-out alphabets "
        f"after {cfg['eval_steps']} SGD steps (lr {TASK_LR}, batch "
        f"{INNER_BATCH}); ours = mean ± std over seeds, (paper).",
        "",
        f"Budget `{args.budget}`: "
        + (f"{cfg['meta_steps']} meta-steps" if not cfg.get(
            "meta_steps_by_tasks") else "meta-steps by number of "
           f"pretraining tasks {cfg['meta_steps_by_tasks']}") + " of "
        f"{cfg['meta_batch']} tasks, {cfg['inner_steps']} task steps "
        f"(MAML {cfg['maml_steps']}), {cfg['seeds']} seed(s). The paper: "
        "1000 meta-steps of 20 tasks, 100 task steps (MAML 5).",
        f"Held-out ({args.eval_split}) alphabets: "
        f"{', '.join(data.split(args.eval_split)[:cfg['test_tasks']])}."
        + (f" Meta learning rates: {cfg['meta_lr']}." if cfg.get("meta_lr")
           else ""),
        "",
        "| pretraining tasks | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for n in counts:
        cells = []
        for m in methods:
            v = np.array(cell.get((m, n), []))
            ours = (f"{v.mean():.1f} ± {v.std():.1f}" if len(v) > 1 else
                    f"{v.mean():.1f}" if len(v) else "—")
            cells.append(f"{ours} ({PAPER[n][m]})" if n in PAPER else ours)
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, m in enumerate(methods):
        xs = [n for n in counts if (m, n) in cell]
        ys = np.array([np.mean(cell[(m, n)]) for n in xs])
        sd = np.array([np.std(cell[(m, n)]) for n in xs])
        ax.plot(xs, ys, "o-", color=f"C{i}", label=m)
        ax.fill_between(xs, ys - sd, ys + sd, color=f"C{i}", alpha=0.2)
        paper = [PAPER[n][m] for n in xs if n in PAPER]
        ax.plot([n for n in xs if n in PAPER], paper, "x:", color=f"C{i}",
                alpha=0.6)
    ax.set_xlabel("number of pretraining alphabets")
    ax.set_ylabel("held-out test error (%)")
    ax.set_title("Omniglot (solid: ours, dotted x: Leap Table 2)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "test_error.png", dpi=110)
    plt.close(fig)

    largest = counts[-1]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, m in enumerate(methods):
        sel = [c for c in curves if c["method"] == m and c["num_tasks"] == largest]
        if not sel:
            continue
        steps = sorted({c["step"] for c in sel})
        per_seed = np.array([[c["train_error"] for c in sel if c["step"] == s]
                             for s in steps])             # [steps, seeds]
        mean, sd = per_seed.mean(1), per_seed.std(1)
        ax.plot(steps, mean, color=f"C{i}", label=m)
        ax.fill_between(steps, mean - sd, mean + sd, color=f"C{i}", alpha=0.2)
    ax.set_xlabel("training steps on held-out task")
    ax.set_ylabel("training error (%)")
    ax.set_title(f"Held-out alphabets, {largest} pretraining tasks "
                 "(cf. Figure 3 left)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "heldout_curves.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()

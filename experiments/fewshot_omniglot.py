"""Omniglot few-shot classification: Reptile's Table 2 (Nichol et al.,
2018, section 5.1), with MAML and first-order MAML.

Protocol (``tfmeta.tasks.omniglot_fewshot``): the 1623 characters split
1200 (meta-training, each rotated by 0/90/180/270 degrees into 4800
classes) / 423 (test); 28x28 images; the 4-layer net of 64 stride-2 3x3
convs with batch norm (``omniglot_fewshot.convnet``: flattened features
for Reptile as in its code, spatial mean for (FO)MAML as in MAML's code).
Every method of a setting is tested on the same episodes: N test
characters, K support and 1 query drawing each (Reptile's protocol),
adapted from the meta-learned initialization, then its query examples
classified with batch norm non-transductively (statistics of the support
split plus one query example) and transductively (statistics of the whole
query split); ``tfmeta.tasks.fewshot.evaluate``.

Hyper-parameters:

* Reptile: Table 3 per setting (inner Adam with beta_1 = 0 and its
  learning rate, inner batch size and iterations, training shots, meta-batch,
  evaluation batch size and iterations); the outer step (plain SGD on
  ``phi - W``, Algorithm 2) starts at Table 3's outer step size and is
  annealed linearly to 0 over the run (``tfmeta.linear_annealing``).
  As in the paper's code, the inner Adam is one optimizer for the whole run
  (``carry_inner_state=True``): its moments and step count carry over from
  task to task in meta-training, and each test episode starts from them
  and leaves them unchanged (``--fresh-inner-adam`` restarts it per task
  instead: the ablation). As in the paper's code, the inner minibatches
  pass through the training shots in shuffled epochs
  (``inner_sampling="epochs"``; ``--inner-sampling independent`` draws each
  on its own instead, as the runs before 2026-11-30 12:00 did).
* MAML / FOMAML / ANIL / Meta-SGD (MAML's settings for all four; ANIL
  adapts only the last Dense layer, Meta-SGD starts its per-parameter
  rates at MAML's inner rate; MAML paper, section 5.2 and appendix A.1, quoted from
  memory: that paper is not in ``../shared/papers``; check before citing):
  inner SGD, 5-way: 1 step of 0.4, meta-batch 32;
  20-way: 5 steps of 0.1, meta-batch 16; K support and K query drawings per
  class in meta-training; outer Adam 1e-3; 60000 meta-steps; 3 steps at
  test time. tfmeta's inner loop predicts the query in inference mode
  with the support statistics during meta-training (MAML's code: batch
  statistics of the query).

Presets (``--budget``):

======  ===========================================  ==============  =======  ========
preset  cells                                        meta-steps      seeds    episodes
======  ===========================================  ==============  =======  ========
paper   all five methods x 4 settings                Table 3 / 60K   3        1000
small   Reptile 5w1s, Reptile 5w5s, MAML 5w1s        see SMALL_STEPS 1        1000
tiny    all five methods x 5-way 1-shot              30              1        20
======  ===========================================  ==============  =======  ========

Reptile's hyper-parameters (``--reptile-table``): Table 3 at ``paper`` and
``tiny``; at ``small`` those of the README commands of the paper's released
code (``code``: 5 tasks x 5 Adam steps of 10 images on 10 training shots,
Adam 1e-3, 50 test iterations, the same for 1-shot and 5-shot), under
which the 1-shot and 5-shot cells share one meta-training and which learn
faster in short runs (1000 meta-steps: 76.2 % against Table 3's 68.4 % at
5w1s, docs/fewshot.md).

Measured costs (2 CPU cores of the dev machine, 2026-11-30, quiet;
``--time-steps`` and the small runs): a Reptile meta-step at 5-way 5-shot
(5 tasks x 5 Adam steps of 10 images) 0.12 s, at 5-way 1-shot (3 x 12 steps
of 5) 0.14 s, with Table 5's 1-shot settings (10 x 3 steps of 25) about
twice that; a MAML 5-way 1-shot meta-step (32 tasks, 1 second-order step)
0.65 s, FOMAML 0.30 s; a test episode (adaptation plus both BN modes)
0.45 s for Reptile 5w5s (100 steps), 0.41 s 5w1s (86 steps), 0.09 s
(F)MAML (3 steps). Under a load of ~5 the same took 2-3x longer.
``predict_seconds`` adds them up (the released code's settings from
these by their shapes, ``RELATIVE_COST``): ``small`` is predicted at 56
minutes (Reptile's shared meta-training 40, its tests 8, MAML 7), under the
issue's 60 minutes on 2 quiet cores (docs/fewshot.md has the runs).

    python experiments/fewshot_omniglot.py --budget tiny --out runs/fewshot_tiny
    python experiments/fewshot_omniglot.py --budget small --out runs/fewshot_small
    python experiments/fewshot_omniglot.py --time-steps   # measure the costs

Writes to ``--out``: ``runs.csv`` (one row per method x setting x seed),
``episodes.csv`` (every test episode's accuracy per evaluation mode),
``curves.csv`` and ``curves.png`` (meta-training query accuracy after
adaptation, per Keras epoch), ``results.md`` (the paper's Table 2 beside
ours, 95 % intervals over test episodes).
"""

import argparse
import collections
import csv
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
from tfmeta.tasks import fewshot  # noqa: E402
from tfmeta.tasks import omniglot_fewshot as of  # noqa: E402

METHODS = ("Reptile", "MAML", "FOMAML", "ANIL", "MetaSGD")
SETTINGS = {"5w1s": (5, 1), "5w5s": (5, 5), "20w1s": (20, 1),
            "20w5s": (20, 5)}
MODES = ("non-transductive", "transductive")

# Reptile, Table 2: accuracy (%) and the paper's interval (std over 3 seeds).
# MAML's and first-order MAML's rows are transductive (MAML paper).
PAPER = {
    ("MAML", "transductive"): {"5w1s": (98.7, 0.4), "5w5s": (99.9, 0.1),
                               "20w1s": (95.8, 0.3), "20w5s": (98.9, 0.2)},
    ("FOMAML", "transductive"): {"5w1s": (98.3, 0.5), "5w5s": (99.2, 0.2),
                                 "20w1s": (89.4, 0.5), "20w5s": (97.9, 0.1)},
    ("Reptile", "non-transductive"): {
        "5w1s": (95.32, 0.05), "5w5s": (98.87, 0.02), "20w1s": (88.27, 0.30),
        "20w5s": (97.07, 0.12)},
    ("Reptile", "transductive"): {
        "5w1s": (97.97, 0.08), "5w5s": (99.47, 0.04), "20w1s": (89.36, 0.20),
        "20w5s": (97.47, 0.10)},
}

# Reptile, Table 3 (Omniglot).
REPTILE = {
    "5w1s": dict(adam_lr=4.4e-4, inner_batch=5, inner_steps=12,
                 train_shots=12, outer_step=1.0, meta_steps=200_000,
                 meta_batch=3, eval_batch=5, eval_steps=86),
    "20w1s": dict(adam_lr=4.4e-4, inner_batch=15, inner_steps=12,
                  train_shots=9, outer_step=1.0, meta_steps=200_000,
                  meta_batch=3, eval_batch=10, eval_steps=97),
    "5w5s": dict(adam_lr=1.5e-3, inner_batch=10, inner_steps=5,
                 train_shots=10, outer_step=0.7, meta_steps=100_000,
                 meta_batch=5, eval_batch=6, eval_steps=100),
    "20w5s": dict(adam_lr=4.6e-4, inner_batch=20, inner_steps=12,
                  train_shots=12, outer_step=1.0, meta_steps=200_000,
                  meta_batch=3, eval_batch=10, eval_steps=97),
}

# Reptile, Table 5: "hyper-parameters for transductive 1-shot 5-way", which
# the paper found better than Table 3's for 1-shot 5-way (section 5.1);
# ``--reptile-table 5``.
REPTILE_TABLE5 = {
    "5w1s": dict(adam_lr=1e-3, inner_batch=25, inner_steps=3,
                 train_shots=15, outer_step=1.0, meta_steps=100_000,
                 meta_batch=10, eval_batch=5, eval_steps=5),
}


# The commands of the README of the paper's released code
# (openai/supervised-reptile, "Reproducing training runs"; non-transductive
# lines, which use the same settings as the transductive ones): 5 tasks x
# 5 Adam steps of 10 images (5-way) or 5 x 10 of 20 (20-way) on 10 training
# shots, 50 test iterations; ``--reptile-table code``.
REPTILE_CODE = {
    setting: dict(adam_lr=1e-3, inner_batch=10, inner_steps=5,
                  train_shots=10, outer_step=1.0, meta_steps=100_000,
                  meta_batch=5, eval_batch=5, eval_steps=50)
    for setting in ("5w1s", "5w5s")} | {
    setting: dict(adam_lr=5e-4, inner_batch=20, inner_steps=10,
                  train_shots=10, outer_step=1.0, meta_steps=200_000,
                  meta_batch=5, eval_batch=10, eval_steps=50)
    for setting in ("20w1s", "20w5s")}
REPTILE_HPARAMS = {3: REPTILE, 5: REPTILE_TABLE5, "code": REPTILE_CODE}


def reptile_table_arg(text):
    """``--reptile-table``: 3, 5 or ``code``."""
    value = int(text) if text.isdigit() else text
    if value not in REPTILE_HPARAMS:
        raise argparse.ArgumentTypeError(
            f"choose from 3, 5, code, not {text!r}")
    return value


def maml_settings(ways):
    """MAML's Omniglot hyper-parameters (section 5.2)."""
    return (dict(inner_lr=0.4, inner_steps=1, meta_batch=32) if ways == 5
            else dict(inner_lr=0.1, inner_steps=5, meta_batch=16)) | dict(
        meta_lr=1e-3, meta_steps=60_000, eval_steps=3)


# small: meta-steps per cell, chosen so that the preset's predicted time
# (predict_seconds) stays under 60 minutes on 2 CPU cores. Its Reptile
# cells take the released code's settings (--reptile-table code), under
# which 1-shot and 5-shot share one meta-training and which learn faster
# in short runs than Table 3's (docs/fewshot.md).
SMALL_STEPS = {("Reptile", "5w1s"): 20_000, ("Reptile", "5w5s"): 20_000,
               ("MAML", "5w1s"): 500}
PRESETS = {
    "paper": dict(cells=[(m, s) for s in SETTINGS for m in METHODS],
                  seeds=3, episodes=1000, steps=None, reptile_table=3),
    "small": dict(cells=list(SMALL_STEPS), seeds=1, episodes=1000,
                  steps=SMALL_STEPS, reptile_table="code"),
    "tiny": dict(cells=[(m, "5w1s") for m in METHODS], seeds=1, episodes=20,
                 steps={(m, "5w1s"): 30 for m in METHODS}, reptile_table=3),
}
TEST_SEED = 10_000

# Measured with --time-steps (2026-11-30, 2 shared CPU cores): seconds per
# meta-step at each cell's hyper-parameters, and per test episode (adaptation
# with the cell's test steps, then both evaluation modes). Reptile's per-step
# costs are those of the small runs on a quiet machine with the carried inner
# Adam and epoch sampling (8000 steps in 940 s; 6000 in ~14 min).
SECONDS_PER_STEP = {("Reptile", "5w5s"): 0.120, ("Reptile", "5w1s"): 0.140,
                    ("MAML", "5w1s"): 0.65, ("FOMAML", "5w1s"): 0.30}
SECONDS_PER_EPISODE = {("Reptile", "5w5s"): 0.45, ("Reptile", "5w1s"): 0.41,
                       ("MAML", "5w1s"): 0.089, ("FOMAML", "5w1s"): 0.082}
TRACE_SECONDS = 25.0   # tracing of a cell's meta-step and evaluation


def loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def config(method, setting, budget_steps, reptile_table=3):
    """Training and test settings of one cell: episode shapes, steps
    (Reptile: Table 3's, Table 5's where ``reptile_table`` is 5, the
    released code's README commands where it is ``"code"``)."""
    ways, shots = SETTINGS[setting]
    if method == "Reptile":
        hp = dict(REPTILE_HPARAMS[reptile_table][setting])
        cfg = dict(hp, ways=ways, shots=shots, train_query=1)
    else:
        hp = maml_settings(ways)
        cfg = dict(hp, ways=ways, shots=shots, train_shots=shots,
                   train_query=shots)
    if budget_steps is not None:
        cfg["meta_steps"] = budget_steps[(method, setting)]
    return cfg


def build(method, cfg, seed):
    """``(meta-learner for meta-training, meta-learner for testing)``; the
    second shares the first's learner (Reptile tests with another inner
    batch size than it trains with)."""
    keras.utils.set_random_seed(seed)
    ways = cfg["ways"]
    metrics = ["sparse_categorical_accuracy"]
    if method == "Reptile":
        net = of.convnet(ways, head="flatten", seed=seed)
        # The inner Adam is one optimizer for the whole run, as in the
        # paper's code (section 5.1): its moments and step count carry over
        # from task to task in meta-training; tests start from them and
        # leave them unchanged (carry_inner_state).
        meta = tfmeta.Reptile(
            net, inner_optimizer=keras.optimizers.Adam(cfg["adam_lr"],
                                                       beta_1=0.0),
            inner_steps=cfg["inner_steps"], eval_steps=cfg["eval_steps"],
            inner_batch_size=cfg["inner_batch"],
            eval_batch_size=cfg["eval_batch"],
            carry_inner_state=cfg.get("carry", True),
            inner_sampling=cfg.get("sampling", "epochs"), seed=seed)
        meta.compile(optimizer=keras.optimizers.SGD(tfmeta.linear_annealing(
            cfg["outer_step"], cfg["meta_steps"])), loss=loss(),
            metrics=metrics)
        return meta, meta
    cls = {"MAML": tfmeta.MAML, "FOMAML": tfmeta.FOMAML, "ANIL": tfmeta.ANIL,
           "MetaSGD": tfmeta.MetaSGD}[method]
    net = of.convnet(ways, head="mean", seed=seed)
    # ANIL adapts only the last Dense layer (its default head); Meta-SGD
    # meta-learns one rate per parameter, starting from MAML's inner rate.
    meta = cls(net, inner_optimizer=keras.optimizers.SGD(cfg["inner_lr"]),
               inner_steps=cfg["inner_steps"], eval_steps=cfg["eval_steps"],
               seed=seed)
    meta.compile(optimizer=keras.optimizers.Adam(cfg["meta_lr"]), loss=loss(),
                 metrics=metrics)
    return meta, meta


def train_episodes(cfg, seed, data):
    return of.dataset("train", cfg["ways"], cfg["train_shots"],
                      cfg["train_query"], meta_batch_size=cfg["meta_batch"],
                      seed=seed, data=data)


def test_episodes(cfg, episodes, data):
    """The same ``episodes`` test episodes for every method of a setting."""
    per = 10 if episodes % 10 == 0 else 1
    return of.dataset("test", cfg["ways"], cfg["shots"], 1,
                      meta_batch_size=per, seed=TEST_SEED, data=data,
                      count=episodes // per)


def epochs_for(steps):
    """Keras epochs for the curve: up to 20 that divide ``steps``."""
    return next(e for e in range(min(20, steps), 0, -1) if steps % e == 0)


class HeldOutCurve(keras.callbacks.Callback):
    """Test accuracy during meta-training: after every ``every``-th Keras
    epoch, the first ``episodes`` test episodes of the cell (both BN
    modes), adapted from the current initialization (the carried inner
    state is left unchanged); ``points`` holds
    ``(epoch, {mode: mean accuracy})`` and ``seconds`` the time spent."""

    def __init__(self, test, tasks, every):
        super().__init__()
        self.test, self.tasks, self.every = test, tasks, every
        self.points, self.seconds = [], 0.0

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        t0 = time.perf_counter()
        result = fewshot.evaluate(self.test, self.tasks, modes=list(MODES))
        self.points.append((epoch, {m: result[m]["mean"] for m in MODES}))
        self.seconds += time.perf_counter() - t0
        print(f"   test curve, epoch {epoch + 1}: " + ", ".join(
            f"{m} {100 * result[m]['mean']:.2f} %" for m in MODES), flush=True)


def training_key(method, cfg):
    """What a cell's meta-training depends on: its settings but the test
    shots. Cells with equal keys (and seed) share one meta-training, as the
    released code's 1-shot and 5-shot commands do (``--reptile-table code``:
    ``--shots`` changes only the test)."""
    return (method,) + tuple(sorted((k, v) for k, v in cfg.items()
                                    if k != "shots"))


def train_cell(method, setting, seed, cfg, data, curve_episodes=0):
    """Meta-trains one cell: ``(meta-learner to test, curve rows, seconds)``,
    the seconds without the test curve's evaluations."""
    meta, test = build(method, cfg, seed)
    epochs = epochs_for(cfg["meta_steps"])
    callbacks = []
    if curve_episodes:
        tasks = list(test_episodes(cfg, curve_episodes, data)
                     .as_numpy_iterator())
        callbacks.append(HeldOutCurve(test, tasks, every=max(1, epochs // 4)))
    t0 = time.perf_counter()
    history = meta.fit(train_episodes(cfg, seed, data), epochs=epochs,
                       steps_per_epoch=cfg["meta_steps"] // epochs, verbose=2,
                       callbacks=callbacks)
    train_seconds = time.perf_counter() - t0 - sum(
        c.seconds for c in callbacks)
    tested = dict(callbacks[0].points) if callbacks else {}
    per_epoch = cfg["meta_steps"] // epochs
    curve = [dict(method=method, setting=setting, seed=seed,
                  meta_step=(e + 1) * per_epoch, loss=history.history["loss"][e],
                  train_query_accuracy=history.history[
                      "sparse_categorical_accuracy"][e],
                  **{f"test_{m}_{curve_episodes}": tested[e][m]
                     if e in tested else "" for m in MODES if curve_episodes})
             for e in range(epochs)]
    return test, curve, train_seconds


def test_cell(test, cfg, data, episodes):
    """``(result of fewshot.evaluate, seconds)`` on the cell's test
    episodes."""
    t0 = time.perf_counter()
    result = fewshot.evaluate(test, test_episodes(cfg, episodes, data),
                              modes=list(MODES))
    return result, time.perf_counter() - t0


# Reptile's costs under the other hyper-parameters, relative to Table 3's
# (measured with --time-steps --reptile-table N). Table 5 at 5w1s: a
# meta-step ~2x (10 x 3 steps of 25 images against 3 x 12 of 5; measured
# interleaved, 0.42 vs 0.21 s under load), a test episode ~5/86 (5
# adaptation steps, not 86).
# The released code's settings: a 5-way meta-step has the shapes of Table
# 3's 5w5s one (5 x 5 steps of 10 images; 0.120 s against 5w1s's 0.140),
# a test episode 50 adaptation steps of 5 (Table 3: 86 of 5 at 5w1s, 100
# of 6 at 5w5s). Measured quiet afterwards (--time-steps --budget small,
# 2026-11-30 17:35, load 0.9): 0.099 / 0.114 s per meta-step and 0.31 /
# 0.23 s per test episode at 5w1s / 5w5s; the estimates are kept (they are
# the larger).
RELATIVE_COST = {(5, "5w1s"): {"step": 2.0, "episode": 5 / 86},
                 ("code", "5w1s"): {"step": 0.120 / 0.140, "episode": 50 / 86},
                 ("code", "5w5s"): {"step": 1.0, "episode": 50 / 100}}


def predict_seconds(cells, steps_of, seeds, episodes, reptile_table=3):
    """Predicted seconds of ``cells`` from the measured costs (``None``
    where a cell's cost was not measured); cells that share a meta-training
    (``training_key``) pay for it once."""
    total, trained = 0.0, set()
    for method, setting in cells:
        key = (method, setting)
        cfg = config(method, setting, {key: steps_of(method, setting)},
                     reptile_table)
        shared = training_key(method, cfg) in trained
        trained.add(training_key(method, cfg))
        step = SECONDS_PER_STEP.get(key)
        per_episode = SECONDS_PER_EPISODE.get(key)
        if step is None or per_episode is None:
            return None
        if method == "Reptile" and reptile_table != 3:
            relative = RELATIVE_COST.get((reptile_table, setting))
            if relative is None:
                return None
            step *= relative["step"]
            per_episode *= relative["episode"]
        training = 0.0 if shared else steps_of(method, setting) * step
        total += seeds * (training + episodes * per_episode + TRACE_SECONDS)
    return total


def time_steps(data, cells, repeats=20, episodes=20, reptile_table=3):
    """Seconds per meta-step and per test episode of each cell."""
    for method, setting in cells:
        cfg = config(method, setting, None, reptile_table)
        meta, test = build(method, cfg, 0)
        ds = train_episodes(cfg, 0, data)
        meta.fit(ds, epochs=1, steps_per_epoch=2, verbose=0)
        t0 = time.perf_counter()
        meta.fit(ds, epochs=1, steps_per_epoch=repeats, verbose=0)
        step = (time.perf_counter() - t0) / repeats
        tasks = list(test_episodes(cfg, episodes, data).as_numpy_iterator())
        fewshot.evaluate(test, tasks[:1], modes=list(MODES))
        t0 = time.perf_counter()
        fewshot.evaluate(test, tasks[1:], modes=list(MODES))
        n = sum(t["support_x"].shape[0] for t in tasks[1:])
        print(f"{method} {setting}: {step:.3f} s per meta-step; "
              f"{(time.perf_counter() - t0) / n:.3f} s per test episode",
              flush=True)


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_outputs(out, rows, episode_rows, curves, budget, cells):
    # runs.csv without the per-episode arrays (those are in episodes.csv)
    write_csv(out / "runs.csv", [{k: v for k, v in r.items()
                                  if not k.startswith("_")} for r in rows])
    write_csv(out / "episodes.csv", episode_rows)
    write_csv(out / "curves.csv", curves)
    settings = [s for s in SETTINGS if any(c[1] == s for c in cells)]
    by = {}
    for r in rows:
        by.setdefault((r["method"], r["mode"], r["setting"]), []).append(r)
    lines = [
        "Omniglot few-shot (Reptile, section 5.1 / Table 2): test accuracy "
        "(%) over N-way K-shot episodes of the 423 test characters (K "
        "support + 1 query drawing per class). Ours: mean ± 95 % interval "
        "over episodes (per seed, pooled over seeds); (paper: mean ± "
        "interval over its 3 seeds).",
        "",
        f"Budget `{budget}`: "
        + "; ".join(f"{r['method']} {r['setting']} {r['meta_steps']} "
                    + (f"meta-steps ({r['train_seconds']:.0f} s), "
                       if r["trained_with"] == r["setting"] else
                       f"meta-steps (the same meta-training as "
                       f"{r['trained_with']}), ")
                    + f"{r['episodes']} episodes"
                    for r in rows if r["mode"] == MODES[0] and r["seed"] == 0)
        + ". The paper: 100K-200K meta-steps (Reptile), 60K (MAML).",
        "",
        "| method | BN at test | " + " | ".join(settings) + " |",
        "|---|---|" + "---|" * len(settings),
    ]
    for method in METHODS:
        for mode in MODES:
            cells_md = []
            for s in settings:
                rs = by.get((method, mode, s), [])
                ours = "—"
                if rs:
                    acc = np.concatenate([r["_accuracy"] for r in rs]) * 100
                    ci = 1.96 * acc.std(ddof=1) / np.sqrt(len(acc)) \
                        if len(acc) > 1 else float("nan")
                    ours = f"{acc.mean():.2f} ± {ci:.2f}"
                paper = PAPER.get((method, mode), {}).get(s)
                cells_md.append(ours + (f" ({paper[0]} ± {paper[1]})"
                                        if paper else ""))
            if any(c != "—" for c in cells_md) or (method, mode) in PAPER:
                lines.append(f"| {method} | {mode} | " + " | ".join(cells_md)
                             + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (method, setting) in enumerate(cells):
        sel = [c for c in curves if c["method"] == method
               and c["setting"] == setting]
        if not sel:
            continue
        steps = sorted({c["meta_step"] for c in sel})
        acc = np.array([np.mean([c["train_query_accuracy"] for c in sel
                                 if c["meta_step"] == s]) for s in steps])
        ax.plot(steps, 100 * acc, "o-", ms=3, color=f"C{i}",
                label=f"{method} {setting}")
    ax.set_xlabel("meta-step")
    ax.set_ylabel("query accuracy after adaptation (%)")
    ax.set_title("Omniglot few-shot, meta-training episodes "
                 "(mean over each epoch)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--methods", help="comma-separated subset of "
                        f"{','.join(METHODS)} (default: the preset's cells)")
    parser.add_argument("--settings", help="comma-separated subset of "
                        f"{','.join(SETTINGS)}")
    parser.add_argument("--meta-steps", type=int,
                        help="one number of meta-steps for every cell")
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--episodes", type=int, help="test episodes per cell")
    parser.add_argument("--data-dir", help="directory holding omniglot/ "
                        "(default $TFMETA_DATA or ../shared/data)")
    parser.add_argument("--out", default="runs/fewshot_omniglot")
    parser.add_argument("--fresh-inner-adam", action="store_true",
                        help="Reptile: restart the inner Adam for every task "
                        "(the ablation; default: carry it across tasks as "
                        "the paper's code does)")
    parser.add_argument("--inner-sampling", choices=("independent", "epochs"),
                        default="epochs",
                        help="Reptile's inner minibatches: passing through the "
                        "training shots in shuffled epochs as the paper's "
                        "code does (default), or drawn each on its own")
    parser.add_argument("--reptile-table", type=reptile_table_arg,
                        metavar="{3,5,code}",
                        help="Reptile's hyper-parameters: Table 3, Table 5 "
                        "(tuned for transductive 1-shot 5-way; 5w1s only) or "
                        "code (the commands in the README of the paper's "
                        "released code); default: the budget's (paper, tiny: "
                        "3; small: code)")
    parser.add_argument("--test-curve", type=int, default=0, metavar="EPISODES",
                        help="also test on the first EPISODES test episodes "
                        "after every quarter of meta-training (curves.csv; "
                        "default 0: only at the end)")
    parser.add_argument("--time-steps", action="store_true",
                        help="only measure seconds per meta-step and per "
                        "test episode of the preset's cells")
    args = parser.parse_args(argv)
    cfg = dict(PRESETS[args.budget])
    cells = list(cfg["cells"])
    if args.methods or args.settings:     # the product of the chosen ones
        methods = (args.methods.split(",") if args.methods
                   else sorted({m for m, _ in cells}, key=METHODS.index))
        settings = (args.settings.split(",") if args.settings
                    else sorted({s for _, s in cells}, key=list(SETTINGS).index))
        for flag, chosen, universe in (("methods", methods, METHODS),
                                       ("settings", settings, SETTINGS)):
            unknown = set(chosen) - set(universe)
            if unknown:
                parser.error(f"--{flag}: unknown {sorted(unknown)}; choose "
                             f"from {list(universe)}")
        cells = [(m, s) for s in settings for m in methods]
    if cfg["steps"] is not None and args.meta_steps is None \
            and not args.time_steps:
        missing = [c for c in cells if c not in cfg["steps"]]
        if missing:
            parser.error(f"--budget {args.budget} has no meta-step count for "
                         f"{missing}; give --meta-steps")
    if args.test_curve < 0:
        parser.error("--test-curve must be >= 0")
    for key in ("seeds", "episodes", "meta_steps"):
        value = getattr(args, key)
        if value is not None and value < 1:
            parser.error(f"--{key.replace('_', '-')} must be positive")
    if args.seeds:
        cfg["seeds"] = args.seeds
    if args.episodes:
        cfg["episodes"] = args.episodes
    if not cells:
        parser.error("no cell left after --methods / --settings")
    if args.reptile_table is None:
        args.reptile_table = cfg["reptile_table"]
    table = REPTILE_HPARAMS[args.reptile_table]
    other = [c for c in cells if c[0] == "Reptile" and c[1] not in table]
    if other:
        parser.error(f"--reptile-table {args.reptile_table} gives only "
                     f"{sorted(table)}, not {other}")
    return args, cfg, cells


def steps_for(args, preset, method, setting):
    """Meta-steps of a cell: ``--meta-steps``, else the preset's count,
    else (``paper``) the paper's."""
    if args.meta_steps:
        return args.meta_steps
    if preset["steps"] is None:
        return config(method, setting, None, args.reptile_table)["meta_steps"]
    return preset["steps"][(method, setting)]


def main(argv=None):
    args, preset, cells = parse_args(argv)
    data = of.load(args.data_dir)
    if args.time_steps:
        time_steps(data, cells, reptile_table=args.reptile_table)
        return

    steps_of = lambda m, s: steps_for(args, preset, m, s)  # noqa: E731

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    predicted = predict_seconds(cells, steps_of, preset["seeds"],
                                preset["episodes"], args.reptile_table)
    print(f"budget {args.budget}: cells {cells}, {preset['seeds']} seed(s), "
          f"{preset['episodes']} test episodes, Reptile's hyper-parameters "
          f"--reptile-table {args.reptile_table}; predicted "
          + (f"{predicted / 60:.0f} min" if predicted else "time: not measured "
             "for every cell (--time-steps)"), flush=True)
    def cell_config(method, setting):
        cfg = config(method, setting, {(method, setting):
                                       steps_of(method, setting)},
                     args.reptile_table)
        cfg["carry"] = not args.fresh_inner_adam
        cfg["sampling"] = args.inner_sampling
        return cfg

    rows, episode_rows, curves = [], [], []
    # training_key -> (meta-learner, setting, seconds), kept while a later
    # cell of the seed still tests it (``uses``)
    trained = {}
    start = time.perf_counter()
    for seed in range(preset["seeds"]):
        uses = collections.Counter(training_key(m, cell_config(m, s))
                                   for m, s in cells)
        for method, setting in cells:
            cfg = cell_config(method, setting)
            print(f"== {method} {setting} seed {seed}: {cfg} "
                  f"({time.perf_counter() - start:.0f} s elapsed)", flush=True)
            key = training_key(method, cfg)
            if key not in trained:
                test, curve, train_s = train_cell(method, setting, seed, cfg,
                                                  data, args.test_curve)
                curves += curve
                trained[key] = (test, setting, train_s)
            test, trained_with, train_s = trained[key]
            if trained_with != setting:
                print(f"   testing the initialization meta-trained for "
                      f"{trained_with} (the same training settings)",
                      flush=True)
            result, test_s = test_cell(test, cfg, data, preset["episodes"])
            uses[key] -= 1
            if not uses[key]:
                del trained[key]
            for mode in MODES:
                acc = result[mode]["accuracy"]
                rows.append(dict(
                    method=method, setting=setting, seed=seed, mode=mode,
                    accuracy=100 * result[mode]["mean"],
                    ci95=100 * result[mode]["ci95"], episodes=len(acc),
                    meta_steps=cfg["meta_steps"], train_seconds=train_s,
                    trained_with=trained_with, test_seconds=test_s,
                    _accuracy=acc))
                episode_rows += [dict(method=method, setting=setting,
                                      seed=seed, mode=mode, episode=i,
                                      accuracy=a) for i, a in enumerate(acc)]
                print(f"   {method} {setting} {mode}: "
                      f"{100 * result[mode]['mean']:.2f} ± "
                      f"{100 * result[mode]['ci95']:.2f} % over {len(acc)} "
                      f"episodes (train {train_s:.0f} s, test {test_s:.0f} s)",
                      flush=True)
            write_outputs(out, rows, episode_rows, curves, args.budget,
                          cells)
    print(f"\ntotal {time.perf_counter() - start:.0f} s; wrote {out}/",
          flush=True)


if __name__ == "__main__":
    main()

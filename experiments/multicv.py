"""Multi-CV transfer: Leap's Table 1 (Flennerhag et al., 2019, section 4.2,
appendix G with Table 4).

Whole computer-vision data sets are tasks (``tfmeta.tasks.multicv``): every
available data set is held out in turn (leave-one-out); the methods
pretrain on the others, then train on the held-out set's training split (up
to E epochs, early stopping on its validation split: stop when the
validation error has not improved for 10 consecutive evaluations) and are
judged on its test split. Reported per held-out set and method: test error,
final train error and the AUC of the training-error curve scaled to 0-100
(the mean training error in % over the held-out run's whole budget of
steps: the trapezoid area under the curve of evaluations divided by the
number of steps, the last value held after an early stop), with the paper's
numbers beside ours.

Methods (one learner for all: the Omniglot encoder of appendix F on 32x32x3
and a linear head per data set, ``multicv.learner``):

* ``scratch``  no pretraining: a random encoder (the same seed as all).
* ``finetune`` multi-headed fine-tuning (``tfmeta.FineTune(num_heads=T)``):
  pretraining takes one SGD step (lr 0.1) on a minibatch of 32 of every
  pretraining set at once, one head each; the held-out set then starts from
  the pretrained encoder and a fresh head.
* ``leap``     ``tfmeta.Leap(metric="energy", multi_head=True)``: each
  meta-step trains the meta-batch's sets from the shared encoder for 1
  epoch each (section 4.2; Table 4 says 10 epochs during pretraining), SGD
  lr 0.1 with cosine annealing, batch 32, and applies the mean pull-forward
  gradient with Adam (lr 0.01); only the encoder is meta-learned, every
  task's head is fresh. Meta-batch: the paper's 10, or all the pretraining
  sets when fewer are available (here 3). Below ``paper`` the meta-training
  epochs run without evaluations, hence without early stopping (one epoch
  is too short for 10 evaluations without improvement at ``eval_every``).
* ``pnn``      Progressive Nets (``tfmeta.baselines.ProgressiveNet``): a
  column per pretraining set, trained in passes over them (revisits), 1
  epoch per visit, earlier columns frozen; the held-out set's column comes
  last with laterals from all of them.
* ``hat``      HAT (``tfmeta.baselines.HAT``): the same passes, each task
  protected from the others' gates (revisits), the held-out set last.

Every task run (pretraining visits and held-out runs) uses SGD lr 0.1 with
cosine annealing over the run and batches of 32 (Table 4). Pretraining is
the same budget for every method: ``meta_steps`` x (1 epoch of every
pretraining set) of updates.

Presets (``--budget``):

=====  ======================  ====================  ==========  ============
preset examples per set         pretraining           held-out    eval every
       (train / val / test)     (meta-steps/passes)   epochs      (updates)
=====  ======================  ====================  ==========  ============
paper  all / 10% / all          1000 (pnn/hat: 1000   100         1
                                visits of 10 tasks)
small  1000 / 300 / 1000        4                     6           16
tiny   64 / 32 / 64 (8 filters) 1                     1           2
=====  ======================  ====================  ==========  ============

``small`` subsamples every training split to 1000 images (seeded; the
validation split is 300 of the other training images, the test split 1000
of the test split) so that the whole leave-one-out table (4 folds x 5
methods) runs in about an hour on 2 CPU cores; ``tiny`` is a smoke test
(seconds per fold, used by the tests).

    python experiments/multicv.py --budget small --out runs/multicv_small
    python experiments/multicv.py --budget tiny --out /tmp/multicv_tiny

Outputs in ``--out``: ``results.json`` (every run's curves; written after
every method, so a stopped run keeps what it finished), ``table.md``
(Table 1's layout with the paper's numbers) and ``curves.png`` (training
error of each method on each held-out set).
"""

import argparse
import json
import math
import pathlib
import sys
import time

import keras
import numpy as np
import tensorflow as tf

import tfmeta
from tfmeta import dataset_tasks
from tfmeta.baselines import HAT, ProgressiveNet, fit_dataset
from tfmeta.tasks import multicv

METHODS = ("scratch", "finetune", "leap", "pnn", "hat")
LABELS = {"leap": "Leap", "finetune": "Finetuning", "pnn": "Progressive Nets",
          "hat": "HAT", "scratch": "No pretraining"}

PRESETS = {
    "paper": dict(train=None, val=None, test=None, meta_steps=1000,
                  meta_batch=10, heldout_epochs=100, eval_every=1,
                  filters=64, train_eval=1000),
    "small": dict(train=1000, val=300, test=1000, meta_steps=4, meta_batch=10,
                  heldout_epochs=6, eval_every=16, filters=64, train_eval=300),
    "tiny": dict(train=64, val=32, test=64, meta_steps=1, meta_batch=10,
                 heldout_epochs=1, eval_every=2, filters=8, train_eval=32),
}

#: Leap appendix, Table 3 (Table 1 with MNIST, notMNIST, Fashion MNIST):
#: ``{held-out: {method: (test %, train %, AUC)}}``.
PAPER = {
    "facescrub": {"leap": (19.9, 0.0, 11.6), "finetune": (32.7, 0.0, 13.2),
                  "pnn": (18.0, 0.0, 8.9), "hat": (25.6, 0.1, 14.6),
                  "scratch": (18.2, 0.0, 10.5)},
    "notmnist": {"leap": (5.3, 0.6, 2.9), "finetune": (5.4, 2.0, 4.4),
                 "pnn": (5.4, 3.1, 3.7), "hat": (6.0, 2.8, 5.4),
                 "scratch": (5.4, 2.6, 5.1)},
    "mnist": {"leap": (0.7, 0.1, 0.6), "finetune": (0.9, 0.1, 0.8),
              "pnn": (0.8, 0.0, 0.7), "hat": (0.8, 0.3, 1.2),
              "scratch": (0.9, 0.2, 1.0)},
    "fashion-mnist": {"leap": (8.0, 4.2, 6.8), "finetune": (8.9, 3.8, 7.0),
                      "pnn": (8.7, 5.4, 9.2), "hat": (9.5, 5.5, 8.1),
                      "scratch": (8.4, 4.7, 7.8)},
    "cifar10": {"leap": (21.2, 10.8, 17.5), "finetune": (27.4, 13.3, 20.7),
                "pnn": (24.2, 15.2, 24.0), "hat": (27.7, 21.2, 27.3),
                "scratch": (26.2, 13.1, 23.0)},
    "svhn": {"leap": (8.4, 5.6, 7.5), "finetune": (10.9, 6.1, 10.5),
             "pnn": (10.1, 6.3, 13.8), "hat": (10.5, 5.7, 8.5),
             "scratch": (10.3, 6.9, 11.5)},
    "cifar100": {"leap": (52.0, 30.5, 43.4), "finetune": (59.2, 31.5, 44.1),
                 "pnn": (55.7, 42.1, 54.6), "hat": (62.0, 49.8, 58.4),
                 "scratch": (54.8, 33.1, 50.1)},
    "traffic-signs": {"leap": (2.9, 0.0, 1.2), "finetune": (5.7, 0.0, 1.7),
                      "pnn": (3.6, 0.0, 4.0), "hat": (5.4, 0.0, 2.3),
                      "scratch": (3.6, 0.0, 2.4)},
}

LR, META_LR, BATCH = 0.1, 0.01, 32
CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def auc(eval_steps, train_errors, total_steps):
    """Area under the training-error curve in % of the run's budget: the
    trapezoid area over ``[0, total_steps]`` (the last error held after an
    early stop) divided by ``total_steps``, times 100."""
    steps = list(eval_steps)
    errs = list(train_errors)
    if steps[-1] < total_steps:
        steps.append(total_steps)
        errs.append(errs[-1])
    area = sum((b - a) * (ea + eb) / 2 for a, b, ea, eb in
               zip(steps[:-1], steps[1:], errs[:-1], errs[1:]))
    return 100.0 * area / total_steps


def summary(run, test_error, total_steps, seconds):
    return {"test": 100 * test_error,
            "train": 100 * run.train_errors[run.best],
            "auc": auc(run.eval_steps, run.train_errors, total_steps),
            "steps": run.steps, "stopped_early": bool(run.stopped_early),
            "eval_steps": list(run.eval_steps),
            "train_errors": [float(e) for e in run.train_errors],
            "val_errors": [float(e) for e in run.val_errors],
            "seconds": seconds}


class Fold:
    """One held-out data set and its pretraining sets."""

    def __init__(self, heldout, pretrain, cfg, seed, log):
        self.heldout, self.pretrain = heldout, pretrain
        self.cfg, self.seed, self.log = cfg, seed, log
        self.per_epoch = len(heldout.train[0]) // BATCH
        self.total = self.cfg["heldout_epochs"] * self.per_epoch

    def learner(self, classes):
        return multicv.learner(classes, seed=self.seed,
                               filters=self.cfg["filters"])

    def meta(self, cls, learner, **kwargs):
        meta = cls(learner, inner_optimizer=keras.optimizers.SGD(LR),
                   multi_head=True, seed=self.seed, **kwargs)
        return meta

    def trainer(self, meta):
        return dataset_tasks.DatasetTrainer(
            meta, batch_size=BATCH, eval_every=self.cfg["eval_every"],
            train_eval_size=self.cfg["train_eval"])

    def heldout_run(self, meta):
        """Trains the held-out set from ``meta``'s encoder, fresh head."""
        meta.compile(optimizer=keras.optimizers.SGD(LR), loss=CE)
        trainer = self.trainer(meta)
        run = trainer.train(self.heldout, self.cfg["heldout_epochs"],
                            seed=self.seed)
        return run, trainer.test_error(self.heldout, run)

    # ------------------------------------------------------------ methods
    def scratch(self):
        return self.heldout_run(self.meta(
            tfmeta.Scratch, self.learner(self.heldout.num_classes)))

    def finetune(self):
        sets = self.pretrain
        steps = self.cfg["meta_steps"] * min(len(s.train[0]) for s in sets) \
            // BATCH
        ft = tfmeta.FineTune(self.learner(self.heldout.num_classes),
                             num_heads=len(sets), seed=self.seed)
        ft.compile(optimizer=keras.optimizers.SGD(LR), loss=CE)
        rng = np.random.default_rng(self.seed)

        def batches():
            while True:
                idx = [rng.choice(len(s.train[0]), BATCH, replace=False)
                       for s in sets]
                x = np.stack([s.train[0][i] for s, i in zip(sets, idx)])
                y = np.stack([s.train[1][i] for s, i in zip(sets, idx)])
                yield {"support_x": x, "support_y": y, "query_x": x,
                       "query_y": y, "task_id": np.arange(len(sets))}

        spec = {"support_x": tf.TensorSpec((len(sets), BATCH, 32, 32, 3)),
                "support_y": tf.TensorSpec((len(sets), BATCH), tf.int32),
                "query_x": tf.TensorSpec((len(sets), BATCH, 32, 32, 3)),
                "query_y": tf.TensorSpec((len(sets), BATCH), tf.int32),
                "task_id": tf.TensorSpec((len(sets),), tf.int64)}
        data = tf.data.Dataset.from_generator(batches, output_signature=spec)
        ft.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
        self.log(f"finetune: {steps} pretraining steps")
        return self.heldout_run(self.meta(tfmeta.Scratch, ft.learner))

    def leap(self):
        leap = self.meta(tfmeta.Leap, self.learner(self.heldout.num_classes),
                         metric="energy")
        leap.compile(optimizer=keras.optimizers.Adam(self.cfg["meta_lr"]),
                     loss=CE)
        trainer = self.trainer(leap)
        rng = np.random.default_rng(self.seed)
        size = min(self.cfg["meta_batch"], len(self.pretrain))
        hook = leap.flat_hook()
        for step in range(self.cfg["meta_steps"]):
            batch = [self.pretrain[i] for i in
                     sorted(rng.choice(len(self.pretrain), size, replace=False))]
            runs = dataset_tasks.leap_meta_step(
                leap, trainer, batch, epochs=1, seed=self.seed + step,
                early_stopping=self.cfg["eval_every"] == 1, hook=hook)
            self.log(f"leap meta-step {step + 1}: final losses " + ", ".join(
                f"{k} {r.final_loss:.3f}" for k, r in runs.items()))
        return self.heldout_run(leap)

    def _continual(self, model, finish=None):
        sets = self.pretrain
        for visit in range(self.cfg["meta_steps"]):
            for t, data in enumerate(sets):
                model.select(t)
                fit_dataset(model, data, 1, learning_rate=LR,
                            batch_size=BATCH, eval_every=10 ** 9,
                            early_stopping=False, restore_best=False,
                            seed=self.seed + visit, train_eval_size=1)
                if finish:
                    finish(t)
            self.log(f"{type(model).__name__}: pass {visit + 1} done")
        model.select(len(sets))
        run = fit_dataset(model, self.heldout, self.cfg["heldout_epochs"],
                          learning_rate=LR, batch_size=BATCH,
                          eval_every=self.cfg["eval_every"], seed=self.seed,
                          train_eval_size=self.cfg["train_eval"])
        predict = tf.function(model.call)
        err = tfmeta.baselines.error_rate(predict, *self.heldout.test)
        return run, err

    def pnn(self):
        classes = [s.num_classes for s in self.pretrain] + [
            self.heldout.num_classes]
        return self._continual(ProgressiveNet(
            classes, filters=self.cfg["filters"], seed=self.seed))

    def hat(self):
        classes = [s.num_classes for s in self.pretrain] + [
            self.heldout.num_classes]
        model = HAT(classes, filters=self.cfg["filters"], seed=self.seed)
        return self._continual(model, finish=model.finish)


def write_table(results, out, names):
    lines = ["| Held-out | Method | Test % (paper) | Train % (paper) | "
             "AUC (paper) | steps | s |", "|---|---|---|---|---|---|---|"]
    for name in names:
        for method, r in results.get(name, {}).items():
            paper = PAPER.get(name, {}).get(method)
            p = (lambda i: f" ({paper[i]})") if paper else (lambda i: "")
            lines.append(
                f"| {name} | {LABELS[method]} | {r['test']:.1f}{p(0)} | "
                f"{r['train']:.1f}{p(1)} | {r['auc']:.1f}{p(2)} | "
                f"{r['steps']}{' (early stop)' if r['stopped_early'] else ''}"
                f" | {r['seconds']:.0f} |")
    wins = [n for n in names if {"leap", "scratch"} <= set(results.get(n, {}))
            and results[n]["leap"]["auc"] < results[n]["scratch"]["auc"]]
    done = [n for n in names if {"leap", "scratch"} <= set(results.get(n, {}))]
    missing = [n for n in multicv.PAPER_DATASETS if n not in names]
    lines += ["", f"Leap's AUC below no pretraining's on {len(wins)} of "
              f"{len(done)} held-out sets ({', '.join(wins) or 'none'}).",
              f"Not available (not run): {', '.join(missing)}."]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    return "\n".join(lines)


def plot(results, out, names):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in names if n in results]
    if not names:
        return
    cols = min(len(names), 2)
    rows = int(math.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.8 * rows),
                             squeeze=False)
    for ax, name in zip(axes.flat, names):
        for method, r in results[name].items():
            ax.plot(r["eval_steps"], [100 * e for e in r["train_errors"]],
                    label=f"{LABELS[method]} (AUC {r['auc']:.1f})")
        ax.set_title(f"held out: {name}")
        ax.set_xlabel("update on the held-out set")
        ax.set_ylabel("training error %")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", choices=sorted(PRESETS), default="small")
    parser.add_argument("--datasets", help="comma-separated (default: all "
                        "available of " + ", ".join(multicv.FILE_DATASETS) + ")")
    parser.add_argument("--heldout", help="comma-separated held-out sets "
                        "(default: every data set in turn)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--data-dir", help="directory holding mnist/, "
                        "fashion-mnist/, notmnist/, cifar10/ (default "
                        "$TFMETA_DATA or ../shared/data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--meta-lr", type=float, default=META_LR,
                        help="Leap's Adam meta learning rate (paper: 0.01)")
    parser.add_argument("--meta-steps", type=int,
                        help="pretraining meta-steps / passes (preset's)")
    parser.add_argument("--out", default="runs/multicv")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite table.md and curves.png from "
                        "results.json")
    args = parser.parse_args(argv)
    cfg = dict(PRESETS[args.budget], meta_lr=args.meta_lr)
    if args.meta_steps is not None:
        cfg["meta_steps"] = args.meta_steps
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {list(METHODS)}")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    stored = json.loads(path.read_text()) if path.is_file() else {}
    if stored and not args.report_only and (
            stored.get("budget") != args.budget or stored.get("config") != cfg):
        parser.error(f"{path} holds a run with other settings ("
                     f"{stored.get('budget')!r}, {stored.get('config')}); use "
                     "another --out")
    results = stored.get("results", {})
    names = (args.datasets.split(",") if args.datasets
             else multicv.available(args.data_dir))
    if args.report_only:
        print(write_table(results, out, stored.get("datasets", names)))
        plot(results, out, stored.get("datasets", names))
        return 0
    if len(names) < 2:
        parser.error(f"leave-one-out needs at least 2 data sets; found {names}")
    start = time.time()
    log = lambda msg: print(f"[{time.time() - start:7.1f} s] {msg}",  # noqa
                            flush=True)
    sets = {}
    for name in names:
        data = multicv.load(name, args.data_dir)
        sets[name] = multicv.subsample(data, cfg["train"], cfg["val"],
                                       cfg["test"], seed=args.seed)
        log(f"loaded {name}: " + ", ".join(
            f"{k} {len(getattr(sets[name], k)[0])}"
            for k in ("train", "val", "test")))
    tf.keras.utils.set_random_seed(args.seed)
    heldouts = args.heldout.split(",") if args.heldout else names
    for held in heldouts:
        fold = Fold(sets[held], [sets[n] for n in names if n != held], cfg,
                    args.seed, lambda m, h=held: log(f"{h}: {m}"))
        for method in methods:
            t0 = time.time()
            run, err = getattr(fold, method)()
            r = summary(run, err, fold.total, time.time() - t0)
            results.setdefault(held, {})[method] = r
            log(f"{held}: {method} test {r['test']:.1f}% train "
                f"{r['train']:.1f}% AUC {r['auc']:.1f} ({r['steps']} steps, "
                f"{r['seconds']:.0f} s)")
            path.write_text(json.dumps(
                {"budget": args.budget, "config": cfg, "datasets": names,
                 "command": " ".join(sys.argv), "results": results},
                indent=1))
    print(write_table(results, out, names))
    plot(results, out, names)
    return 0


if __name__ == "__main__":
    sys.exit(main())

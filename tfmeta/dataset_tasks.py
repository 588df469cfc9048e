"""Whole data sets as tasks (Leap section 4.2, appendix G).

A task is a whole data set (``tfmeta.tasks.multicv.DataSet``: train, val and
test splits): a meta-learner's learner trains on its training split with
minibatches of ``batch_size`` drawn epoch by epoch (a fresh seeded
permutation per epoch, the remainder of an epoch dropped), SGD with cosine
annealing of the inner optimizer's learning rate to 0 over ``epochs``
epochs (Loshchilov & Hutter; appendix G), for up to ``epochs`` epochs,
stopped early when the validation error has not improved for ``patience``
(10) consecutive evaluations (``stop_index``; appendix G). It is judged on
its test split with the parameters of the best validation error.

``DatasetTrainer`` runs this with the meta-learner's blocks: its
``adaptation()`` (inner optimizer, mask), ``task_objective()``,
``task_start`` (a fresh head under ``multi_head``) and the inner loop's
``Stepper``. The ``eval_every`` updates between two evaluations are one
compiled ``tf.while_loop`` (no Python loop per step); the optimizer state,
the global step (the cosine schedule's) and the hook's state (Leap's
pull-forward accumulator) carry over from one chunk to the next, so the
path is the same as one loop's. ``leap_meta_step`` is Leap's meta-step over
whole data sets: each data set of the meta-batch trains from the shared
initialization (1 epoch in the paper's meta-training), accumulating eq. 8
on the fly; the mean is applied by the Leap model's outer optimizer.
"""

import collections
import math

import numpy as np
import tensorflow as tf

from tfmeta import heads, inner_loop
from tfmeta.checks import positive_int
from tfmeta.leap import flat_state, unflatten

PATIENCE = 10

DatasetRun = collections.namedtuple(
    "DatasetRun", ["params", "nontrainable", "hook_state", "steps",
                   "eval_steps", "train_errors", "val_errors", "best",
                   "stopped_early", "final_loss"])
DatasetRun.__doc__ = """One task's training: the best-validation ``params``
and ``nontrainable``; the hook's final state; ``steps`` updates made;
``eval_steps``, ``train_errors`` and ``val_errors`` per evaluation
(evaluation 0 is before any update); ``best`` the index of the best
evaluation; ``stopped_early``; the last minibatch loss."""


def stop_index(val_errors, patience=PATIENCE):
    """The evaluation at which the early-stopping rule stops: the first
    ``j`` with ``patience`` consecutive evaluations since the best one that
    did not improve on it (strictly lower error), else ``None``."""
    best, best_j = math.inf, 0
    for j, err in enumerate(val_errors):
        if err < best:
            best, best_j = err, j
        elif j - best_j >= patience:
            return j
    return None


def cosine_factor(step, total):
    """Cosine annealing from 1 to 0 over ``total`` steps."""
    t = tf.minimum(tf.cast(step, tf.float32), tf.cast(total, tf.float32))
    return 0.5 * (1.0 + tf.cos(math.pi * t / tf.cast(total, tf.float32)))


class DatasetTrainer:
    """Trains a meta-learner's learner on whole data sets (module docstring).

    Args:
      meta: a compiled ``tfmeta.MetaLearner`` (its learner, inner optimizer,
        mask, ``multi_head``).
      batch_size: examples per update (32 in the paper).
      eval_every: updates between two evaluations of the validation error
        (the paper evaluates after every update; that costs a pass over the
        validation split each time).
      patience: evaluations without improvement before stopping.
      cosine: anneal the inner learning rate with a cosine to 0 over the
        run's ``epochs`` (else constant).
      train_eval_size: the training error is measured on the first that
        many training examples (the training-error curve).
    """

    def __init__(self, meta, batch_size=32, eval_every=50, patience=PATIENCE,
                 cosine=True, train_eval_size=1000, eval_batch_size=500):
        self.meta = meta
        self.batch_size = positive_int("batch_size", batch_size)
        self.eval_every = positive_int("eval_every", eval_every)
        self.patience = positive_int("patience", patience)
        self.cosine = bool(cosine)
        self.train_eval_size = positive_int("train_eval_size", train_eval_size)
        self.eval_batch_size = positive_int("eval_batch_size", eval_batch_size)
        self._fns = {}

    # ------------------------------------------------------------ graph
    def _stepper(self, hook, total):
        spec = self.meta.adaptation()
        opt = spec.optimizer
        if self.cosine:
            base = opt.learning_rate
            rate = (lambda i: base(i) * cosine_factor(i, total)) if callable(
                base) else (lambda i: base * cosine_factor(i, total))
            opt = opt.with_learning_rate(rate)
        return inner_loop.Stepper(self.meta.task_objective(), opt,
                                  spec.mask, hook)

    def _batch_fn(self, x, y, seed):
        n = tf.shape(x)[0]
        per_epoch = n // self.batch_size

        def batch(step):
            epoch, k = step // per_epoch, step % per_epoch
            key = tf.random.experimental.stateless_fold_in(
                seed, tf.cast(epoch, tf.int64))
            order = tf.argsort(tf.random.stateless_uniform([n], key))
            index = order[k * self.batch_size:(k + 1) * self.batch_size]
            return tf.gather(x, index), tf.gather(y, index)
        return batch

    def _functions(self, hook):
        key = id(hook) if hook is not None else None
        if key in self._fns:
            return self._fns[key]

        @tf.function(reduce_retracing=True)
        def start(params, nontrainable, x, y, seed, total, hook_state):
            params = self.meta.task_start(params, seed)
            batch = self._batch_fn(x, y, seed)
            return self._stepper(hook, total).start(
                params, nontrainable, batch(0), hook_state)

        @tf.function(reduce_retracing=True)
        def run(state, x, y, seed, total, end):
            stepper = self._stepper(hook, total)
            batch = self._batch_fn(x, y, seed)
            return tf.while_loop(
                lambda s: s.step < end,
                lambda s: (stepper.step(s, batch(s.step + 1)),),
                (state,))[0]

        @tf.function(reduce_retracing=True)
        def wrong(params, nontrainable, x, y):
            pred, _ = self.meta.learner.stateless_call(
                params, nontrainable, x, training=False)
            return tf.reduce_sum(tf.cast(
                tf.not_equal(tf.argmax(pred, -1, output_type=tf.int32),
                             tf.cast(y, tf.int32)), tf.int32))

        self._fns[key] = (start, run, wrong)
        return self._fns[key]

    # ----------------------------------------------------------- public
    def error(self, params, nontrainable, x, y):
        """Classification error (fraction) of ``params`` on ``(x, y)``,
        inference mode."""
        wrong = self._functions(None)[2]
        total = 0
        for i in range(0, len(x), self.eval_batch_size):
            total += int(wrong(list(params), list(nontrainable),
                               x[i:i + self.eval_batch_size],
                               y[i:i + self.eval_batch_size]))
        return total / max(len(x), 1)

    def train(self, data, epochs, params=None, nontrainable=None, seed=0,
              hook=None, hook_state=(), early_stopping=True, evaluate=True,
              log=None):
        """Trains on ``data`` (a ``DataSet``) from ``params`` (default: the
        meta-learner's current state; a fresh head under ``multi_head``)
        for up to ``epochs`` epochs; returns a ``DatasetRun``. With
        ``evaluate=False`` all updates run as one compiled loop, with no
        evaluations (nor early stopping): the last parameters are
        returned."""
        if params is None:
            params, nontrainable = self.meta.current_state()
        x, y = data.train
        per_epoch = len(x) // self.batch_size
        if per_epoch < 1:
            raise ValueError(f"{data.name}: {len(x)} training examples are "
                             f"fewer than one batch of {self.batch_size}.")
        total = int(math.ceil(epochs * per_epoch))
        if total < 1:
            raise ValueError(f"epochs={epochs} gives no update.")
        start, run, _ = self._functions(hook)
        xt, yt = tf.constant(x), tf.constant(y)
        seed_t = tf.constant([seed, 0], tf.int64)
        total_t = tf.constant(total)
        state = start(list(params), list(nontrainable), xt, yt, seed_t,
                      total_t, hook_state)
        if not evaluate:
            state = run(state, xt, yt, seed_t, total_t, total_t)
            return DatasetRun(state.params, state.nontrainable,
                              state.hook_state, int(state.step), [], [], [],
                              None, False, float(state.loss))
        tx, ty = x[:self.train_eval_size], y[:self.train_eval_size]
        vx, vy = data.val
        evals, train_err, val_err = [], [], []
        best = None
        stopped = False
        snapshot = (state.params, state.nontrainable)
        while True:
            step = int(state.step)
            evals.append(step)
            train_err.append(self.error(state.params, state.nontrainable,
                                        tx, ty))
            val_err.append(self.error(state.params, state.nontrainable,
                                      vx, vy))
            if best is None or val_err[-1] < val_err[best]:
                best, snapshot = len(val_err) - 1, (state.params,
                                                    state.nontrainable)
            if log:
                log(f"{data.name}: step {step}/{total} train error "
                    f"{train_err[-1]:.3f} val error {val_err[-1]:.3f}")
            if early_stopping and stop_index(val_err, self.patience) is not None:
                stopped = True
                break
            if step >= total:
                break
            end = min(step + self.eval_every, total)
            state = run(state, xt, yt, seed_t, total_t, tf.constant(end))
            if not np.isfinite(float(state.loss)):
                raise FloatingPointError(
                    f"{data.name}: the training loss became {float(state.loss)}"
                    f" at step {int(state.step)}; lower the learning rate.")
        return DatasetRun(list(snapshot[0]), list(snapshot[1]),
                          state.hook_state, int(state.step), evals, train_err,
                          val_err, best, stopped, float(state.loss))

    def test_error(self, data, run):
        """Test error of a ``DatasetRun``'s (best-validation) parameters."""
        return self.error(run.params, run.nontrainable, *data.test)


def leap_meta_step(leap, trainer, datasets, epochs=1, seed=0,
                   early_stopping=True, hook=None):
    """One Leap meta-step (eq. 8) over whole data sets: each of
    ``datasets`` trains from the shared initialization for ``epochs``
    epochs (with ``early_stopping`` as appendix G; without it no
    evaluations either, one compiled loop per data set), Leap's pull-forward term
    accumulated on the fly (``leap.flat_hook()``); the mean over the data
    sets, without the head's entries under ``multi_head``, is applied with
    ``leap.apply_if_finite``. ``hook``: ``leap.flat_hook()``, made once
    and given to every call so that the trainer traces its loop once (a
    new hook is a new compiled function). Returns ``{name: DatasetRun}``."""
    params, nontrainable = leap.current_state()
    hook = leap.flat_hook() if hook is None else hook
    total, runs, losses = None, {}, []
    for i, data in enumerate(datasets):
        run = trainer.train(data, epochs, params, nontrainable,
                            seed=seed * 1000 + i, hook=hook,
                            hook_state=flat_state(params),
                            early_stopping=early_stopping,
                            evaluate=early_stopping)
        (flat,), _ = run.hook_state
        grads = heads.without(unflatten(flat, params), leap.head_index)
        total = grads if total is None else [a + b for a, b in zip(total, grads)]
        runs[data.name] = run
        losses.append(run.final_loss)
    grads = [g / len(datasets) for g in total]
    leap.apply_if_finite(grads, tf.constant(float(np.mean(losses))))
    return runs

"""``MetaLearner``: the Keras model every tfmeta method is.

A meta-learner wraps an ordinary Keras task learner. Its ``train_step`` is one
meta-step over a batch of tasks, so ``compile``/``fit``/``evaluate``,
callbacks, ``History``, TensorBoard and ``BackupAndRestore`` work as usual.

Task batches are dicts (or 4-tuples in this order) with a leading meta-batch
axis: ``support_x [B, N, ...]``, ``support_y [B, N, ...]``, ``query_x [B, M,
...]``, ``query_y [B, M, ...]``. Each task is adapted on its support split
with the shared compiled inner loop (``tfmeta.inner_loop.adapt``) and judged
on its query split. Subclasses implement ``task_meta_gradient``.

Batch normalization: during adaptation the learner runs in training mode
(batch statistics) and its moving statistics are carried through the inner
loop; query predictions use inference mode with those adapted statistics.
With ``tfmeta.layers.BatchNormalization`` (momentum 0) that means the
statistics of the last support minibatch, as in Leap's reference code. The
meta-learner's own moving statistics are never changed by meta-training.
"""

import math
import warnings

import keras
import numpy as np
import tensorflow as tf

from tfmeta import inner_loop, inner_optimizers
from tfmeta import checks
from tfmeta.checks import positive_int
from tfmeta.errors import NonFiniteLossError

TASK_KEYS = ("support_x", "support_y", "query_x", "query_y")


def _shape_str(shape):
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _compatible(a, b):
    return len(a) == len(b) and all(
        x is None or y is None or x == y for x, y in zip(a, b))


def unpack_tasks(data):
    """The task-batch dict of a dataset element (dict or 4-tuple)."""
    if isinstance(data, (tuple, list)) and data and isinstance(data[0], dict) \
            and all(d is None for d in data[1:]):
        data = data[0]  # train_on_batch/test_on_batch pack x as (x, None, None)
    if isinstance(data, dict):
        missing = [k for k in TASK_KEYS if k not in data]
        if missing:
            raise ValueError(
                f"A task batch needs the keys {list(TASK_KEYS)}; missing "
                f"{missing} (got keys {sorted(data)}).")
        return dict(data)
    if isinstance(data, (tuple, list)) and len(data) == 4:
        return dict(zip(TASK_KEYS, data))
    raise ValueError(
        "A task batch must be a dict with keys "
        f"{list(TASK_KEYS)} or a 4-tuple in that order; got {type(data)}.")


def _flatten_tasks(t):
    """``[B, N, ...] -> [B * N, ...]``, for symbolic and real tensors."""
    if isinstance(t, keras.KerasTensor):
        n = None if None in t.shape[:2] else t.shape[0] * t.shape[1]
        return keras.KerasTensor((n,) + tuple(t.shape[2:]), t.dtype)
    return tf.reshape(t, tf.concat([[-1], tf.shape(t)[2:]], 0))


class _StopOnNonFinite(keras.callbacks.Callback):
    """Stops ``fit`` at the first meta-step whose loss is NaN or infinite."""

    def __init__(self):
        super().__init__()
        self.epoch, self.batch, self.value = 0, None, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        value = (logs or {}).get("loss")
        if value is not None and not math.isfinite(float(np.asarray(value))):
            self.batch, self.value = batch, float(np.asarray(value))
            self.model.stop_training = True


class MetaLearner(keras.Model):
    """Base class of the meta-learners: one ``train_step`` is one meta-step.

    Args:
      learner: a built Keras model (the task learner).
      inner_optimizer: Keras optimizer used for task adaptation (SGD, Adam or
        RMSprop); applied functionally inside the compiled loop.
      inner_steps: adaptation steps per task during meta-training.
      eval_steps: adaptation steps in ``evaluate``/``adapt`` (default
        ``inner_steps``).
      inner_batch_size: support minibatch size per step (``None``: full split).
      parallel_tasks: tasks of a meta-batch adapted concurrently.
      vectorize_tasks: run the tasks of a meta-batch as one batched
        computation (``tf.vectorized_map``: stacked weights, batched matmuls).
        For small nets such as the sine MLP, best with
        ``compile(jit_compile=True)``: on 2 CPU cores, 10 or 25 sine tasks
        ran 5-6x faster than the default (one task after another, no XLA).
        Without XLA it pays from ~10 tasks on, since each batched matmul has
        a fixed cost of tens of microseconds on CPU (docs/performance.md).
        Conv nets gain nothing (Conv2D with per-task filters is not
        vectorized).
      seed: seed of the minibatch draws (a Keras ``SeedGenerator``, saved with
        the model's weights).
    """

    def __init__(self, learner, inner_optimizer=None, inner_steps=1,
                 eval_steps=None, inner_batch_size=None, parallel_tasks=1,
                 vectorize_tasks=False, seed=None, name=None, **kwargs):
        super().__init__(name=name or type(self).__name__.lower(), **kwargs)
        if not isinstance(learner, keras.Model):
            raise TypeError(
                f"learner must be a keras.Model, got {type(learner).__name__}.")
        if not learner.built:
            raise ValueError(
                "learner must be built: give it a keras.Input or call it on a "
                "batch once before wrapping it.")
        self.learner = learner
        if inner_optimizer is None:
            inner_optimizer = keras.optimizers.SGD(0.01)
        self.inner_optimizer = inner_optimizer
        self.inner_update = inner_optimizers.from_keras(inner_optimizer)
        self.inner_steps = positive_int("inner_steps", inner_steps)
        self.eval_steps = positive_int(
            "eval_steps", eval_steps if eval_steps is not None else inner_steps)
        self.inner_batch_size = positive_int(
            "inner_batch_size", inner_batch_size, allow_none=True)
        self.parallel_tasks = positive_int("parallel_tasks", parallel_tasks)
        self.vectorize_tasks = bool(vectorize_tasks)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.support_loss_tracker = keras.metrics.Mean(name="support_loss")
        self.grad_norm_tracker = keras.metrics.Mean(name="grad_norm")
        self.task_loss_fn = None
        self._adapt_function = None
        self._evaluate_tasks_function = None
        self.built = True

    # ----------------------------------------------------------- Keras API
    @property
    def meta_variables(self):
        """The variables meta-training updates (the learner's trainables)."""
        return self.learner.trainable_variables

    def call(self, inputs, training=False):
        """Predictions of the meta-learned initialization.

        Given a task batch (as Keras does when it builds metric state under a
        ``tf.distribute`` strategy), predicts on its flattened query split.
        """
        if isinstance(inputs, dict) and "query_x" in inputs:
            inputs = _flatten_tasks(inputs["query_x"])
        return self.learner(inputs, training=training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Keras ``compute_metrics``; ``y`` defaults to a task batch's
        flattened query targets."""
        if y is None and isinstance(x, dict) and "query_y" in x:
            y = _flatten_tasks(x["query_y"])
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        """Keras ``compute_loss`` (used by Keras to build its loss state)."""
        if y is None and isinstance(x, dict) and "query_y" in x:
            y = _flatten_tasks(x["query_y"])
        return super().compute_loss(x, y, y_pred, sample_weight, training)

    def compile(self, optimizer="sgd", loss=None, metrics=None,
                jit_compile=False, **kwargs):
        """Keras ``compile``; ``loss`` is the task loss ``loss(y_true, y_pred)``.

        ``optimizer`` takes the meta-gradient (the outer step). XLA is off by
        default because it is much slower for conv nets on CPU.
        """
        if loss is None:
            raise ValueError(
                "compile() needs loss=: the task loss, e.g. 'mse' or "
                "keras.losses.SparseCategoricalCrossentropy(from_logits=True).")
        checks.outer_learning_rate(self, optimizer)
        reason = self.xla_unsupported()
        if reason and jit_compile is True:
            raise ValueError(f"{type(self).__name__} cannot be compiled with "
                             f"XLA (jit_compile=True): {reason}")
        self.task_loss_fn = keras.losses.get(loss)
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics,
                        jit_compile=jit_compile, **kwargs)
        if reason and self.jit_compile:  # "auto" chose XLA (e.g. on a GPU)
            warnings.warn(f"jit_compile='auto': not using XLA, since {reason}",
                          stacklevel=2)
            self.jit_compile = False
        if self.meta_variables and not self.optimizer.built:
            self.optimizer.build(self.meta_variables)
        self._adapt_function = None
        self._evaluate_tasks_function = None

    def xla_unsupported(self):
        """Why this configuration cannot be compiled with XLA, or ``None``."""
        return None

    def fit(self, *args, callbacks=None, **kwargs):
        """Keras ``fit``; stops and raises ``NonFiniteLossError`` on NaN/inf.

        A meta-step whose loss or meta-gradient is not finite is not applied,
        so the weights stay those of the last finite meta-step.
        """
        guard = _StopOnNonFinite()
        kwargs.setdefault("shuffle", False)  # task datasets draw their own order
        history = super().fit(
            *args, callbacks=list(callbacks or []) + [guard], **kwargs)
        if guard.batch is not None:
            raise NonFiniteLossError(
                f"Meta-training stopped: the meta-loss became {guard.value} at "
                f"epoch {guard.epoch + 1}, step {guard.batch + 1}. That "
                "meta-step was not applied; the model keeps the weights of "
                "the last finite meta-step. Lower the inner or outer learning "
                "rate, or check the task data for NaN/inf.",
                history=history, step=guard.batch)
        return history

    # ------------------------------------------------------- method hooks
    def task_meta_gradient(self, params, nontrainable, task, seed):
        """Meta-gradient of one task: ``(grads, logs, query_predictions)``.

        ``logs`` holds scalar tensors and must contain ``loss`` (query loss
        after adaptation) and ``support_loss``.
        """
        raise NotImplementedError

    def extra_metrics(self):
        """Method-specific ``{log name: tracker}``, filled from ``logs``."""
        return {}

    # --------------------------------------------------- shared machinery
    def _require_compiled(self):
        if self.task_loss_fn is None:
            raise RuntimeError(
                f"{type(self).__name__} is not compiled: call "
                "compile(optimizer=..., loss=...) first.")

    def _adapt_task(self, params, nontrainable, x, y, steps, seed, hook=None,
                    hook_state=()):
        return inner_loop.adapt(
            self.learner, self.task_loss_fn, self.inner_update, params,
            nontrainable, x, y, steps, batch_size=self.inner_batch_size,
            seed=seed, hook=hook, hook_state=hook_state)

    def _query_loss(self, params, nontrainable, task):
        """Query loss and predictions of adapted weights (inference mode)."""
        loss, pred, _ = inner_loop.task_loss(
            self.learner, self.task_loss_fn, params, nontrainable,
            task["query_x"], task["query_y"], training=False)
        return loss, pred

    def _current_state(self):
        params = [tf.convert_to_tensor(v) for v in self.learner.trainable_variables]
        nontrainable = [tf.convert_to_tensor(v)
                        for v in self.learner.non_trainable_variables]
        return params, nontrainable

    def _check_tasks(self, tasks):
        """Static checks of a task batch against the learner (trace time)."""
        shapes = {k: tuple(tf.TensorShape(tasks[k].shape).as_list())
                  for k in TASK_KEYS}
        for k, s in shapes.items():
            if len(s) < 2:
                raise ValueError(
                    f"{k} has shape {_shape_str(s)}; a task batch needs a "
                    "leading meta-batch axis and an example axis [B, N, ...].")
        metas = {s[0] for s in shapes.values() if s[0] is not None}
        if len(metas) > 1:
            raise ValueError(
                "support and query splits disagree on the number of tasks: "
                + ", ".join(f"{k} {_shape_str(s)}" for k, s in shapes.items()))
        for split in ("support", "query"):
            xs, ys = shapes[f"{split}_x"], shapes[f"{split}_y"]
            if xs[1] == 0:
                raise ValueError(f"the {split} split is empty ({split}_x has "
                                 f"shape {_shape_str(xs)}).")
            if not _compatible(xs[1:2], ys[1:2]):
                raise ValueError(
                    f"{split}_x has {xs[1]} examples per task but {split}_y "
                    f"has {ys[1]}.")
        self._check_example_shapes(
            shapes["support_x"][2:], shapes["support_y"][2:], "support")
        self._check_example_shapes(
            shapes["query_x"][2:], shapes["query_y"][2:], "query")

    def _check_example_shapes(self, x_shape, y_shape, split):
        """Per-example input/target shapes against the learner."""
        inputs = getattr(self.learner, "inputs", None)
        if inputs:
            expected = tuple(inputs[0].shape[1:])
            if not _compatible(x_shape, expected):
                raise ValueError(
                    f"{split}_x has per-example shape {_shape_str(x_shape)} but "
                    f"the learner expects inputs of shape {_shape_str(expected)}.")
        try:
            out = self.learner.compute_output_spec(
                keras.KerasTensor((None,) + tuple(x_shape)))
            out_shape = tuple(out.shape[1:])
        except Exception as err:  # noqa: BLE001 - reported with context
            raise ValueError(
                f"the learner cannot take {split}_x examples of shape "
                f"{_shape_str(x_shape)}: {err}") from err
        if not (_compatible(y_shape, out_shape)
                or _compatible(y_shape, out_shape[:-1])):
            raise ValueError(
                f"{split}_y has per-example shape {_shape_str(y_shape)} but the "
                f"learner outputs {_shape_str(out_shape)} per example; targets "
                "must match the outputs (or drop their last axis, as sparse "
                "labels do).")

    def _prepare(self, data):
        self._require_compiled()
        tasks = unpack_tasks(data)
        self._check_tasks(tasks)
        return tasks

    def _task_seeds(self, num_tasks):
        seed = tf.cast(self.seed_generator.next(), tf.int64)
        # Philox by name: what TensorFlow's kernels pick anyway, while XLA's
        # automatic choice may differ (the same seed, other draws).
        return tf.random.experimental.stateless_split(seed, num_tasks,
                                                      alg="philox")

    def _over_tasks(self, fn, tasks):
        """Run ``fn(task, seed) -> (grads, logs, pred)`` on every task.

        Returns the mean gradient, mean logs and the stacked predictions. The
        tasks run in a ``tf.while_loop`` (``parallel_tasks`` at a time) with
        no per-task Python state, so a meta-batch can be split over
        ``tf.distribute`` replicas.
        """
        num_tasks = tf.shape(tasks["support_x"])[0]
        seeds = self._task_seeds(num_tasks)
        if self.vectorize_tasks:
            grads, logs, preds = tf.vectorized_map(
                lambda args: fn(*args), (tasks, seeds))
            mean = lambda t: tf.reduce_mean(t, axis=0)  # noqa: E731
            return ([mean(g) for g in grads],
                    {k: mean(v) for k, v in logs.items()}, preds)
        task_at = lambda i: {k: v[i] for k, v in tasks.items()}  # noqa: E731
        # The first task runs outside the loop to fix the structure and the
        # dtypes of the accumulators.
        grads0, logs0, pred0 = fn(task_at(0), seeds[0])
        if tasks["support_x"].shape[0] == 1:
            # One task (serial Reptile, Algorithm 1): no task loop, whose
            # control flow adds to every meta-step's fixed cost.
            return list(grads0), dict(logs0), pred0[None]
        preds = tf.TensorArray(pred0.dtype, size=num_tasks,
                               element_shape=pred0.shape).write(0, pred0)

        def body(i, grads, logs, preds):
            g, lg, pred = fn(task_at(i), seeds[i])
            grads = [a + b for a, b in zip(grads, g)]
            logs = {k: logs[k] + lg[k] for k in logs}
            return i + 1, grads, logs, preds.write(i, pred)

        _, grads, logs, preds = tf.while_loop(
            lambda i, *_: i < num_tasks, body,
            (tf.constant(1), list(grads0), dict(logs0), preds),
            parallel_iterations=self.parallel_tasks)
        mean = lambda t: t / tf.cast(num_tasks, t.dtype)  # noqa: E731
        return ([mean(g) for g in grads], {k: mean(v) for k, v in logs.items()},
                preds.stack())

    def _update_metrics(self, logs, tasks, preds, extra=True):
        self.loss_tracker.update_state(logs["loss"])
        self.support_loss_tracker.update_state(logs["support_loss"])
        for key, tracker in self.extra_metrics().items() if extra else ():
            tracker.update_state(logs[key])
        results = self.compute_metrics(None, _flatten_tasks(tasks["query_y"]),
                                       _flatten_tasks(preds))
        return {k: v for k, v in results.items()}

    def train_step(self, data):
        """One meta-step: adapt every task, average, apply the outer step."""
        tasks = self._prepare(data)
        params, nontrainable = self._current_state()
        grads, logs, preds = self._over_tasks(
            lambda task, seed: self.task_meta_gradient(
                params, nontrainable, task, seed), tasks)
        logs["loss"] = self._apply_if_finite(grads, logs["loss"])
        self.grad_norm_tracker.update_state(tf.linalg.global_norm(grads))
        return self._update_metrics(logs, tasks, preds)

    def _apply_if_finite(self, grads, loss):
        """Outer step, skipped when the loss or a gradient is NaN/inf.

        Returns the loss to report: NaN for a skipped step, which makes
        ``fit`` stop and raise ``NonFiniteLossError``.
        """
        finite = tf.reduce_all(
            [tf.math.is_finite(loss)]
            + [tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        # Under tf.distribute every replica holds the mean over its share of
        # the meta-batch, and Keras sums gradients across replicas; all
        # replicas must also agree on skipping, or the all-reduce would hang.
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context else 1
        if replicas > 1:
            grads = [g / replicas for g in grads]
            failed = context.all_reduce(
                "SUM", 1.0 - tf.cast(finite, tf.float32))
            finite = failed < 0.5

        if replicas > 1:
            # An optimizer update cannot sit in tf.cond across replicas: feed
            # zeros instead. NaN never reaches the weights, but the skipped
            # step still counts as an optimizer iteration.
            self.optimizer.apply(
                [tf.where(finite, g, tf.zeros_like(g)) for g in grads],
                self.meta_variables)
        else:
            def apply():
                self.optimizer.apply(grads, self.meta_variables)
                return tf.constant(True)

            tf.cond(finite, apply, lambda: tf.constant(False))
        return tf.where(finite, loss, tf.constant(float("nan"), loss.dtype))

    def _evaluate_task(self, params, nontrainable, task, seed):
        result = self._adapt_task(params, nontrainable, task["support_x"],
                                  task["support_y"], self.eval_steps, seed)
        loss, pred = self._query_loss(result.params, result.nontrainable, task)
        logs = {"loss": loss, "support_loss": result.loss_after}
        return [tf.zeros([])], logs, pred

    def test_step(self, data):
        """Adapt each task for ``eval_steps``; metrics on the query split."""
        tasks = self._prepare(data)
        params, nontrainable = self._current_state()
        _, logs, preds = self._over_tasks(
            lambda task, seed: self._evaluate_task(
                params, nontrainable, task, seed), tasks)
        results = self._update_metrics(logs, tasks, preds, extra=False)
        return {k: v for k, v in results.items()
                if k not in self.extra_metrics() and k != "grad_norm"}

    # ------------------------------------------------- per-task evaluation
    def evaluate_tasks(self, tasks, steps=None):
        """Per-task query losses of one task batch, before and after
        adapting for ``steps`` (default ``eval_steps``) on the support split.

        Returns ``{"loss_before": [B], "loss_after": [B]}`` as NumPy arrays,
        for spreads over tasks (``evaluate`` reports means only).
        """
        self._require_compiled()
        steps = positive_int("steps", steps if steps is not None
                              else self.eval_steps)
        tasks = {k: tf.convert_to_tensor(v) for k, v in unpack_tasks(tasks).items()
                 if k in TASK_KEYS}
        self._check_tasks(tasks)
        checks.retrace_on_new_ranks(self, "_evaluate_tasks_function", tasks)
        if self._evaluate_tasks_function is None:
            self._evaluate_tasks_function = tf.function(
                self._evaluate_tasks_graph, jit_compile=bool(self.jit_compile),
                reduce_retracing=True)
        before, after = self._evaluate_tasks_function(tasks, tf.constant(steps))
        return checks.finite_task_losses(
            {"loss_before": before.numpy(), "loss_after": after.numpy()})

    def _evaluate_tasks_graph(self, tasks, steps):
        params, nontrainable = self._current_state()
        seeds = self._task_seeds(tf.shape(tasks["support_x"])[0])

        def one(args):
            task, seed = args
            before, _ = self._query_loss(params, nontrainable, task)
            result = self._adapt_task(params, nontrainable, task["support_x"],
                                      task["support_y"], steps, seed)
            after, _ = self._query_loss(result.params, result.nontrainable, task)
            return tf.cast(before, tf.float32), tf.cast(after, tf.float32)

        return tf.map_fn(one, (tasks, seeds),
                         fn_output_signature=(tf.float32, tf.float32),
                         parallel_iterations=self.parallel_tasks)

    # ------------------------------------------------------------ adapt()
    def adapt(self, support_x, support_y, steps=None):
        """Adapt a copy of the learner to one task; returns a Keras model.

        The meta-learner is unchanged. ``steps`` defaults to ``eval_steps``.
        """
        self._require_compiled()
        steps = positive_int("steps", steps if steps is not None
                              else self.eval_steps)
        x = tf.convert_to_tensor(support_x)
        y = tf.convert_to_tensor(support_y)
        if x.shape.rank is None or x.shape.rank < 1 or x.shape[0] == 0:
            raise ValueError(f"support_x must hold at least one example; got "
                             f"shape {_shape_str(x.shape.as_list())}.")
        if y.shape.rank < 1 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"support_x has {x.shape[0]} examples but support_y has shape "
                f"{_shape_str(y.shape.as_list())}.")
        self._check_example_shapes(
            tuple(x.shape[1:]), tuple(y.shape[1:]), "support")
        if x.dtype.is_floating:
            x = tf.cast(x, self.learner.compute_dtype)
        checks.retrace_on_new_ranks(self, "_adapt_function", (x, y))
        if self._adapt_function is None:
            self._adapt_function = tf.function(
                self._adapt_graph, jit_compile=bool(self.jit_compile),
                reduce_retracing=True)
        seed = tf.cast(self.seed_generator.next(), tf.int64)
        params, nontrainable, loss = self._adapt_function(
            x, y, tf.constant(steps), seed)
        if not np.isfinite(loss.numpy()):
            raise FloatingPointError(
                f"adaptation diverged: the support loss after {steps} steps is "
                f"{loss.numpy()}. Lower the inner learning rate or check the "
                "support data for NaN/inf.")
        return self._adapted_model(params, nontrainable)

    def _adapt_graph(self, x, y, steps, seed):
        params, nontrainable = self._current_state()
        result = self._adapt_task(params, nontrainable, x, y, steps, seed)
        return result.params, result.nontrainable, result.loss_after

    def _adapted_model(self, params, nontrainable):
        try:
            model = keras.models.clone_model(self.learner)
        except Exception:  # noqa: BLE001 - subclassed learners
            model = self.learner.__class__.from_config(self.learner.get_config())
            model.build(self.learner.inputs[0].shape if getattr(
                self.learner, "inputs", None) else None)
        for var, value in zip(model.trainable_variables, params):
            var.assign(value)
        for var, value in zip(model.non_trainable_variables, nontrainable):
            var.assign(value)
        return model

    # ------------------------------------------------------- config/export
    def get_config(self):
        """Constructor arguments (learner and inner optimizer serialized)."""
        return {
            "name": self.name,
            "learner": keras.saving.serialize_keras_object(self.learner),
            "inner_optimizer": keras.saving.serialize_keras_object(
                self.inner_optimizer),
            "inner_steps": self.inner_steps,
            "eval_steps": self.eval_steps,
            "inner_batch_size": self.inner_batch_size,
            "parallel_tasks": self.parallel_tasks,
            "vectorize_tasks": self.vectorize_tasks,
            "seed": self.seed_generator.get_config().get("seed"),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("learner", "inner_optimizer"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)

    def export(self, path=None, overwrite=False, target_spec=None):
        """Write a SavedModel (see ``tfmeta.export.export``); returns its path."""
        from tfmeta import export

        return export.export(self, path, overwrite=overwrite,
                             target_spec=target_spec)

"""``MetaLearner``: the Keras model every tfmeta method is.

A meta-learner wraps an ordinary Keras task learner. Its ``train_step`` is one
meta-step over a batch of tasks, so ``compile``/``fit``/``evaluate``,
callbacks, ``History``, TensorBoard and ``BackupAndRestore`` work as usual.

Task batches are dicts (or 4-tuples in this order) with a leading meta-batch
axis: ``support_x [B, N, ...]``, ``support_y [B, N, ...]``, ``query_x [B, M,
...]``, ``query_y [B, M, ...]``. Each task is adapted on its support split
with the shared compiled inner loop (``tfmeta.inner_loop``) and judged on its
query split.

**Extending.** A method is a subclass (docs/add_a_method.md). The template
(``MetaModel``, also the base of ``tfmeta.MetaTransfer``, which has no
inner loop) ``train_step`` calls ``meta_step(tasks)``; its default runs
``task_meta_gradient`` on every task (``over_tasks``) and applies the mean
with ``apply_if_finite``, so most methods (Reptile, FOMAML, Leap) override
``task_meta_gradient`` only, built from the public blocks ``current_state``,
``adapt_task``, ``query_loss`` and ``adaptation()``. Methods with another
kind of meta-step (FineTune, Scratch, WarpGrad's offline and continual
modes) override ``meta_step`` and still apply through ``apply_if_finite``
(override ``apply_meta_gradient`` to change how a finite meta-gradient is
applied). What the inner loop optimizes is ``task_objective()`` on
``support_data(task)``; the query side is ``query_loss``: override those
for tasks that are not supervised ``(x, y)`` pairs.

Batch normalization: during adaptation the learner runs in training mode
(batch statistics) and its moving statistics are carried through the inner
loop; query predictions use inference mode with those adapted statistics.
With ``tfmeta.layers.BatchNormalization`` (momentum 0) that means the
statistics of the last support minibatch, as in Leap's reference code. The
meta-learner's own moving statistics are never changed by meta-training.
"""

import collections
import contextlib
import math
import warnings

import keras
import numpy as np
import tensorflow as tf

from tfmeta import export as export_lib
from tfmeta import heads, inner_loop, inner_optimizers
from tfmeta import checks
from tfmeta import fast_path
from tfmeta.checks import positive_int
from tfmeta.errors import NonFiniteLossError

TASK_KEYS = ("support_x", "support_y", "query_x", "query_y")
"""The four keys of a task batch, in the order a 4-tuple task batch uses."""


def shape_str(shape):
    """A shape for messages: ``(?, 28, 28)``."""
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def compatible_shapes(a, b):
    """Same rank and equal sizes wherever both are known."""
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


#: What ``meta_step`` returns: the logs of the meta-step (scalars; ``loss``
#: and ``support_loss`` at least, plus the keys of ``extra_metrics()``), the
#: predictions the compiled metrics see and their targets (``None``: the
#: query targets of the task batch).
MetaStep = collections.namedtuple("MetaStep", ["logs", "predictions", "targets"],
                                  defaults=(None,))
"""What ``meta_step`` returns, a namedtuple ``(logs, predictions, targets)``.

``logs``: the meta-step's scalar tensors (``loss`` and ``support_loss`` at
least, plus the keys of ``extra_metrics()``); ``predictions``: what the
compiled metrics see; ``targets``: their targets (default ``None``: the query
targets of the task batch).
"""


@contextlib.contextmanager
def graph_options(options):
    """Grappler options (``tf.config.optimizer.set_experimental_options``)
    while the block runs, restored after: graphs instantiated inside it are
    optimized with them, the rest of the process keeps its own."""
    if not options:
        yield
        return
    before = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options(options)
    try:
        yield
    finally:
        # TensorFlow cannot unset an option: one that was unset goes back to
        # Grappler's default, on (the options taken here are passes).
        tf.config.optimizer.set_experimental_options(
            {k: before.get(k, True) for k in options})


@contextlib.contextmanager
def reduced_gradients(optimizer, replicas):
    """While the block runs, ``optimizer.apply`` takes gradients that are
    already all-reduced across ``tf.distribute`` replicas (every replica
    holds the same meta-gradient) and does not sum them again, as Keras's
    TensorFlow optimizer otherwise does in a replica context. Nothing
    changes on one replica."""
    if replicas == 1 or not hasattr(optimizer, "_all_reduce_sum_gradients"):
        yield
        return
    # (an instance attribute shadows the method; Keras's tracking
    # __setattr__ is bypassed)
    vars(optimizer)["_all_reduce_sum_gradients"] = list
    try:
        yield
    finally:
        vars(optimizer).pop("_all_reduce_sum_gradients", None)


def flatten_tasks(t):
    """``[B, N, ...] -> [B * N, ...]``, for symbolic and real tensors."""
    if isinstance(t, keras.KerasTensor):
        n = None if None in t.shape[:2] else t.shape[0] * t.shape[1]
        return keras.KerasTensor((n,) + tuple(t.shape[2:]), t.dtype)
    return tf.reshape(t, tf.concat([[-1], tf.shape(t)[2:]], 0))


def step_logs(logs):
    """The logs a ``train_step``/``test_step`` returns. Under a
    ``MultiWorkerMirroredStrategy`` of several workers Keras (3.15) reduces
    them with ``strategy.reduce("MEAN", value, axis=0)``, which fails on
    scalars: there they get a leading axis of one, which that reduction
    removes (the values are the same on every replica)."""
    strategy = tf.distribute.get_strategy()
    if not (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode()):
        return logs
    return {k: tf.reshape(v, [1]) if tf.is_tensor(v) and v.shape.rank == 0
            else v for k, v in logs.items()}


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops ``fit`` at the first meta-step whose loss is NaN or infinite."""

    def __init__(self):
        super().__init__()
        self.epoch, self.batch, self.value = 0, None, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        # (np.asarray: under a tf.distribute strategy a MirroredVariable)
        self.applied = int(np.asarray(self.model.optimizer.iterations))

    def on_train_batch_end(self, batch, logs=None):
        value = (logs or {}).get("loss")
        if value is not None and not math.isfinite(float(np.asarray(value))):
            if self.model.steps_per_execution > 1:
                # ``batch`` is the execution's last step; the meta-steps
                # applied since the epoch began count up to the bad one
                # (apply_if_finite skips all after it)
                batch = (int(np.asarray(self.model.optimizer.iterations))
                         - self.applied)
            self.batch, self.value = batch, float(np.asarray(value))
            self.model.stop_training = True


class MetaModel(keras.Model):
    """The Keras template every tfmeta meta-learner shares: one
    ``train_step`` is one meta-step.

    ``train_step`` checks the task batch (``prepare_tasks``, which calls
    ``check_tasks``), runs the method's ``meta_step`` and updates the metrics
    (``update_metrics``). The outer step ``apply_if_finite`` all-reduces the
    meta-gradient once under ``tf.distribute`` (so several replicas equal one
    device) and skips a step whose loss or meta-gradient is not finite;
    ``fit`` then stops and raises ``NonFiniteLossError``. ``MetaLearner``
    (methods that adapt a task learner in an inner loop) and
    ``tfmeta.MetaTransfer`` (support encoded, query learner decoded) are its
    subclasses; a subclass defines ``meta_variables``, ``check_tasks``,
    ``meta_step`` and ``test_step`` (and ``task_loss`` / ``log_trackers``
    where its loss function or its logs differ from the defaults).

    Args:
      name: the Keras model's name (default: the class name in lower case).
      **kwargs: passed on to ``keras.Model``.
    """

    def __init__(self, name=None, **kwargs):
        super().__init__(name=name or type(self).__name__.lower(), **kwargs)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.grad_norm_tracker = keras.metrics.Mean(name="grad_norm")
        self.task_loss_fn = None
        self._in_meta_step = False

    # ------------------------------------------------- what a method defines
    @property
    def meta_variables(self):
        """The variables the outer step updates."""
        raise NotImplementedError

    def meta_step(self, tasks):
        """The per-method part of ``train_step``: one meta-step on a checked
        task batch, applied through ``apply_if_finite``; returns a
        ``MetaStep``.

        Args:
          tasks: a checked task batch (dict of ``[B, ...]`` tensors).
        """
        raise NotImplementedError(
            f"{type(self).__name__} must override meta_step; see "
            "docs/add_a_method.md.")

    def check_tasks(self, tasks):
        """Static checks of a task batch (trace time): ``ValueError`` naming
        the problem.

        Args:
          tasks: a task batch (dict of tensors with a task axis).
        """
        raise NotImplementedError

    def task_loss(self, loss):
        """The task loss function that ``compile`` stores as
        ``task_loss_fn``, from its ``loss`` argument.

        Args:
          loss: ``compile``'s ``loss``, a Keras loss or its name.
        """
        return keras.losses.get(loss)

    def log_trackers(self):
        """``{log name: tracker}`` that ``update_metrics`` fills from a
        meta-step's logs (besides ``extra_metrics()``): ``loss``."""
        return {"loss": self.loss_tracker}

    # ----------------------------------------------------------- Keras API
    def compile(self, optimizer="sgd", loss=None, metrics=None,
                jit_compile=False, **kwargs):
        """Keras ``compile``; ``loss`` is the task loss ``loss(y_true,
        y_pred)`` (``task_loss``); ``optimizer`` takes the meta-gradient (the
        outer step). Refuses a configuration that cannot run under the
        strategy in scope (``distribution_unsupported``) or with XLA
        (``xla_unsupported``).

        Args:
          optimizer: the outer optimizer (a Keras optimizer or its name).
            Default ``"sgd"``.
          loss: the task loss, a Keras loss or its name (required).
          metrics: Keras metrics on the query predictions (default
            ``None``).
          jit_compile: ``True`` for XLA, ``False`` without (default),
            ``"auto"`` to let Keras decide (refused configurations then run
            without XLA, with a warning).
          **kwargs: the other ``keras.Model.compile`` arguments.
        """
        if loss is None:
            raise ValueError(
                "compile() needs loss=: the task loss, e.g. 'mse' or "
                "keras.losses.SparseCategoricalCrossentropy(from_logits=True).")
        checks.outer_learning_rate(self, optimizer)
        xla_reason = self.xla_unsupported()
        if xla_reason and jit_compile is True:
            raise ValueError(f"{type(self).__name__} cannot be compiled with "
                             f"XLA (jit_compile=True): {xla_reason}")
        reason = self.distribution_unsupported()
        strategy = self._distribute_strategy or (
            tf.distribute.get_strategy() if tf.distribute.has_strategy()
            else None)
        if reason and strategy is not None:
            raise ValueError(
                f"{type(self).__name__} cannot run under "
                f"{type(strategy).__name__}: {reason} Build and compile it "
                "outside a tf.distribute strategy's scope.")
        self.task_loss_fn = self.task_loss(loss)
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics,
                        jit_compile=jit_compile, **kwargs)
        if xla_reason and self.jit_compile:  # "auto" chose XLA (a GPU)
            warnings.warn(f"jit_compile='auto': not using XLA, since "
                          f"{xla_reason}", stacklevel=2)
            self.jit_compile = False
        if (self.loss_scale() is not None and type(self).apply_meta_gradient
                is not MetaModel.apply_meta_gradient):
            raise ValueError(
                f"{type(self).__name__} applies its meta-gradient itself and "
                "does not support loss scaling (the mixed_float16 dtype "
                "policy); use mixed_bfloat16, which needs none.")
        if self.meta_variables and not self.optimizer.built:
            self.optimizer.build(self.meta_variables)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Keras ``compute_metrics``; ``y`` defaults to a task batch's
        flattened query targets."""
        if y is None and isinstance(x, dict) and "query_y" in x:
            y = flatten_tasks(x["query_y"])
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        """Keras ``compute_loss`` (used by Keras to build its loss state)."""
        if y is None and isinstance(x, dict) and "query_y" in x:
            y = flatten_tasks(x["query_y"])
        return super().compute_loss(x, y, y_pred, sample_weight, training)

    def xla_unsupported(self):
        """Why this configuration cannot be compiled with XLA, or ``None``."""
        return None

    def distribution_unsupported(self):
        """Why this configuration cannot run under a ``tf.distribute``
        strategy (``compile`` refuses it in a strategy's scope), or
        ``None``."""
        return None

    def graph_options(self):
        """Grappler options for this method's ``fit``/``evaluate`` graphs
        (``tf.config.optimizer`` names), set only while those run
        (``graph_options`` in this module); default none."""
        return {}

    def make_train_function(self, force=False):
        # (Keras builds it for one steps_per_execution, which fit may change)
        force = force or self.steps_per_execution != getattr(
            self.train_function, "steps_per_execution", None)
        if self.train_function is not None and not force:
            return self.train_function
        super().make_train_function(force)
        self.train_function = self._scoped(self.train_function)
        self.train_function.steps_per_execution = self.steps_per_execution
        return self.train_function

    def make_test_function(self, force=False):
        force = force or self.steps_per_execution != getattr(
            self.test_function, "steps_per_execution", None)
        if self.test_function is not None and not force:
            return self.test_function
        super().make_test_function(force)
        self.test_function = self._scoped(self.test_function)
        self.test_function.steps_per_execution = self.steps_per_execution
        return self.test_function

    def _scoped(self, function):
        options = self.graph_options()
        if not options:
            return function

        def run(*args, **kwargs):
            with graph_options(options):
                return function(*args, **kwargs)
        return run

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras (3.15) takes the shapes of the first distributed batch by
        # averaging it over the replicas, which fails when they hold
        # different numbers of tasks (3 tasks on 2 replicas); the first
        # replica's share has the same structure and per-task shapes.
        if iterator is not None and self._distribute_strategy is not None:
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: self._distribute_strategy
                    .experimental_local_results(v)[0], next(it))
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator, data_batch)

    def fit(self, *args, callbacks=None, **kwargs):
        """Keras ``fit``; stops and raises ``NonFiniteLossError`` on NaN/inf.

        A meta-step whose loss or meta-gradient is not finite is not applied,
        so the weights stay those of the last finite meta-step.

        Args:
          *args: ``keras.Model.fit``'s positional arguments (``x``: a dataset
            of task batches, ...).
          callbacks: Keras callbacks (default ``None``); a callback that
            stops on non-finite steps is added.
          **kwargs: ``keras.Model.fit``'s other arguments (``epochs``,
            ``steps_per_epoch``, ...).
        """
        guard = StopOnNonFinite()
        kwargs.setdefault("shuffle", False)  # task datasets draw their own order
        given = self.steps_per_execution
        if getattr(self, "auto_steps_per_execution", False):
            self.steps_per_execution = fast_path.steps_per_execution(
                self, args[0] if args else kwargs.get("x"),
                kwargs.get("steps_per_epoch"), kwargs.get("validation_data"),
                kwargs.get("validation_steps"), list(callbacks or []))
        try:
            history = super().fit(
                *args, callbacks=list(callbacks or []) + [guard], **kwargs)
        finally:  # evaluate/predict after fit run one step per execution
            self.steps_per_execution = given
        if guard.batch is not None:
            raise NonFiniteLossError(
                f"Meta-training stopped: the meta-loss became {guard.value} at "
                f"epoch {guard.epoch + 1}, step {guard.batch + 1}. That "
                "meta-step was not applied; the model keeps the weights of "
                "the last finite meta-step. Lower the learning rates, or "
                "check the task data for NaN/inf.",
                history=history, step=guard.batch)
        return history

    def extra_metrics(self):
        """Method-specific ``{log name: tracker}``, filled from ``logs``."""
        return {}

    def _replica_share(self, num_tasks):
        """``(context, share)``: this replica's fraction of the meta-batch's
        tasks (``num_tasks`` of the global count), or ``(None, 1)`` on one
        replica."""
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return None, 1.0
        num_tasks = tf.cast(num_tasks, tf.float32)
        return context, num_tasks / context.all_reduce("SUM", num_tasks)

    def apply_if_finite(self, grads, loss, num_tasks=None):
        """The outer step (``apply_meta_gradient``), skipped when the loss or
        a gradient is NaN/inf; logs the meta-gradient's norm (``grad_norm``).

        ``grads`` and ``loss`` are means over the meta-batch's ``num_tasks``
        tasks. Under ``tf.distribute`` they are this replica's means over
        its share, weighted by ``num_tasks`` over the global task count
        (``None``: equal shares), so uneven shares give one device's mean.

        Returns the loss to report: NaN for a skipped step, which makes
        ``fit`` stop and raise ``NonFiniteLossError``.

        Args:
          grads: the meta-gradient, aligned with ``meta_variables``.
          loss: the meta-batch's mean query loss.
          num_tasks: tasks behind the means (default ``None``: equal shares).
        """
        grads = list(grads)
        # Under tf.distribute the replicas' shares of the mean are summed
        # here, once per meta-step (with the count of non-finite losses), so
        # that every replica holds one device's meta-gradient: its norm, the
        # skip decision and the optimizer step (Keras's own all-reduce is
        # not repeated, ``reduced_gradients``) are one device's.
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context else 1
        finite = tf.math.is_finite(loss)
        if replicas > 1:
            share = (1.0 / replicas if num_tasks is None
                     else self._replica_share(num_tasks)[1])
            *grads, failed = context.all_reduce(
                "SUM", [g * tf.cast(share, g.dtype) for g in grads]
                + [1.0 - tf.cast(finite, tf.float32)])
            finite = failed < 0.5
        finite = tf.reduce_all(
            [finite] + [tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        if self.steps_per_execution > 1:
            # fit stops at a non-finite meta-step only when the execution
            # ends: no later meta-step of the epoch applies (StopOnNonFinite)
            finite &= tf.math.is_finite(self.loss_tracker.result())
        self.grad_norm_tracker.update_state(tf.linalg.global_norm(grads))
        if tf.distribute.has_strategy():
            # An optimizer update cannot sit in tf.cond under a strategy
            # (even of one replica, its update is a merge_call): feed
            # zeros instead. NaN never reaches the weights, but the skipped
            # step still counts as an optimizer iteration.
            with reduced_gradients(self.optimizer, replicas):
                self.apply_meta_gradient(
                    [tf.where(finite, g, tf.zeros_like(g)) for g in grads])
        else:
            def apply():
                self.apply_meta_gradient(grads)
                return tf.constant(True)

            def skip():
                if self.loss_scale() is not None:
                    # The loss scaler sees the non-finite gradient: it
                    # skips the update and halves its scale.
                    self.apply_meta_gradient(grads)
                return tf.constant(False)

            tf.cond(finite, apply, skip)
            if self.loss_scale() is not None:
                # A finite loss with a non-finite meta-gradient is an
                # overflow of the scaled backward pass, not a failure.
                finite = tf.math.is_finite(loss)
        return tf.where(finite, loss, tf.constant(float("nan"), loss.dtype))

    def apply_meta_gradient(self, grads):
        """Applies a finite meta-gradient: one outer-optimizer step on
        ``meta_variables`` (exactly one ``optimizer.apply`` per call, so
        Keras's ``iterations`` counts meta-steps). Under ``tf.distribute``
        ``grads`` is already the all-reduced mean, the same on every
        replica, and ``optimizer.apply`` does not reduce it again. Under
        loss scaling the (unscaled) gradients are scaled back for the
        ``LossScaleOptimizer``, which unscales them, checks them and updates
        its scale.

        Args:
          grads: a finite meta-gradient aligned with ``meta_variables``.
        """
        scale = self.loss_scale()
        if scale is not None:
            grads = [g * tf.cast(scale, g.dtype) for g in grads]
        self.optimizer.apply(grads, self.meta_variables)

    def loss_scale(self):
        """The current loss scale under ``mixed_float16`` (Keras wraps the
        outer optimizer in a ``keras.optimizers.LossScaleOptimizer``), else
        ``None``."""
        optimizer = getattr(self, "optimizer", None)
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            return tf.cast(optimizer.scale_loss(1.0), tf.float32)
        return None

    def scaled_gradient(self, tape, loss, sources):
        """``tape.gradient(loss, sources)`` (zeros where unconnected) with
        loss scaling: under ``mixed_float16`` the backward pass starts from
        the loss scale instead of 1, so small float16 cotangents do not
        underflow, and the gradients (float32, as the master weights) are
        unscaled before they are returned.

        Args:
          tape: the ``tf.GradientTape`` that recorded ``loss``.
          loss: a scalar loss.
          sources: the tensors or variables to differentiate with respect to.
        """
        scale = self.loss_scale()
        if scale is None:
            return tape.gradient(loss, sources, unconnected_gradients=(
                tf.UnconnectedGradients.ZERO))
        grads = tape.gradient(
            loss, sources, output_gradients=tf.cast(scale, loss.dtype),
            unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return [g / tf.cast(scale, g.dtype) for g in grads]

    def update_metrics(self, logs, targets, preds, extra=True):
        """Updates the trackers from ``logs`` and the compiled metrics from
        ``targets``/``preds`` (``[B, M, ...]``); returns the results.

        ``logs`` are means over the ``B`` tasks; under ``tf.distribute``,
        over this replica's share: they are then averaged over all tasks of
        all replicas (one all-reduce of the scalars), so that the logs equal
        one device's also when replicas hold different numbers of tasks.

        Args:
          logs: dict of scalar tensors (means over the tasks).
          targets: query targets ``[B, M, ...]``.
          preds: query predictions ``[B, M, ...]``.
          extra: trackers of ``extra_metrics()`` to update from ``logs``.
        """
        trackers = self.log_trackers()
        if extra:
            trackers.update(self.extra_metrics())
        values = {k: logs[k] for k in trackers}
        context, share = self._replica_share(tf.shape(targets)[0])
        if context is not None:
            values = context.all_reduce("SUM", {
                k: v * tf.cast(share, v.dtype) for k, v in values.items()})
        for key, tracker in trackers.items():
            tracker.update_state(values[key])
        results = self.compute_metrics(None, flatten_tasks(targets),
                                       flatten_tasks(preds))
        return {k: v for k, v in results.items()}

    def _require_compiled(self):
        if self.task_loss_fn is None:
            raise RuntimeError(
                f"{type(self).__name__} is not compiled: call "
                "compile(optimizer=..., loss=...) first.")

    def prepare_tasks(self, data):
        """The checked task-batch dict of a dataset element (inside
        ``train_step``/``test_step``).

        Args:
          data: a dataset element: a task-batch dict or a 4-tuple.
        """
        self._require_compiled()
        tasks = unpack_tasks(data)
        self.check_tasks(tasks)
        return tasks

    def train_step(self, data):
        """One meta-step (the template): check the task batch, run the
        method's ``meta_step``, update the metrics."""
        tasks = self.prepare_tasks(data)
        # Trace-time flag: adaptations traced in here are meta-training ones
        # (training minibatch size; a carried inner state is updated).
        self._in_meta_step = True
        try:
            step = self.meta_step(tasks)
        finally:
            self._in_meta_step = False
        targets = tasks["query_y"] if step.targets is None else step.targets
        return step_logs(
            self.update_metrics(step.logs, targets, step.predictions))


class MetaLearner(MetaModel):
    """Base class of the meta-learners that adapt a task learner in an inner
    loop: one ``train_step`` is one meta-step (``MetaModel``'s template).

    Args:
      learner: a built Keras model (the task learner).
      inner_optimizer: Keras optimizer used for task adaptation (SGD, Adam or
        RMSprop); applied functionally inside the compiled loop. Default
        ``None``: ``keras.optimizers.SGD(0.01)``.
      inner_steps: adaptation steps per task during meta-training (default 1).
      eval_steps: adaptation steps in ``evaluate``/``adapt`` (default
        ``inner_steps``).
      inner_batch_size: support minibatch size per step (default ``None``:
        the full split).
      eval_batch_size: support minibatch size per step in ``evaluate``,
        ``adapt`` and ``export`` (default ``None``: ``inner_batch_size``;
        Reptile's Table 3 tests with another size than it trains with).
      carry_inner_state: keep the inner optimizer's state (Adam's moments
        and step count) from one meta-training task to the next instead of
        starting a fresh optimizer per task, as Reptile's experiments do
        (section 5.1: "we never reset or interpolated Adam's rolling moment
        data"); ``adapt``/``evaluate``/``export`` start from the carried
        state and leave it unchanged (the paper's backup and restore at
        test time). The state is saved with the weights. The tasks of a
        meta-batch then run one after another (not with
        ``vectorize_tasks``, ``parallel_tasks > 1`` or a multi-replica
        strategy). Default ``False``.
      inner_sampling: how support minibatches are drawn when
        ``inner_batch_size``/``eval_batch_size`` is set:
        ``"independent"`` (default: each minibatch on its own) or
        ``"epochs"`` (consecutive minibatches pass through the support split
        in a shuffled order, reshuffled every pass, as Reptile's code does:
        every example is used before any is used twice).
      parallel_tasks: tasks of a meta-batch adapted concurrently (default 1).
      vectorize_tasks: run the tasks of a meta-batch as one batched
        computation (``tf.vectorized_map``: stacked weights, batched matmuls)
        if ``True``, one after another if ``False``; default ``None``:
        chosen by ``compile`` (``tfmeta.fast_path.vectorize_tasks``: on for
        a small dense learner under XLA, for the methods that support it).
        For small nets such as the sine MLP, best with
        ``compile(jit_compile=True)``: on 2 CPU cores, 10 or 25 sine tasks
        ran 5-6x faster than one task after another without XLA.
        Without XLA it pays from ~10 tasks on, since each batched matmul has
        a fixed cost of tens of microseconds on CPU (docs/performance.md).
        Conv nets gain nothing (Conv2D with per-task filters is not
        vectorized). Applies to every loop over tasks (``over_tasks``):
        ``fit``, ``evaluate`` and ``evaluate_tasks``.
      seed: seed of the minibatch draws (a Keras ``SeedGenerator``, saved with
        the model's weights). Default ``None``: a random seed.
      multi_head: the learner's last ``Dense`` layer is a per-task head:
        freshly initialized at every adaptation, not meta-learned
        (``tfmeta.heads``; Leap appendix G). Default ``False``.
      name: the Keras model's name (default: the class name in lower case).
      **kwargs: passed on to ``keras.Model``.

    Subclasses may set, in their constructor, ``task_mask`` (one bool per
    learner trainable variable, ``False`` = held fixed while a task adapts)
    and ``task_lr`` (the variable of a meta-learned step size that their
    ``inner_update`` reads); ``adaptation()`` reports them.
    """

    def __init__(self, learner, inner_optimizer=None, inner_steps=1,
                 eval_steps=None, inner_batch_size=None, parallel_tasks=1,
                 vectorize_tasks=None, seed=None, multi_head=False,
                 name=None, eval_batch_size=None, carry_inner_state=False,
                 inner_sampling="independent", **kwargs):
        if "checkpoint_every" in kwargs:
            raise ValueError(
                f"{type(self).__name__} does not differentiate through the "
                "inner loop, so checkpoint_every does not apply; it is an "
                "option of the second-order methods (MAML, MetaSGD, WarpGrad "
                "with initialization='maml').")
        super().__init__(name=name, **kwargs)
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
        self.eval_batch_size = positive_int(
            "eval_batch_size", eval_batch_size, allow_none=True)
        self.parallel_tasks = positive_int("parallel_tasks", parallel_tasks)
        # (None: chosen by compile, from the learner and the method)
        self.vectorize_tasks_given = (None if vectorize_tasks is None
                                      else bool(vectorize_tasks))
        self.vectorize_tasks = bool(vectorize_tasks)
        if not isinstance(carry_inner_state, bool):
            raise TypeError(f"carry_inner_state must be True or False, got "
                            f"{carry_inner_state!r}.")
        self.carry_inner_state = carry_inner_state
        self.inner_sampling = inner_loop.check_sampling(inner_sampling)
        if carry_inner_state and (self.vectorize_tasks
                                  or self.parallel_tasks > 1):
            raise ValueError(
                "carry_inner_state=True runs the tasks of a meta-batch one "
                "after another (each starts from the inner optimizer state "
                "the previous one left); it cannot be combined with "
                "vectorize_tasks=True or parallel_tasks > 1.")
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.multi_head = bool(multi_head)
        self.head_index = heads.head_indices(learner) if multi_head else ()
        self.support_loss_tracker = keras.metrics.Mean(name="support_loss")
        self.task_mask = None
        self.task_lr = None
        self._adapt_function = None
        self._evaluate_tasks_function = None
        self.inner_state = (self._carried_state_variables()
                            if carry_inner_state else None)
        self.built = True

    def _carried_state_variables(self):
        """``(slots, updates)``: non-trainable variables holding the inner
        optimizer's state for every learner trainable variable (a tuple of
        lists, ``InnerOptimizer.init``'s structure) and its update count."""
        params = [tf.convert_to_tensor(v)
                  for v in self.learner.trainable_variables]
        slots = tuple(
            [self.add_weight(shape=tuple(t.shape), dtype=t.dtype,
                             initializer=keras.initializers.Constant(
                                 keras.ops.convert_to_numpy(t)),
                             trainable=False, name=f"inner_state_{k}_{i}")
             for i, t in enumerate(slot)]
            for k, slot in enumerate(self.inner_update.init(params)))
        updates = self.add_weight(shape=(), dtype="int64",
                                  initializer="zeros", trainable=False,
                                  name="inner_updates")
        return slots, updates

    def distribution_unsupported(self):
        """Why this configuration cannot run under a ``tf.distribute``
        strategy, or ``None``: a carried inner state
        (``carry_inner_state``) cannot be shared by replicas."""
        if self.carry_inner_state:
            return ("carry_inner_state=True runs the tasks one after another "
                    "through one inner optimizer state, which replicas "
                    "cannot share.")
        return super().distribution_unsupported()

    # ----------------------------------------------------------- Keras API
    @property
    def meta_variables(self):
        """The variables meta-training updates (the learner's trainables,
        without the head under ``multi_head``)."""
        return heads.without(self.learner.trainable_variables, self.head_index)

    def call(self, inputs, training=False):
        """Predictions of the meta-learned initialization.

        Given a task batch (as Keras does when it builds metric state under a
        ``tf.distribute`` strategy), predicts on its flattened query split.
        """
        if isinstance(inputs, dict) and "query_x" in inputs:
            inputs = flatten_tasks(inputs["query_x"])
        return self.learner(inputs, training=training)

    def compile(self, optimizer="sgd", loss=None, metrics=None,
                jit_compile=None, **kwargs):
        """Keras ``compile``; ``loss`` is the task loss ``loss(y_true, y_pred)``.

        ``optimizer`` takes the meta-gradient (the outer step).
        ``jit_compile=None`` and no ``steps_per_execution`` choose the fast
        path from the learner (``tfmeta.fast_path``): XLA and several
        meta-steps per ``fit`` execution for small dense nets, neither for
        conv nets (on CPU XLA is 15-20x slower for them); a value given
        here is used as given.

        Args:
          optimizer: the outer optimizer (a Keras optimizer or its name); it
            takes the meta-gradient. Default ``"sgd"``.
          loss: the task loss, a Keras loss or its name (required).
          metrics: Keras metrics on the query predictions after adaptation
            (default ``None``).
          jit_compile: ``True`` for XLA, ``False`` without, ``"auto"`` to let
            Keras decide (refused configurations then run without XLA, with
            a warning); default ``None``: chosen from the learner.
          **kwargs: the other ``keras.Model.compile`` arguments
            (``steps_per_execution`` given here is used as given).
        """
        self.auto_steps_per_execution = "steps_per_execution" not in kwargs
        if self.vectorize_tasks_given is None:
            self.vectorize_tasks = fast_path.vectorize_tasks(self, jit_compile)
        if jit_compile is None:
            jit_compile = fast_path.jit_compile(self)
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics,
                        jit_compile=jit_compile, **kwargs)
        self._adapt_function = None
        self._evaluate_tasks_function = None

    def log_trackers(self):
        """``loss`` and ``support_loss``: every meta-step's logs hold both."""
        return {"loss": self.loss_tracker,
                "support_loss": self.support_loss_tracker}

    # ------------------------------------------------------- method hooks
    def task_meta_gradient(self, params, nontrainable, task, seed):
        """Meta-gradient of one task: ``(grads, logs, query_predictions)``.

        The simple hook (Reptile, FOMAML, MAML, Leap): ``grads`` aligned with
        ``meta_variables``; ``logs`` holds scalar tensors and must contain
        ``loss`` (query loss after adaptation) and ``support_loss``. The
        default ``meta_step`` averages it over the meta-batch.

        Args:
          params: list of tensors, the parameters to adapt from (learner
            ``trainable_variables`` order).
          nontrainable: list of tensors, the learner's non-trainable state.
          task: one task, a dict of the ``TASK_KEYS`` (no task axis).
          seed: the task's stateless ``[2]`` int64 seed (``task_seeds``).
        """
        raise NotImplementedError(
            f"{type(self).__name__} must override task_meta_gradient (or "
            "meta_step); see docs/add_a_method.md.")

    def meta_step(self, tasks):
        """The per-method part of ``train_step``: one meta-step on a checked
        task batch; returns a ``MetaStep``. Default: the mean of
        ``task_meta_gradient`` over the tasks, applied by
        ``apply_if_finite``.

        Args:
          tasks: a checked task batch (dict of ``[B, ...]`` tensors).
        """
        params, nontrainable = self.current_state()

        def one(task, seed):
            grads, logs, pred = self.task_meta_gradient(
                params, nontrainable, task, seed)
            return (list(grads), dict(logs)), pred

        (grads, logs), preds = self.over_tasks(one, tasks)
        grads = heads.without(grads, self.head_index)
        logs["loss"] = self.apply_if_finite(
            grads, logs["loss"], tf.shape(tasks["support_x"])[0])
        return MetaStep(logs, preds)

    def adaptation(self):
        """The ``tfmeta.inner_loop.Adaptation`` spec of this meta-learner:
        what ``adapt_task`` (so ``fit``, ``adapt``, ``evaluate``,
        ``evaluate_tasks``) and ``export`` run."""
        return inner_loop.Adaptation(
            steps=self.inner_steps, eval_steps=self.eval_steps,
            optimizer=self.inner_update,
            mask=None if self.task_mask is None else list(self.task_mask),
            batch_size=self.inner_batch_size, step_size=self.task_lr,
            eval_batch_size=(self.inner_batch_size
                             if self.eval_batch_size is None
                             else self.eval_batch_size),
            inner_state=self.inner_state, sampling=self.inner_sampling)

    def task_objective(self):
        """The inner loop's objective (``tfmeta.inner_loop``'s contract): the
        supervised task loss of the learner, training mode, ``batch = (x,
        y)``."""
        return inner_loop.supervised(self.learner, self.task_loss_fn)

    def support_data(self, task):
        """The data a task adapts on, as the objective takes it: ``(support_x,
        support_y)``. Any nested structure with a leading example axis works
        (minibatches gather the same rows of every leaf), or a callable ``i
        -> batch`` giving update ``i``'s batch itself (``inner_loop.optimize``;
        ``inner_batch_size`` is then not used).

        Args:
          task: one task, a dict of the ``TASK_KEYS`` (no task axis).
        """
        return task["support_x"], task["support_y"]

    # --------------------------------------------------- building blocks
    def current_state(self):
        """``(params, nontrainable)``: the learner's variables as tensors,
        in ``trainable_variables`` / ``non_trainable_variables`` order."""
        params = [tf.convert_to_tensor(v) for v in self.learner.trainable_variables]
        nontrainable = [tf.convert_to_tensor(v)
                        for v in self.learner.non_trainable_variables]
        return params, nontrainable

    def task_seeds(self, num_tasks):
        """``[num_tasks, 2]`` int64 seeds for the tasks of one meta-step
        (advances the meta-learner's seed generator).

        Under ``tf.distribute`` with several replicas, ``num_tasks`` is this
        replica's share of the meta-batch and each task gets the seed of its
        global index (replica shares in replica order, as ``tf.distribute``
        splits a batch), so the draws equal one device's.

        Args:
          num_tasks: tasks in (this replica's share of) the meta-batch.
        """
        seed = tf.cast(self.seed_generator.next(), tf.int64)
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context else 1
        offset, total = 0, num_tasks
        if replicas > 1:
            counts = context.all_reduce("SUM", tf.one_hot(
                context.replica_id_in_sync_group, replicas,
                dtype=tf.int32) * tf.cast(num_tasks, tf.int32))
            offset = tf.reduce_sum(
                counts[:context.replica_id_in_sync_group])
            total = tf.reduce_sum(counts)
        # Philox by name: what TensorFlow's kernels pick anyway, while XLA's
        # automatic choice may differ (the same seed, other draws).
        seeds = tf.random.experimental.stateless_split(seed, total,
                                                       alg="philox")
        return seeds if replicas == 1 else seeds[offset:offset + num_tasks]

    def adapt_task(self, params, nontrainable, task, seed, steps=None,
                   hook=None, hook_state=(), checkpoint_every=None,
                   unroll=False):
        """Adapts one task from ``params`` with the compiled inner loop
        (``adaptation()``: optimizer, mask, minibatch size) on
        ``support_data(task)``; ``steps`` defaults to ``inner_steps``.
        Returns ``tfmeta.inner_loop.AdaptResult``; ``hook`` and
        ``checkpoint_every`` (a second-order method's checkpointed
        gradient) as in ``tfmeta.inner_loop.optimize``.

        Args:
          params: list of tensors, the parameters to adapt from (learner
            ``trainable_variables`` order).
          nontrainable: list of tensors, the learner's non-trainable state.
          task: one task, a dict of the ``TASK_KEYS`` (no task axis).
          seed: the task's stateless ``[2]`` int64 seed (``task_seeds``).
          steps: updates (default ``None``: ``inner_steps``).
          hook: the inner loop's hook (default ``None``).
          hook_state: the hook's initial state (default ``()``).
          checkpoint_every: ``None`` (default), a positive int or ``"sqrt"``:
            checkpoint the loop's gradient (``inner_loop.optimize``).
          unroll: the updates as straight-line code instead of a loop
            (``inner_loop.optimize``; default ``False``).
        """
        spec = self.adaptation()
        params = self.task_start(params, seed)
        training = self._in_meta_step
        steps = spec.steps if steps is None else steps
        opt_state, offset = None, 0
        if spec.inner_state is not None:
            opt_state, offset = inner_loop.carried_inner_state(spec)
        result = inner_loop.optimize(
            self.task_objective(), spec.optimizer, params, nontrainable,
            self.support_data(task), steps,
            batch_size=spec.batch_size if training else spec.eval_batch_size,
            seed=seed, hook=hook, hook_state=hook_state, mask=spec.mask,
            checkpoint_every=checkpoint_every,
            variables=() if spec.step_size is None
            else tf.nest.flatten(spec.step_size),
            opt_state=opt_state, step_offset=offset, sampling=spec.sampling,
            unroll=unroll)
        if spec.inner_state is None or not training:
            return result
        # Meta-training: the next task starts from this task's final state.
        slots, updates = spec.inner_state
        mask = spec.mask or [True] * len(params)
        assigns = [updates.assign_add(tf.cast(steps, tf.int64))]
        for variables, values in zip(slots, result.opt_state):
            chosen = iter(values)
            assigns += [v.assign(next(chosen)) for v, m in zip(variables, mask)
                        if m]
        with tf.control_dependencies(assigns):
            return result._replace(
                params=[tf.identity(p) for p in result.params],
                loss_after=tf.identity(result.loss_after))

    def task_start(self, params, seed):
        """The parameters a task adapts from: ``params``, with a fresh head
        drawn from ``seed`` under ``multi_head`` (``tfmeta.heads``).

        Args:
          params: list of tensors in learner ``trainable_variables`` order.
          seed: the task's stateless ``[2]`` int64 seed.
        """
        if not self.head_index:
            return params
        return heads.fresh_head(params, self.head_index, seed)

    def query_loss(self, params, nontrainable, task):
        """``(loss, predictions)`` of ``params`` on the task's query split
        (inference mode).

        Args:
          params: list of parameter tensors (e.g. the adapted ones).
          nontrainable: list of non-trainable state tensors.
          task: one task, a dict of the ``TASK_KEYS`` (no task axis).
        """
        loss, pred, _ = inner_loop.task_loss(
            self.learner, self.task_loss_fn, params, nontrainable,
            task["query_x"], task["query_y"], training=False)
        return loss, pred

    def over_tasks(self, fn, tasks):
        """The one loop over the tasks of a batch.

        ``fn(task, seed) -> (mean_part, stacked_part)``, two nested
        structures of tensors. Returns the mean of ``mean_part`` over the
        tasks (gradients, logs) and ``stacked_part`` stacked along a new
        leading task axis (predictions, per-task values). With
        ``vectorize_tasks`` the tasks run as one ``tf.vectorized_map``;
        otherwise in a ``tf.while_loop`` (``parallel_tasks`` at a time) with
        no per-task Python state, so a meta-batch can be split over
        ``tf.distribute`` replicas.

        Args:
          fn: ``fn(task, seed) -> (mean_part, stacked_part)``.
          tasks: a checked task batch.
        """
        num_tasks = tf.shape(tasks["support_x"])[0]
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.control_dependencies([tf.debugging.assert_positive(
                num_tasks, message=(
                    "a task batch holds no tasks" + (
                        f" on a replica: the meta-batch must hold at least "
                        f"one task per replica ({replicas})"
                        if replicas > 1 else "")))]):
            tasks = tf.nest.map_structure(tf.identity, tasks)
        seeds = self.task_seeds(num_tasks)
        if self.vectorize_tasks:
            means, stacked = tf.vectorized_map(
                lambda args: fn(*args), (tasks, seeds))
            return tf.nest.map_structure(
                lambda t: tf.reduce_mean(t, axis=0), means), stacked
        task_at = lambda i: {k: v[i] for k, v in tasks.items()}  # noqa: E731
        # The first task runs outside the loop to fix the structure and the
        # dtypes of the accumulators.
        means0, stacked0 = fn(task_at(0), seeds[0])
        if tasks["support_x"].shape[0] == 1:
            # One task (serial Reptile, Algorithm 1): no task loop, whose
            # control flow adds to every meta-step's fixed cost.
            return means0, tf.nest.map_structure(lambda t: t[None], stacked0)
        arrays = tf.nest.map_structure(
            lambda t: tf.TensorArray(t.dtype, size=num_tasks,
                                     element_shape=t.shape).write(0, t),
            stacked0)

        def body(i, sums, arrays):
            means, stacked = fn(task_at(i), seeds[i])
            sums = tf.nest.map_structure(tf.add, sums, means)
            arrays = tf.nest.map_structure(lambda a, t: a.write(i, t),
                                           arrays, stacked)
            return i + 1, sums, arrays

        _, sums, arrays = tf.while_loop(
            lambda i, *_: i < num_tasks, body,
            (tf.constant(1), means0, arrays),
            parallel_iterations=self.parallel_tasks)
        mean = lambda t: t / tf.cast(num_tasks, t.dtype)  # noqa: E731
        return (tf.nest.map_structure(mean, sums),
                tf.nest.map_structure(lambda a: a.stack(), arrays))

    # --------------------------------------------------- shared machinery
    def check_tasks(self, tasks):
        """Static checks of a task batch against the learner (trace time):
        the four splits' axes, and support and query examples against the
        learner's inputs and outputs. Override for tasks that are not
        supervised ``(x, y)`` pairs of the learner's shapes.

        Args:
          tasks: a task batch (dict of tensors with a task axis).
        """
        shapes = {k: tuple(tf.TensorShape(tasks[k].shape).as_list())
                  for k in TASK_KEYS}
        for k, s in shapes.items():
            if len(s) < 2:
                raise ValueError(
                    f"{k} has shape {shape_str(s)}; a task batch needs a "
                    "leading meta-batch axis and an example axis [B, N, ...].")
        metas = {s[0] for s in shapes.values() if s[0] is not None}
        if len(metas) > 1:
            raise ValueError(
                "support and query splits disagree on the number of tasks: "
                + ", ".join(f"{k} {shape_str(s)}" for k, s in shapes.items()))
        for split in ("support", "query"):
            xs, ys = shapes[f"{split}_x"], shapes[f"{split}_y"]
            if xs[1] == 0:
                raise ValueError(f"the {split} split is empty ({split}_x has "
                                 f"shape {shape_str(xs)}).")
            if not compatible_shapes(xs[1:2], ys[1:2]):
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
            if not compatible_shapes(x_shape, expected):
                raise ValueError(
                    f"{split}_x has per-example shape {shape_str(x_shape)} but "
                    f"the learner expects inputs of shape {shape_str(expected)}.")
        try:
            out = self.learner.compute_output_spec(
                keras.KerasTensor((None,) + tuple(x_shape)))
            out_shape = tuple(out.shape[1:])
        except Exception as err:  # noqa: BLE001 - reported with context
            raise ValueError(
                f"the learner cannot take {split}_x examples of shape "
                f"{shape_str(x_shape)}: {err}") from err
        if not (compatible_shapes(y_shape, out_shape)
                or compatible_shapes(y_shape, out_shape[:-1])):
            raise ValueError(
                f"{split}_y has per-example shape {shape_str(y_shape)} but the "
                f"learner outputs {shape_str(out_shape)} per example; targets "
                "must match the outputs (or drop their last axis, as sparse "
                "labels do).")

    def task_batch(self, tasks):
        """A task batch given outside ``fit`` (arrays or tensors) as a
        checked dict of tensors with the four ``TASK_KEYS``.

        Args:
          tasks: a dict of the ``TASK_KEYS`` (or a 4-tuple) of arrays or
            tensors.
        """
        self._require_compiled()
        tasks = {k: tf.convert_to_tensor(v)
                 for k, v in unpack_tasks(tasks).items() if k in TASK_KEYS}
        self.check_tasks(tasks)
        return tasks

    def evaluate_task(self, params, nontrainable, task, seed, steps=None):
        """Adapts one task for ``steps`` (default ``eval_steps``): ``(logs,
        query predictions)``, logs with the query ``loss`` after adaptation
        and the ``support_loss``.

        Args:
          params: list of tensors, the parameters to adapt from (learner
            ``trainable_variables`` order).
          nontrainable: list of tensors, the learner's non-trainable state.
          task: one task, a dict of the ``TASK_KEYS`` (no task axis).
          seed: the task's stateless ``[2]`` int64 seed (``task_seeds``).
          steps: updates (default ``None``: ``eval_steps``).
        """
        steps = self.eval_steps if steps is None else steps
        result = self.adapt_task(params, nontrainable, task, seed, steps=steps)
        loss, pred = self.query_loss(result.params, result.nontrainable, task)
        return {"loss": loss, "support_loss": result.loss_after}, pred

    def test_step(self, data):
        """Adapt each task for ``eval_steps``; metrics on the query split."""
        tasks = self.prepare_tasks(data)
        params, nontrainable = self.current_state()
        logs, preds = self.over_tasks(
            lambda task, seed: self.evaluate_task(
                params, nontrainable, task, seed), tasks)
        results = self.update_metrics(logs, tasks["query_y"], preds,
                                      extra=False)
        return step_logs({k: v for k, v in results.items()
                          if k not in self.extra_metrics()
                          and k != "grad_norm"})

    # ------------------------------------------------- per-task evaluation
    def evaluate_tasks(self, tasks, steps=None):
        """Per-task query losses of one task batch, before and after
        adapting for ``steps`` (default ``eval_steps``) on the support split.

        Returns ``{"loss_before": [B], "loss_after": [B]}`` as NumPy arrays,
        for spreads over tasks (``evaluate`` reports means only).

        Args:
          tasks: one task batch (dict of ``[B, ...]`` arrays, e.g.
            ``sine.tasks(100)``).
          steps: adaptation steps (default ``None``: ``eval_steps``).
        """
        self._require_compiled()
        steps = positive_int("steps", steps if steps is not None
                              else self.eval_steps)
        tasks = self.task_batch(tasks)
        checks.retrace_on_new_ranks(self, "_evaluate_tasks_function", tasks)
        if self._evaluate_tasks_function is None:
            self._evaluate_tasks_function = tf.function(
                self._evaluate_tasks_graph, jit_compile=bool(self.jit_compile),
                reduce_retracing=True)
        before, after = self._evaluate_tasks_function(tasks, tf.constant(steps))
        return checks.finite_task_losses(
            {"loss_before": before.numpy(), "loss_after": after.numpy()})

    def _evaluate_tasks_graph(self, tasks, steps):
        params, nontrainable = self.current_state()

        def one(task, seed):
            before, _ = self.query_loss(params, nontrainable, task)
            logs, _ = self.evaluate_task(params, nontrainable, task, seed,
                                         steps=steps)
            return (), (tf.cast(before, tf.float32),
                        tf.cast(logs["loss"], tf.float32))

        return self.over_tasks(one, tasks)[1]

    # ------------------------------------------------------------ adapt()
    def adapt(self, support_x, support_y, steps=None):
        """Adapt a copy of the learner to one task; returns a Keras model.

        The meta-learner is unchanged. ``steps`` defaults to ``eval_steps``.

        Args:
          support_x: the task's support inputs ``[N, ...]``.
          support_y: its targets ``[N, ...]``.
          steps: adaptation steps (default ``None``: ``eval_steps``).
        """
        self._require_compiled()
        steps = positive_int("steps", steps if steps is not None
                              else self.eval_steps)
        x = tf.convert_to_tensor(support_x)
        y = tf.convert_to_tensor(support_y)
        if x.shape.rank is None or x.shape.rank < 1 or x.shape[0] == 0:
            raise ValueError(f"support_x must hold at least one example; got "
                             f"shape {shape_str(x.shape.as_list())}.")
        if y.shape.rank < 1 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"support_x has {x.shape[0]} examples but support_y has shape "
                f"{shape_str(y.shape.as_list())}.")
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
        params, nontrainable = self.current_state()
        result = self.adapt_task(params, nontrainable,
                                 {"support_x": x, "support_y": y}, seed,
                                 steps=steps)
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

    # ----------------------------------------------------- saved weights
    def save_own_variables(self, store):
        """Keras's own variables, then the state of the minibatch seed
        generator (Keras saves no seed generator's state), so that a run
        restored from its weights (``BackupAndRestore``, the CLI's
        checkpoints) draws the minibatches an uninterrupted run draws.

        Args:
          store: Keras's dict-like variable store of this layer.
        """
        super().save_own_variables(store)
        store[str(self._own_count())] = self.seed_generator.state

    def load_own_variables(self, store):
        """Inverse of ``save_own_variables``; weights saved before the seed
        generator's state was saved load as before (the state unchanged).

        Args:
          store: Keras's dict-like variable store of this layer.
        """
        count = self._own_count()
        if len(store.keys()) == count + 1:
            self.seed_generator.state.assign(store[str(count)])
            store = {str(i): store[str(i)] for i in range(count)}
        super().load_own_variables(store)

    def _own_count(self):
        return len(self._trainable_variables + self._non_trainable_variables)

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
            "eval_batch_size": self.eval_batch_size,
            "carry_inner_state": self.carry_inner_state,
            "inner_sampling": self.inner_sampling,
            "parallel_tasks": self.parallel_tasks,
            "vectorize_tasks": self.vectorize_tasks_given,
            "seed": self.seed_generator.get_config().get("seed"),
            "multi_head": self.multi_head,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("learner", "inner_optimizer"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)

    def export(self, path=None, overwrite=False, target_spec=None):
        """Write a SavedModel (see ``tfmeta.export.export``); returns its path.

        Args:
          path: export directory (default ``None``:
            ``saved_models/<name>``).
          overwrite: replace a previous tfmeta export there (default
            ``False``).
          target_spec: ``tf.TensorSpec`` of a batch of support targets (default
            ``None``: from the learner and the loss).
        """
        return export_lib.export(self, path, overwrite=overwrite,
                                 target_spec=target_spec)

"""The base of the RL meta-learners (``RLLeap``, ``RLWarpGrad``): a
``keras.Model`` whose ``train_step`` is one meta-step driven by Python
environments, not by a data set.

Such a meta-step steps gymnasium environments (and may build agents) in
Python, between compiled A2C updates, so no traced train step can host it:
``compile`` sets ``run_eagerly=True`` and refuses ``run_eagerly=False``,
``jit_compile`` and a ``tf.distribute`` strategy (the environments of one
process, task after task, are outside any replica function). ``fit``
without data runs ``steps_per_epoch`` meta-steps per epoch. The metrics
``fit`` logs are epoch means of the meta-step logs named at construction.

Across workers, a meta-learner shares its meta-batch out itself rather than
running in a strategy's scope: ``worker_strategy`` checks its
``MultiWorkerMirroredStrategy`` (one replica per worker) and
``all_reduce_sum`` sums tensors over the workers (``RLLeap(strategy=...)``).
"""

import functools

import keras
import numpy as np
import tensorflow as tf


class RLMetaModel(keras.Model):
    """An eager, environment-driven meta-learner (a ``keras.Model``).

    Subclasses implement ``meta_variables`` (what the outer optimizer
    updates) and ``meta_step()`` (one meta-step with ``self.optimizer``,
    the outer optimizer given to ``compile``; it returns its logs, a
    mapping or a list of them, one per task); ``train_step`` runs it and
    keeps its logs in ``last_logs`` (for callbacks).

    Args:
      log_names: the names of the logs ``fit`` reports as epoch means
        (``keras.metrics.Mean`` each, in ``trackers``).
      optional_logs: those of ``log_names`` that a meta-step may leave
        undefined (a NaN is then not averaged in; e.g. the mean return
        before any episode finished). Default none.
      **kwargs: passed on to ``keras.Model`` (e.g. ``name``).
    """

    def __init__(self, log_names, *, optional_logs=(), **kwargs):
        super().__init__(**kwargs)
        self.trackers = {name: keras.metrics.Mean(name=name)
                         for name in log_names}
        self.optional_logs = frozenset(optional_logs)
        self.last_logs = []     # the last meta-step's logs (callbacks)

    def compile(self, optimizer, **kwargs):
        """``optimizer``: the Keras optimizer of the outer step. The
        meta-step runs eagerly (see the module docstring).

        Args:
          optimizer: the outer optimizer (a Keras optimizer).
          **kwargs: the other ``keras.Model.compile`` arguments.
        """
        name = type(self).__name__
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise TypeError(
                f"{name}.compile needs a Keras optimizer, got "
                f"{type(optimizer).__name__}.")
        if kwargs.get("run_eagerly") is False or kwargs.get("jit_compile"):
            raise ValueError(
                f"{name}'s meta-step steps Python environments: it runs "
                "eagerly (run_eagerly=False and jit_compile are refused).")
        if self._distribute_strategy is not None or \
                tf.distribute.has_strategy():
            strategy = (self._distribute_strategy
                        or tf.distribute.get_strategy())
            raise ValueError(
                f"{name} cannot run under {type(strategy).__name__}: its "
                "meta-step steps Python environments eagerly, task after "
                "task, outside any replica function. Build and compile it "
                "outside a tf.distribute strategy's scope.")
        kwargs.update(run_eagerly=True, jit_compile=False)
        super().compile(optimizer=optimizer, **kwargs)

    @property
    def metrics(self):
        return list(self.trackers.values())

    #: Whether ``get_run_state`` holds more than the Keras weights do (a
    #: checkpoint then saves it beside them; ``tfmeta train``).
    has_run_state = False

    def get_run_state(self):
        """What continuing the run exactly needs beyond the Keras weights
        (``save_weights``: the model's variables and the outer optimizer),
        as a picklable object; ``None`` here (a subclass with
        ``has_run_state`` returns it)."""
        return None

    def set_run_state(self, state):
        """Continues the run whose ``get_run_state`` gave ``state`` (after
        ``load_weights`` of the same checkpoint).

        Args:
          state: what ``get_run_state`` returned.
        """
        raise ValueError(f"{type(self).__name__} keeps no run state beyond "
                         "its weights.")

    @property
    def meta_variables(self):
        """The variables the outer optimizer updates (the subclass's)."""
        raise NotImplementedError

    def load_weights(self, filepath, *args, **kwargs):
        """``keras.Model.load_weights``, the outer optimizer's state
        included: a compiled model's optimizer is first built on
        ``meta_variables`` (Keras would otherwise skip the state of an
        optimizer that has not stepped yet).

        Args:
          filepath: a ``.weights.h5`` file that ``save_weights`` wrote.
          *args: ``keras.Model.load_weights``'s other arguments.
          **kwargs: ``keras.Model.load_weights``'s other arguments.
        """
        optimizer = getattr(self, "optimizer", None)
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.meta_variables)
        return super().load_weights(filepath, *args, **kwargs)

    def meta_step(self):
        """One meta-step; returns its logs (a mapping with a number for
        each of ``log_names``, or a list of them). The subclass's."""
        raise NotImplementedError

    def train_step(self, data):
        """One meta-step (``data`` is ignored: the environments are the
        data); its logs stay in ``last_logs``.

        Args:
          data: ignored.
        """
        self.last_logs = self.meta_step()
        logs = self.last_logs
        for log in logs if isinstance(logs, (list, tuple)) else [logs]:
            self.track(log)
        return {name: t.result() for name, t in self.trackers.items()}

    def require_compiled(self):
        """Raises ``RuntimeError`` unless ``compile`` gave the outer
        optimizer (called first by ``meta_step``)."""
        if getattr(self, "optimizer", None) is None:
            raise RuntimeError(
                f"{type(self).__name__} needs compile(optimizer) before "
                "meta_step or fit.")

    def track(self, logs):
        """Adds one meta-step's (or task's) ``logs`` to the epoch means.

        Args:
          logs: a mapping with a number for each of ``log_names``.
        """
        for name, tracker in self.trackers.items():
            value = logs[name]
            if name in self.optional_logs and not np.isfinite(value):
                continue
            tracker.update_state(value)

    def fit(self, x=None, **kwargs):
        """``keras.Model.fit``; without ``x``, ``steps_per_epoch``
        meta-steps per epoch (required).

        Args:
          x: ``None`` (the environments are the data); default ``None``.
          **kwargs: ``keras.Model.fit``'s other arguments (``epochs``,
            ``steps_per_epoch``, required without ``x``, ``callbacks``).
        """
        if x is None:
            if not kwargs.get("steps_per_epoch"):
                raise ValueError(
                    f"{type(self).__name__}.fit without data needs "
                    "steps_per_epoch (the meta-steps per epoch).")
            x = tf.data.Dataset.from_tensors(0).repeat()
            kwargs.setdefault("shuffle", False)
        return super().fit(x, **kwargs)


def worker_strategy(strategy):
    """``(strategy, worker index, workers)`` of an RL meta-learner's
    ``strategy`` argument: ``(None, 0, 1)`` for ``None``; a
    ``MultiWorkerMirroredStrategy`` must have one replica per worker.

    Args:
      strategy: ``None`` or a ``tf.distribute.MultiWorkerMirroredStrategy``.
    """
    if strategy is None:
        return None, 0, 1
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        raise ValueError(
            f"strategy must be None or a MultiWorkerMirroredStrategy (one "
            f"worker process per share of the meta-batch), got "
            f"{type(strategy).__name__}.")
    resolver = strategy.cluster_resolver
    spec = resolver.cluster_spec()
    workers = sum(spec.num_tasks(job) for job in ("chief", "worker")
                  if job in spec.jobs) or 1
    if strategy.num_replicas_in_sync != workers:
        raise ValueError(
            f"the strategy has {strategy.num_replicas_in_sync} replicas on "
            f"{workers} workers: RL meta-learners need one replica (device) "
            "per worker; give each worker one device.")
    index = resolver.task_id or 0
    if resolver.task_type == "worker" and "chief" in spec.jobs:
        index += 1
    return strategy, int(index), workers


@functools.lru_cache(maxsize=None)
def _reducer(strategy):
    def reduce(*xs):
        context = tf.distribute.get_replica_context()
        # identity: placed on the replica's device, which the all-reduce
        # reads its destination from
        return context.all_reduce(tf.distribute.ReduceOp.SUM,
                                  [tf.identity(x) for x in xs])
    return tf.function(lambda xs: strategy.run(reduce, args=tuple(xs)))


def all_reduce_sum(strategy, tensors):
    """Each of ``tensors`` summed over the workers of ``strategy`` (a
    ``MultiWorkerMirroredStrategy`` with one replica per worker; a
    collective all-reduce, so every worker must call it alike); the
    tensors themselves for ``strategy=None``.

    Args:
      strategy: ``None`` or the strategy (``worker_strategy``).
      tensors: a list of tensors, the same shapes on every worker.
    """
    if strategy is None:
        return list(tensors)
    out = _reducer(strategy)([tf.convert_to_tensor(x) for x in tensors])
    return [strategy.experimental_local_results(x)[0] for x in out]

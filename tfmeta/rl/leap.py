"""Leap across RL tasks (Leap section 4.3, appendix F): meta-learns the
initialization of an A2C agent's shared encoder.

An RL task (a game, a maze goal) is a callable ``task(seed) -> A2C`` that
builds a fresh agent: its own environments, optimizer and, since the action
count differs per game, fresh policy and value heads. ``RLLeap.meta_step``
samples a meta-batch of tasks, copies the shared initialization into each
agent's encoder (``A2C.encoder_mask``), trains it for ``updates`` A2C updates
and accumulates eq. 8's pull-forward term of every update on the fly (the
A2C ``train_step`` hook), with ``f`` the A2C loss of that update's rollout
before and after it. The increment is ``tfmeta.leap.flat_increment``, the
one supervised Leap uses, applied to the encoder's parameters only: the
task manifold is the encoder's parameters with the loss. The meta-gradient
is averaged over the meta-batch and applied by the Keras optimizer given
to ``compile``.

``RLLeap`` is a ``tfmeta.rl.RLMetaModel`` (a ``keras.Model``) whose
``train_step`` is one meta-step, so ``fit`` with Keras callbacks
(checkpoints of the encoder, TensorBoard, early stopping) drives
meta-training. The A2C updates inside a meta-step are compiled; the
meta-step itself runs eagerly (``compile`` sets ``run_eagerly=True``): it
steps Python environments and builds a new agent per task, which no traced
train step can host.
"""

import functools

import keras
import numpy as np
import tensorflow as tf

from tfmeta import checks
from tfmeta.leap import check_metric, flat_increment, flat_state, unflatten
from tfmeta.rl.meta_model import RLMetaModel, all_reduce_sum, worker_strategy


class RLLeap(RLMetaModel):
    """Leap on the encoder of A2C agents (an ``RLMetaModel``, so a
    ``keras.Model``).

        leap = RLLeap(encoder, tasks, updates=100, meta_batch_size=2)
        leap.compile(keras.optimizers.SGD(0.1))   # the outer step
        leap.fit(epochs=2, steps_per_epoch=50)    # 100 meta-steps

    ``fit`` logs the mean over the epoch's tasks of the A2C loss of their
    last update (``loss``), the path energy or length (``path_length``) and
    the mean return of their finished episodes (``mean_return``, tasks
    without one left out).

    Args:
      encoder: the Keras model whose trainable variables are the shared
        initialization (the meta-parameters); each task's agent has an
        encoder (``A2C.encoder_mask``) with variables of the same shapes.
      tasks: a list of callables ``task(seed) -> A2C`` (the pretraining
        pool); each builds a fresh agent for one game.
      updates: A2C updates per task per meta-step (5 M steps / (32 x 5) in
        the paper).
      meta_batch_size: tasks per meta-step, drawn without replacement (16 of
        27 games in the paper); defaults to all tasks.
      metric: ``"energy"`` (p=2, the paper's choice for Atari) or
        ``"length"``.
      loss_in_manifold: include the A2C loss in the task manifold (Leap's
        ``df_i`` terms; default ``True``), as in ``tfmeta.Leap``.
      stabilizer: use ``-|df_i|`` for ``df_i`` (default ``True``), as in
        ``tfmeta.Leap``.
      seed: draws the meta-batches and each agent's seed, keyed by the
        meta-step (the optimizer's ``iterations``, saved with it). Default 0.
      strategy: ``None`` (one process, default) or a
        ``tf.distribute.MultiWorkerMirroredStrategy`` with one replica per
        worker: every worker draws the same meta-batch and trains its share
        of it (worker ``w`` of ``W``: tasks ``w, w + W, ...``), the summed
        meta-gradients are all-reduced, and every worker applies the same
        averaged step to its copy of the encoder, which is broadcast from
        worker 0 before each meta-step. Build the meta-learner outside the
        strategy's scope (the encoder's variables are each worker's own).
      **kwargs: passed on to ``keras.Model`` (e.g. ``name``).
    """

    def __init__(self, encoder, tasks, *, updates, meta_batch_size=None,
                 metric="energy", loss_in_manifold=True, stabilizer=True,
                 seed=0, strategy=None, **kwargs):
        super().__init__(("loss", "path_length", "mean_return"),
                         optional_logs=("mean_return",), **kwargs)
        if not isinstance(encoder, keras.Model) or not encoder.built:
            raise ValueError("encoder must be a built Keras model.")
        tasks = list(tasks)
        if not tasks or not all(callable(t) for t in tasks):
            raise ValueError(
                "tasks must be a non-empty list of callables task(seed) -> "
                "A2C.")
        self.encoder, self.tasks = encoder, tasks
        self.updates = checks.positive_int("updates", updates)
        self.meta_batch_size = len(tasks) if meta_batch_size is None else \
            checks.positive_int("meta_batch_size", meta_batch_size)
        if self.meta_batch_size > len(tasks):
            raise ValueError(
                f"meta_batch_size {self.meta_batch_size} exceeds the "
                f"{len(tasks)} tasks.")
        self.options = {"metric": check_metric(metric),
                        "loss_in_manifold": bool(loss_in_manifold),
                        "stabilizer": bool(stabilizer)}
        self.seed = int(seed)
        self.strategy, self.worker, self.workers = worker_strategy(strategy)
        # One hook object: each agent's compiled update traces it once.
        self._hooks = {}
        self.built = True

    def call(self, observations):
        """The shared encoder's features.

        Args:
          observations: a batch of observations for the encoder.
        """
        return self.encoder(observations)

    @property
    def meta_variables(self):
        """The shared initialization: the encoder's trainable variables."""
        return list(self.encoder.trainable_variables)

    def _hook(self, mask):
        key = tuple(mask)
        if key not in self._hooks:
            increment = functools.partial(flat_increment, **self.options)
            pick = lambda xs: [x for x, m in zip(xs, mask) if m]  # noqa: E731

            def hook(state, step, theta, theta_next, loss, loss_next, grads):
                return increment(state, pick(theta), pick(theta_next), loss,
                                 loss_next, pick(grads))
            self._hooks[key] = hook
        return self._hooks[key]

    def initialize(self, a2c):
        """Copies the shared initialization into ``a2c``'s encoder; returns
        the encoder's mask over ``a2c.params``.

        Args:
          a2c: a task's ``A2C`` agent.
        """
        mask = list(a2c.encoder_mask)
        targets = [v for v, m in zip(a2c.params, mask) if m]
        have = [tuple(v.shape) for v in targets]
        want = [tuple(v.shape) for v in self.meta_variables]
        if have != want:
            raise ValueError(
                f"the task's agent encoder variables {have} do not match "
                f"the shared encoder's {want}; build the agent with an encoder named 'encoder' of the "
                "same architecture.")
        for target, source in zip(targets, self.meta_variables):
            target.assign(source)
        return mask

    def task_meta_gradient(self, a2c):
        """Trains ``a2c`` from the shared initialization for ``updates``
        updates; returns ``(meta_gradient, logs)``, the meta-gradient as a
        list shaped like the encoder's variables (eq. 8 summed over the
        updates, constant factor p dropped as in ``Leap``).

        Args:
          a2c: a task's ``A2C`` agent (``tasks[i](seed)``).
        """
        mask = self.initialize(a2c)
        state = flat_state([tf.convert_to_tensor(v) for v in self.meta_variables])
        logs, ((flat,), length) = a2c.train(
            self.updates, hook=self._hook(mask), hook_state=state)
        grads = unflatten(flat, self.meta_variables)
        return grads, dict(logs, path_length=float(length.numpy()),
                           mean_return=a2c.mean_return())

    def meta_step(self):
        """One meta-step: a meta-batch of tasks, each trained from the
        shared initialization, then the averaged meta-gradient applied.
        Returns per-task logs (task index, final A2C loss, path length,
        mean return of its last episodes)."""
        self.require_compiled()
        step = int(self.optimizer.iterations.numpy())
        rng = np.random.default_rng([self.seed, step])
        batch = rng.choice(len(self.tasks), self.meta_batch_size,
                           replace=False)
        seeds = [int(rng.integers(2 ** 31)) for _ in batch]  # in order
        if self.strategy is not None:  # worker 0's encoder on every worker
            sources = [v if self.worker == 0 else tf.zeros_like(v)
                       for v in self.meta_variables]
            for v, value in zip(self.meta_variables,
                                all_reduce_sum(self.strategy, sources)):
                v.assign(value)
        total = [tf.zeros_like(v) for v in self.meta_variables]
        logs = []
        for index, seed in list(zip(batch, seeds))[self.worker::self.workers]:
            a2c = self.tasks[int(index)](int(seed))
            try:
                grads, task_logs = self.task_meta_gradient(a2c)
            finally:
                a2c.envs.close()  # the agent is this task's, used once
            total = [a + b for a, b in zip(total, grads)]
            logs.append(dict(task_logs, task=int(index)))
        total = all_reduce_sum(self.strategy, total)  # over the workers
        self.optimizer.apply_gradients(
            [(g / len(batch), v) for g, v in zip(total, self.meta_variables)])
        return logs

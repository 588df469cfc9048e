"""WarpGrad (Flennerhag et al., ICLR 2020): meta-learned warp layers.

A warped task learner interleaves task layers (adapted per task) with warp
layers (``tfmeta.layers.WarpLayer``, meta-parameters phi, held fixed during
adaptation). Backpropagation through the warp layers preconditions the task
gradient (eq. 6); WarpGrad meta-learns phi so that one warped step from any
point theta_k of a task's trajectory lowers the task's meta-loss:

    L(phi) = E_tau E_{theta ~ p(theta|tau)} L_meta(theta - alpha grad L_task(theta; phi); phi)

(eq. 11, ``objective="full"``), or with the task update detached (eq. 12,
``objective="approximate"``). The samples theta_k are the iterates of the
task's own training (section 2.4), collected online (Algorithm 1) or into a
replay buffer (Algorithm 2). Task parameters start from the learner's
initialization, which is fixed (appendix G, J) or meta-learned jointly,
``J = L(phi) + lambda C(theta_0)`` (eq. 13-17): Warp-Leap or Warp-MAML.
"""

import keras
import numpy as np
import tensorflow as tf

from tfmeta import inner_loop, inner_optimizers
from tfmeta.layers import WarpLayer
from tfmeta.leap import METRICS, Leap
from tfmeta.meta_learner import MetaLearner, TASK_KEYS, unpack_tasks

OBJECTIVES = ("full", "approximate")
META_TRAINING = ("online", "offline", "continual")
INITIALIZATIONS = (None, "leap", "maml")
_QUERY_STREAM = 1_000_003  # fold-in key: L_meta minibatches differ from L_task's


def warp_layers(learner):
    """The ``WarpLayer`` instances inside ``learner`` (outermost only)."""
    found = []

    def visit(layer):
        for sub in layer._layers if hasattr(layer, "_layers") else []:
            if isinstance(sub, WarpLayer):
                found.append(sub)
            else:
                visit(sub)

    visit(learner)
    return found


def partition(learner):
    """``(task_variables, warp_variables)``: the learner's trainable variables
    split by the ``WarpLayer`` mark, each in ``trainable_variables`` order.

    A warp layer's variables are warp parameters phi except those it lists
    in ``task_variables`` (e.g. ``ConvWarp(film=True)``'s FiLM task
    embeddings), which are task parameters."""
    warp_ids = set()
    for layer in warp_layers(learner):
        own = {id(v) for v in layer.trainable_variables}
        marked = list(layer.task_variables)
        stray = [getattr(v, "path", getattr(v, "name", "?"))
                 for v in marked if id(v) not in own]
        if stray:
            raise ValueError(
                f"warp layer {layer.name!r} lists task_variables {stray} "
                "that are not among its own trainable variables.")
        warp_ids |= own - {id(v) for v in marked}
    task = [v for v in learner.trainable_variables if id(v) not in warp_ids]
    warp = [v for v in learner.trainable_variables if id(v) in warp_ids]
    return task, warp


def _check_warp_shapes(learner):
    """A warp layer must keep its input's shape (reported by name), unless
    it modulates weights (``keeps_shape = False``: Warp-RNN)."""
    for layer in warp_layers(learner):
        if not layer.keeps_shape:
            continue
        try:
            ins, outs = layer.input.shape, layer.output.shape
        except (AttributeError, ValueError):  # subclassed learners
            continue
        if tuple(ins) != tuple(outs):
            raise ValueError(
                f"warp layer {layer.name!r} maps shape {tuple(ins)} to "
                f"{tuple(outs)}; a warp layer must keep its input's shape.")


class WarpGrad(MetaLearner):
    """WarpGrad: meta-learns the warp layers of ``learner`` (eq. 11/12).

    Args:
      learner: a built Keras model with at least one ``WarpLayer`` (see
        ``tfmeta.layers.warped_sequential``) and at least one task layer.
      objective: ``"full"`` (eq. 11: second order through the task step) or
        ``"approximate"`` (eq. 12: stop-gradient on the task update).
      meta_training: ``"online"`` (Algorithm 1: the warp gradient of every
        iterate theta_k, k = 0..K-1, accumulated while the task trains, one
        outer step per meta-batch) or ``"offline"`` (Algorithm 2: the iterates
        go to a replay buffer, then one outer step per ``replay_batch_size``
        buffer entries, drawn without replacement).
        ``"continual"`` (Algorithm 3: no task resets; the task parameters
        theta are trained continually by ``init_weight`` times the multi-task
        loss gradient every step, and phi every ``replay_batch_size`` steps
        with the warp gradient at the theta of each step, accumulated).
        In continual mode theta moves by the *outer* optimizer, while the
        task step inside L_meta is the inner SGD's (lr alpha): with an SGD
        outer optimizer of lr beta, alpha = ``init_weight`` x beta makes
        the two the same step; with Adam, a small alpha (theta' ~ theta)
        matches its small steps better than a large one
        (``experiments/warpgrad_rnn.py``).
      replay_batch_size: eta of Algorithm 2 (default 1); in continual mode,
        the number of steps between warp updates.
      initialization: ``None`` (task parameters start from the learner's fixed
        initialization; only phi is meta-learned), ``"leap"`` (Warp-Leap,
        eq. 15-17) or ``"maml"`` (Warp-MAML, eq. 14: the MAML gradient through
        the warped adaptation, phi held fixed; our reading of the paper's
        "C_MAML = L_MAML under the constraint P = I").
      init_weight: lambda of eq. 13; the initialization's gradient is scaled
        by it (Algorithm 1, line 14).
      leap_metric, loss_in_manifold, stabilizer: Leap's options (``Leap``).
      learn_task_lr: meta-learn the task learning rate alpha (appendix F,
        table 3 "learned alpha"): a single scalar variable ``task_lr``,
        initialized at the inner SGD's (constant) learning rate, used by
        every task step (``fit``, ``adapt``, ``evaluate``, ``evaluate_tasks``
        and the exported ``adapt``). Its meta-gradient is ``dL/d alpha`` of
        eq. 11 through the one warped step ``theta_k + m_k - c alpha grad
        L_task(theta_k; phi)``, averaged like phi's (offline: the replayed
        step uses the current alpha with the stored theta_k and m_k). It is
        clipped to ``[-task_lr_clip, task_lr_clip]`` and applied by its own
        plain SGD step ``alpha -= task_lr_learning_rate * clip(g)`` (the
        paper: "meta-gradients for the learning rate are clipped at 0.001
        and we use a learning rate of 0.001"), not by the outer optimizer,
        in the same finite-or-skip meta-step as phi. Needs a Keras SGD inner
        optimizer with a constant learning rate and ``objective="full"``
        (eq. 12 stops the gradient through the task step, so alpha would
        get none), online or offline meta-training. Reported in the History
        as ``task_lr``; saved with the meta-learner's weights
        (checkpoints, ``tfmeta.load``).

    L_task is the task loss on support minibatch k (the step the task took);
    L_meta is the same loss on a query minibatch (appendix E: different
    batches of task data), in training mode. The one task step inside L_meta
    is the inner optimizer's: with Keras SGD (plain, momentum or Nesterov)
    it is recomputed as ``theta_k + m_k - c grad L_task(theta_k; phi)`` with
    the stored momentum term ``m_k`` (appendix F) and ``c`` the coefficient of
    the gradient; other inner optimizers support the approximate objective
    only, with the stored ``theta_{k+1}``.
    """

    def __init__(self, learner, objective="full", meta_training="online",
                 replay_batch_size=1, initialization=None, init_weight=1.0,
                 leap_metric="length", loss_in_manifold=True, stabilizer=True,
                 learn_task_lr=False, task_lr_learning_rate=0.001,
                 task_lr_clip=0.001, **kwargs):
        if objective not in OBJECTIVES:
            raise ValueError(f"Unknown WarpGrad objective {objective!r}; use "
                             f"one of {list(OBJECTIVES)}.")
        if meta_training not in META_TRAINING:
            raise ValueError(f"Unknown meta_training {meta_training!r}; use "
                             f"one of {list(META_TRAINING)}.")
        if initialization not in INITIALIZATIONS:
            raise ValueError(f"Unknown initialization {initialization!r}; use "
                             f"one of {list(INITIALIZATIONS)}.")
        if leap_metric not in METRICS:
            raise ValueError(f"Unknown Leap metric {leap_metric!r}; use one of "
                             f"{sorted(METRICS)}.")
        if init_weight < 0:
            raise ValueError(f"init_weight must be >= 0, got {init_weight}.")
        super().__init__(learner, **kwargs)
        _check_warp_shapes(learner)
        task_vars, warp_vars = partition(learner)
        if not warp_vars:
            raise ValueError(
                "WarpGrad needs a learner with warp layers (tfmeta.layers."
                "WarpLayer, tfmeta.layers.warp(...) or warped_sequential); "
                f"{learner.name!r} has none with trainable variables.")
        if not task_vars:
            raise ValueError(f"{learner.name!r} has only warp parameters; "
                             "WarpGrad needs task layers to adapt.")
        warp_ids = {id(v) for v in warp_vars}
        self.task_mask = [id(v) not in warp_ids
                          for v in learner.trainable_variables]
        self._task_idx = [j for j, m in enumerate(self.task_mask) if m]
        self._warp_idx = [j for j, m in enumerate(self.task_mask) if not m]
        self.objective = objective
        self.meta_training = meta_training
        self.replay_batch_size = int(replay_batch_size)
        if self.replay_batch_size < 1:
            raise ValueError("replay_batch_size must be a positive integer, "
                             f"got {replay_batch_size!r}.")
        if meta_training == "continual" and initialization is not None:
            raise ValueError(
                "meta_training='continual' (Algorithm 3) trains the task "
                "parameters with the multi-task loss itself; leave "
                f"initialization=None (got {initialization!r}).")
        self.initialization = initialization
        self.init_weight = float(init_weight)
        self.metric, self.loss_in_manifold = leap_metric, bool(loss_in_manifold)
        self.stabilizer = bool(stabilizer)
        if isinstance(self.inner_update, inner_optimizers.SGD):
            m = self.inner_update.momentum
            self._grad_coef = 1.0 + m if self.inner_update.nesterov else 1.0
        elif objective == "full":
            raise ValueError(
                "objective='full' (eq. 11) needs a Keras SGD inner optimizer "
                "(plain, momentum or Nesterov), whose step is linear in the "
                f"gradient; got {type(self.inner_update).__name__}. Use "
                "objective='approximate' (eq. 12).")
        elif meta_training == "continual":
            raise ValueError(
                "meta_training='continual' needs a Keras SGD inner optimizer "
                f"(the warped step from theta); got "
                f"{type(self.inner_update).__name__}.")
        else:
            self._grad_coef = None
        self._init_task_lr(learn_task_lr, task_lr_learning_rate, task_lr_clip)
        self.meta_loss_tracker = keras.metrics.Mean(name="meta_loss")
        self._config = dict(
            objective=objective, meta_training=meta_training,
            replay_batch_size=self.replay_batch_size,
            initialization=initialization, init_weight=self.init_weight,
            leap_metric=leap_metric, loss_in_manifold=self.loss_in_manifold,
            stabilizer=self.stabilizer, learn_task_lr=self.learn_task_lr,
            task_lr_learning_rate=self.task_lr_learning_rate,
            task_lr_clip=self.task_lr_clip)
        if initialization == "leap":
            self.path_length_tracker = keras.metrics.Mean(name="path_length")
        self._collect_function = None
        self._objective_function = None
        if meta_training == "continual":  # Algorithm 3's g_phi and i
            self.warp_accumulators = [
                self.add_weight(shape=v.shape, initializer="zeros",
                                dtype=v.dtype, trainable=False,
                                name=f"warp_grad_{n}")
                for n, v in enumerate(self.warp_variables)]
            self.warp_count = self.add_weight(
                shape=(), initializer="zeros", dtype="int64",
                trainable=False, name="warp_count")

    def xla_unsupported(self):
        if self.meta_training == "offline":
            return ("meta_training='offline' has a replay buffer whose size is "
                    "only known when the meta-step runs. Use "
                    "meta_training='online' or 'continual' with XLA, or "
                    "offline without it.")
        return super().xla_unsupported()

    def _init_task_lr(self, learn, learning_rate, clip):
        """The meta-learned task learning rate alpha (``learn_task_lr``)."""
        self.learn_task_lr = bool(learn)
        self.task_lr_learning_rate = float(learning_rate)
        self.task_lr_clip = float(clip)
        self.task_lr = None
        if not self.learn_task_lr:
            return
        if not self.task_lr_learning_rate > 0 or not self.task_lr_clip > 0:
            raise ValueError(
                "task_lr_learning_rate and task_lr_clip must be positive, got "
                f"{learning_rate!r} and {clip!r}.")
        sgd = self.inner_update
        if not isinstance(sgd, inner_optimizers.SGD):
            raise ValueError(
                "learn_task_lr=True meta-learns the step size of a Keras SGD "
                "inner optimizer (plain, momentum or Nesterov); got "
                f"{type(sgd).__name__}.")
        if callable(sgd.learning_rate):
            raise ValueError(
                "learn_task_lr=True needs a constant inner learning rate (the "
                "initial value of alpha), not a learning-rate schedule.")
        if self.objective == "approximate":
            raise ValueError(
                "learn_task_lr=True needs objective='full' (eq. 11): eq. 12 "
                "stops the gradient through the task step theta_k - alpha "
                "grad L_task, so alpha would get no meta-gradient.")
        if self.meta_training == "continual":
            raise ValueError(
                "learn_task_lr=True supports meta_training='online' or "
                "'offline', not 'continual'.")
        dtype = self.learner.trainable_variables[0].dtype
        self.task_lr = self.add_weight(
            shape=(), dtype=dtype, trainable=False, name="task_lr",
            initializer=keras.initializers.Constant(sgd.learning_rate),
            aggregation="only_first_replica")
        # Every task step reads the variable: fit, adapt, evaluate, export.
        self.inner_update = sgd.with_learning_rate(lambda step: self.task_lr)

    def _outer_params(self, params):
        """The arguments of L (eq. 11): phi, then alpha with
        ``learn_task_lr`` (the current value of ``task_lr``)."""
        phi = [params[j] for j in self._warp_idx]
        if self.learn_task_lr:
            phi.append(tf.convert_to_tensor(self.task_lr))
        return phi

    def _apply_if_finite(self, grads, loss):
        """The outer step on ``meta_variables``; with ``learn_task_lr`` the
        last gradient is alpha's: clipped, applied by its own SGD step, and
        skipped with the rest when anything is not finite."""
        if not self.learn_task_lr:
            return super()._apply_if_finite(grads, loss)
        grads, g = list(grads[:-1]), grads[-1]
        loss = tf.where(tf.math.is_finite(g), loss,
                        tf.constant(float("nan"), loss.dtype))
        reported = super()._apply_if_finite(grads, loss)
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            g = context.all_reduce("MEAN", g)
        alpha = self.task_lr
        g = tf.clip_by_value(tf.cast(g, alpha.dtype), -self.task_lr_clip,
                             self.task_lr_clip)
        alpha.assign(tf.where(tf.math.is_finite(reported),
                              alpha - self.task_lr_learning_rate * g, alpha))
        return reported

    def _update_metrics(self, logs, tasks, preds, extra=True):
        results = super()._update_metrics(logs, tasks, preds, extra)
        if self.learn_task_lr:  # the value after this meta-step
            results["task_lr"] = tf.cast(tf.identity(self.task_lr), tf.float32)
        return results

    # ------------------------------------------------------------ partition
    def get_config(self):
        """Constructor arguments, for ``tfmeta.load`` of an export."""
        return dict(super().get_config(), **self._config)

    @property
    def task_variables(self):
        return [self.learner.trainable_variables[j] for j in self._task_idx]

    @property
    def warp_variables(self):
        return [self.learner.trainable_variables[j] for j in self._warp_idx]

    @property
    def meta_variables(self):
        """phi, plus the initialization theta_0 with Warp-Leap/Warp-MAML."""
        if self.initialization is None and self.meta_training != "continual":
            return self.warp_variables
        return self.learner.trainable_variables

    def extra_metrics(self):
        metrics = {"meta_loss": self.meta_loss_tracker}
        if self.initialization == "leap":
            metrics["path_length"] = self.path_length_tracker
        return metrics

    def _adapt_task(self, params, nontrainable, x, y, steps, seed, hook=None,
                    hook_state=()):
        """The shared inner loop with the warp parameters held fixed."""
        return inner_loop.adapt(
            self.learner, self.task_loss_fn, self.inner_update, params,
            nontrainable, x, y, steps, batch_size=self.inner_batch_size,
            seed=seed, hook=hook, hook_state=hook_state, mask=self.task_mask)

    def _merge(self, theta, phi):
        full = [None] * len(self.task_mask)
        for j, t in zip(self._task_idx, theta):
            full[j] = t
        for j, p in zip(self._warp_idx, phi):
            full[j] = p
        return full

    # ------------------------------------------------ warp meta-gradient
    def _sample_warp_gradient(self, phi, nontrainable, theta, carry, step,
                              task, seed):
        """grad_phi L_meta(theta' ; phi) at one sampled iterate (eq. 11/12).

        ``phi``: warp parameters, then alpha with ``learn_task_lr``
        (``_outer_params``); ``theta``: task parameters theta_k; ``carry``:
        the momentum term m_k (SGD) or theta_{k+1} (other optimizers).
        Returns ``(grads aligned with phi, L_meta)``.
        """
        x, y = inner_loop.minibatch(task["support_x"], task["support_y"],
                                    self.inner_batch_size, seed, step)
        qseed = tf.random.experimental.stateless_fold_in(
            seed, _QUERY_STREAM, alg="philox")  # as under XLA (_task_seeds)
        qx, qy = inner_loop.minibatch(task["query_x"], task["query_y"],
                                      self.inner_batch_size, qseed, step)
        phi = [tf.identity(p) for p in phi]
        theta = [tf.stop_gradient(t) for t in theta]
        warp = phi[:len(self._warp_idx)]
        with tf.GradientTape() as outer:
            outer.watch(phi)
            if self._grad_coef is None:  # eq. 12 with the stored theta_{k+1}
                stepped = [tf.stop_gradient(c) for c in carry]
            else:
                with tf.GradientTape() as inner:
                    inner.watch(theta)
                    task_loss, _, _ = inner_loop.task_loss(
                        self.learner, self.task_loss_fn,
                        self._merge(theta, warp), nontrainable, x, y)
                grads = inner.gradient(task_loss, theta)
                if self.learn_task_lr:  # alpha, differentiated (eq. 11)
                    lr = tf.cast(phi[-1], theta[0].dtype)
                else:
                    lr = self.inner_update.lr(step, theta[0].dtype)
                lr = lr * self._grad_coef
                stepped = [t + m - lr * g for t, m, g in zip(theta, carry, grads)]
                if self.objective == "approximate":
                    stepped = [tf.stop_gradient(s) for s in stepped]
            meta_loss, _, _ = inner_loop.task_loss(
                self.learner, self.task_loss_fn, self._merge(stepped, warp),
                nontrainable, qx, qy)
        grads = outer.gradient(meta_loss, phi)
        return ([tf.zeros_like(p) if g is None else g
                 for p, g in zip(phi, grads)], meta_loss)

    def _carry(self, step, theta, theta_next, grads):
        """What one buffer entry stores besides theta_k (task entries)."""
        if self._grad_coef is None:
            return [theta_next[j] for j in self._task_idx]
        lr = self.inner_update.lr(step, theta[0].dtype) * self._grad_coef
        return [theta_next[j] - theta[j] + lr * grads[j]
                for j in self._task_idx]

    def _leap_increment(self, state, i, theta, theta_next, loss, loss_next,
                        grads):
        return Leap.pull_forward_increment(self, state, i, theta, theta_next,
                                           loss, loss_next, grads)

    def _run_task(self, params, nontrainable, task, seed, record):
        """Adapts one task (phi fixed) and samples its iterates.

        ``record=False``: accumulates the warp gradient online (Algorithm 1).
        ``record=True``: writes (theta_k, carry_k, init increment_k) into
        TensorArrays (Algorithm 2's buffer). Returns ``(result, init_grad,
        query loss, predictions)``; the state is in ``result.hook_state``.
        """
        phi = self._outer_params(params)
        leap = self.initialization == "leap"
        zeros = [tf.zeros_like(p) for p in params]

        def hook(state, i, theta, theta_next, loss, loss_next, grads):
            theta = [tf.stop_gradient(t) for t in theta]
            theta_next = [tf.stop_gradient(t) for t in theta_next]
            grads = [tf.stop_gradient(g) for g in grads]
            acc, meta_loss, leap_state = state
            th = [theta[j] for j in self._task_idx]
            carry = self._carry(i, theta, theta_next, grads)
            if leap:
                if record:
                    inc, seg = self._leap_increment(
                        (zeros, tf.zeros([], params[0].dtype)), i, theta,
                        theta_next, loss, loss_next, grads)
                    acc_l, length = leap_state
                    leap_state = (_write(acc_l, i, [inc[j] for j in
                                                    self._task_idx]),
                                  length + seg)
                else:
                    leap_state = self._leap_increment(
                        leap_state, i, theta, theta_next, loss, loss_next,
                        grads)
            if record:
                acc = (_write(acc[0], i, th), _write(acc[1], i, carry))
            else:
                g, ml = self._sample_warp_gradient(
                    phi, nontrainable, th, carry, i, task, seed)
                acc = [a + b for a, b in zip(acc, g)]
                meta_loss += ml
            return acc, meta_loss, leap_state

        dtype = params[0].dtype
        task_shapes = [params[j] for j in self._task_idx]
        if record:
            acc = (_list_array(task_shapes, self.inner_steps),
                   _list_array(task_shapes, self.inner_steps))
        else:
            acc = [tf.zeros_like(p) for p in phi]
        if leap:
            leap_state = ((_list_array(task_shapes, self.inner_steps)
                           if record else [tf.zeros_like(p) for p in params]),
                          tf.zeros([], dtype))
        else:
            leap_state = ()
        state = (acc, tf.zeros([], _loss_dtype(dtype)), leap_state)
        if self.initialization == "maml":
            with tf.GradientTape() as tape:
                tape.watch(params)
                result = self._adapt_task(
                    params, nontrainable, task["support_x"],
                    task["support_y"], self.inner_steps, seed, hook=hook,
                    hook_state=state)
                loss, pred = self._query_loss(result.params,
                                              result.nontrainable, task)
            grads = tape.gradient(loss, [params[j] for j in self._task_idx])
            init_grad = [tf.zeros_like(params[j]) if g is None else g
                         for j, g in zip(self._task_idx, grads)]
        else:
            result = self._adapt_task(
                params, nontrainable, task["support_x"], task["support_y"],
                self.inner_steps, seed, hook=hook, hook_state=state)
            loss, pred = self._query_loss(result.params, result.nontrainable,
                                          task)
            init_grad = None
            if leap and not record:
                full, _ = result.hook_state[2]
                init_grad = [full[j] for j in self._task_idx]
        return result, init_grad, loss, pred

    def _meta_grads(self, warp_grads, init_grads):
        """Gradient list aligned with ``meta_variables`` (then alpha's, with
        ``learn_task_lr``)."""
        warp_grads = list(warp_grads)
        extra = [warp_grads.pop()] if self.learn_task_lr else []
        if self.initialization is None:
            return warp_grads + extra
        lam = self.init_weight
        return self._merge([lam * g for g in init_grads], warp_grads) + extra

    def task_meta_gradient(self, params, nontrainable, task, seed):
        """Algorithm 1 for one task: the mean over k of the warp gradient at
        theta_k, plus lambda times the initialization's gradient."""
        result, init_grad, loss, pred = self._run_task(
            params, nontrainable, task, seed, record=False)
        acc, meta_loss, leap_state = result.hook_state
        k = tf.cast(self.inner_steps, acc[0].dtype)
        warp_grads = [a / k for a in acc]
        logs = {"loss": loss, "support_loss": result.loss_after,
                "meta_loss": meta_loss / self.inner_steps}
        if self.initialization == "leap":
            logs["path_length"] = leap_state[1]
        return self._meta_grads(warp_grads, init_grad), logs, pred

    # -------------------------------------------------- offline (Alg. 2)
    def _collect_graph(self, tasks, params, nontrainable):
        """The replay buffer of a task batch: every task adapted with phi
        fixed, its iterates theta_0..theta_{K-1} (and momentum terms)
        stored, plus per-entry initialization gradients."""
        num_tasks = tf.shape(tasks["support_x"])[0]
        seeds = self._task_seeds(num_tasks)
        k = self.inner_steps
        leap = self.initialization == "leap"
        dtype = params[0].dtype

        def one(args):
            task, seed = args
            result, init_grad, loss, pred = self._run_task(
                params, nontrainable, task, seed, record=True)
            (thetas, carries), _, leap_state = result.hook_state
            theta = _stack_list(thetas)
            carry = _stack_list(carries)
            if leap:
                init = _stack_list(leap_state[0])
                length = leap_state[1]
            elif init_grad is not None:  # MAML: 1/K of the task's gradient
                init = [tf.repeat(g[None] / k, k, axis=0) for g in init_grad]
                length = tf.zeros([], dtype)
            else:
                init = [tf.zeros([k, 0], dtype)]
                length = tf.zeros([], dtype)
            logs = (tf.cast(loss, tf.float32),
                    tf.cast(result.loss_after, tf.float32),
                    tf.cast(length, tf.float32))
            return (theta, carry, init, tf.repeat(seed[None], k, axis=0),
                    logs, pred)

        theta_spec = [tf.TensorSpec([k] + p.shape.as_list(), dtype)
                      for p in (params[j] for j in self._task_idx)]
        if self.initialization is None:
            init_spec = [tf.TensorSpec([k, 0], dtype)]
        else:
            init_spec = theta_spec
        pred_spec = tf.TensorSpec(None, self.learner.compute_dtype)
        out = tf.map_fn(
            one, (tasks, seeds),
            fn_output_signature=(theta_spec, theta_spec, init_spec,
                                 tf.TensorSpec([k, 2], tf.int64),
                                 (tf.float32,) * 3, pred_spec),
            parallel_iterations=self.parallel_tasks)
        theta, carry, init, seed, logs, preds = out
        flat = lambda t: tf.reshape(  # noqa: E731
            t, tf.concat([[-1], tf.shape(t)[2:]], 0))
        buffer = {
            "task": tf.repeat(tf.range(num_tasks), k),
            "step": tf.tile(tf.range(k), [num_tasks]),
            "seed": flat(seed),
            "theta": [flat(t) for t in theta],
            "carry": [flat(c) for c in carry],
            "init_grad": [flat(g) for g in init],
        }
        return buffer, logs, preds

    def _entry(self, buffer, e):
        return ({"theta": [t[e] for t in buffer["theta"]],
                 "carry": [c[e] for c in buffer["carry"]],
                 "task": buffer["task"][e], "step": buffer["step"][e],
                 "seed": buffer["seed"][e]})

    def _replay_gradient(self, tasks, buffer, indices, phi, nontrainable):
        """Mean warp gradient and L_meta over buffer ``indices``; the sum of
        their initialization gradients."""
        def body(n, acc, loss):
            e = self._entry(buffer, indices[n])
            task = {key: tasks[key][e["task"]] for key in TASK_KEYS}
            g, ml = self._sample_warp_gradient(
                phi, nontrainable, e["theta"], e["carry"], e["step"], task,
                e["seed"])
            return n + 1, [a + b for a, b in zip(acc, g)], loss + ml

        count = tf.shape(indices)[0]
        _, acc, loss = tf.while_loop(
            lambda n, *_: n < count, body,
            (tf.constant(0), [tf.zeros_like(p) for p in phi],
             tf.zeros([], _loss_dtype(phi[0].dtype))))
        c = tf.cast(count, acc[0].dtype)
        init = [tf.reduce_sum(tf.gather(g, indices), 0)
                for g in buffer["init_grad"]]
        return [a / c for a in acc], loss / tf.cast(count, loss.dtype), init

    def train_step(self, data):
        """Online: ``MetaLearner.train_step`` (Algorithm 1). Offline: collect
        the buffer, then one outer step per ``replay_batch_size`` entries
        drawn without replacement (Algorithm 2, lines 13-23)."""
        if self.meta_training == "online":
            return super().train_step(data)
        if self.meta_training == "continual":
            return self._continual_step(data)
        tasks = self._prepare(data)
        tasks = {k: tasks[k] for k in TASK_KEYS}
        params, nontrainable = self._current_state()
        buffer, (loss, support_loss, length), preds = self._collect_graph(
            tasks, params, nontrainable)
        size = tf.shape(buffer["step"])[0]
        num_tasks = tf.cast(tf.shape(tasks["support_x"])[0], params[0].dtype)
        order = tf.argsort(tf.random.stateless_uniform(
            [size], tf.cast(self.seed_generator.next(), tf.int64)))
        eta = self.replay_batch_size
        updates = (size + eta - 1) // eta

        def body(u, meta_loss, finite):
            indices = order[u * eta:(u + 1) * eta]
            phi = [tf.convert_to_tensor(v) for v in self.warp_variables]
            if self.learn_task_lr:  # the replayed step uses the current alpha
                phi.append(tf.convert_to_tensor(self.task_lr))
            warp_grads, ml, init = self._replay_gradient(
                tasks, buffer, indices, phi, nontrainable)
            grads = self._meta_grads(warp_grads, [g / num_tasks for g in init])
            reported = tf.cast(self._apply_if_finite(grads, ml), tf.float32)
            return (u + 1, meta_loss + reported,
                    tf.logical_and(finite, tf.math.is_finite(reported)))

        _, meta_loss, finite = tf.while_loop(
            lambda u, *_: u < updates, body,
            (tf.constant(0), tf.zeros([], tf.float32), tf.constant(True)))
        logs = {"loss": tf.where(finite, tf.reduce_mean(loss), np.nan),
                "support_loss": tf.reduce_mean(support_loss),
                "meta_loss": meta_loss / tf.cast(updates, tf.float32),
                "path_length": tf.reduce_mean(length)}
        return self._update_metrics(logs, tasks, preds)

    # ------------------------------------------------ continual (Alg. 3)
    def _continual_task(self, params, nontrainable, task, seed):
        """One task at the current theta: grad_phi L(phi; theta) (eq. 11/12,
        one step from theta on a support minibatch) and grad_theta of the
        task loss (C_multi)."""
        phi = [params[j] for j in self._warp_idx]
        theta = [params[j] for j in self._task_idx]
        zeros = [tf.zeros_like(t) for t in theta]
        warp_grads, meta_loss = self._sample_warp_gradient(
            phi, nontrainable, theta, zeros,
            tf.constant(0), task, seed)
        x, y = inner_loop.minibatch(task["support_x"], task["support_y"],
                                    self.inner_batch_size, seed, 0)
        loss, grads, _ = inner_loop.loss_and_grads(
            self.learner, self.task_loss_fn, params, nontrainable, x, y,
            mask=self.task_mask)
        query, pred = self._query_loss(params, nontrainable, task)
        logs = {"loss": query, "support_loss": loss, "meta_loss": meta_loss}
        return self._merge([grads[j] for j in self._task_idx], warp_grads), \
            logs, pred

    def _continual_step(self, data):
        """Algorithm 3: theta <- theta - lambda beta g_theta every step;
        g_phi accumulated, phi <- phi - beta g_phi / eta every eta steps."""
        tasks = self._prepare(data)
        params, nontrainable = self._current_state()
        grads, logs, preds = self._over_tasks(
            lambda task, seed: self._continual_task(
                params, nontrainable, task, seed), tasks)
        task_grads = [self.init_weight * grads[j] for j in self._task_idx]
        finite = tf.reduce_all(
            [tf.math.is_finite(logs["loss"])]
            + [tf.reduce_all(tf.math.is_finite(g)) for g in grads])

        def update():
            self.optimizer.apply(task_grads, self.task_variables)
            for acc, j in zip(self.warp_accumulators, self._warp_idx):
                acc.assign_add(grads[j])
            self.warp_count.assign_add(1)

            def warp_step():
                eta = tf.cast(self.warp_count, grads[0].dtype)
                self.optimizer.apply([a / eta for a in self.warp_accumulators],
                                     self.warp_variables)
                for acc in self.warp_accumulators:
                    acc.assign(tf.zeros_like(acc))
                self.warp_count.assign(0)
                return tf.constant(True)

            tf.cond(self.warp_count >= self.replay_batch_size, warp_step,
                    lambda: tf.constant(False))
            return tf.constant(True)

        tf.cond(finite, update, lambda: tf.constant(False))
        logs["loss"] = tf.where(finite, logs["loss"],
                                tf.constant(float("nan"), logs["loss"].dtype))
        return self._update_metrics(logs, tasks, preds)

    # ------------------------------------------------ inspection (tests)
    def collect(self, tasks):
        """Algorithm 2's replay buffer for one task batch, as NumPy arrays:
        ``task``, ``step`` and ``seed`` per entry, ``theta`` (theta_k of the
        task variables), ``carry`` (momentum term or theta_{k+1}) and
        ``init_grad`` (per-entry initialization gradient), entries ordered
        task-major."""
        self._require_compiled()
        tasks = {k: tf.convert_to_tensor(v)
                 for k, v in unpack_tasks(tasks).items() if k in TASK_KEYS}
        self._check_tasks(tasks)
        if self._collect_function is None:
            self._collect_function = tf.function(
                lambda t: self._collect_graph(t, *self._current_state())[0],
                reduce_retracing=True)
        return tf.nest.map_structure(lambda t: t.numpy(),
                                     self._collect_function(tasks))

    def warp_objective(self, tasks, buffer, indices=None):
        """``(L(phi), grad_phi L(phi))`` of eq. 11 (or 12) at the current
        warp parameters, averaged over buffer ``indices`` (default: all),
        with the stored iterates held fixed. With ``learn_task_lr`` the
        gradient list ends with ``dL/d alpha`` at the current ``task_lr``."""
        self._require_compiled()
        tasks = {k: tf.convert_to_tensor(v)
                 for k, v in unpack_tasks(tasks).items() if k in TASK_KEYS}
        buffer = tf.nest.map_structure(tf.convert_to_tensor, buffer)
        if indices is None:
            indices = np.arange(len(buffer["step"]))
        if self._objective_function is None:
            def fn(t, b, i):
                params, nontrainable = self._current_state()
                phi = self._outer_params(params)
                grads, loss, _ = self._replay_gradient(t, b, i, phi,
                                                       nontrainable)
                return loss, grads
            self._objective_function = tf.function(fn, reduce_retracing=True)
        loss, grads = self._objective_function(
            tasks, buffer, tf.constant(indices, tf.int32))
        return float(loss), [g.numpy() for g in grads]


def _loss_dtype(dtype):
    """Losses of half-precision models are float32 (``inner_loop.task_loss``)."""
    return tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype


def _list_array(like, size):
    """One TensorArray per tensor of ``like`` (a list of iterates)."""
    return [tf.TensorArray(t.dtype, size=size, element_shape=t.shape)
            for t in like]


def _write(arrays, i, values):
    return [a.write(i, v) for a, v in zip(arrays, values)]


def _stack_list(arrays):
    return [a.stack() for a in arrays]

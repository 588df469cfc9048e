"""Functional (stateless) versions of Keras optimizers for compiled inner loops.

Task adaptation runs inside one ``tf.while_loop`` on parameter *tensors*, and
MAML differentiates through it, so the update rule must be a pure function of
(step, gradients, parameters, optimizer state). Keras refuses
``Optimizer.stateless_apply`` on the TensorFlow backend, so the user passes an
ordinary Keras optimizer and we read its hyper-parameters from its config and
apply the same update rule functionally. ``tests/test_inner_optimizers.py``
checks each rule against the Keras optimizer itself.
"""

import copy

import keras
import tensorflow as tf

_UNSUPPORTED_OPTIONS = (
    "weight_decay", "clipnorm", "clipvalue", "global_clipnorm",
    "gradient_accumulation_steps", "loss_scale_factor",
)


def _learning_rate(config):
    lr = config["learning_rate"]
    if isinstance(lr, dict):  # a serialized LearningRateSchedule
        return keras.optimizers.schedules.deserialize(lr)
    lr = float(lr)
    if not lr > 0:
        raise ValueError(
            f"inner_optimizer learning_rate must be positive, got {lr}.")
    return lr


class InnerOptimizer:
    """Base class: ``init(params) -> state``, ``update(...) -> (params, state)``.

    Args:
      learning_rate: a positive float, a Keras ``LearningRateSchedule`` or a
        callable ``step -> rate`` of the 0-based inner step (a callable may
        return one rate per parameter: Meta-SGD).
    """

    def __init__(self, learning_rate):
        self.learning_rate = learning_rate

    def lr(self, step, dtype):
        """Learning rate at 0-based inner step ``step``.

        Args:
          step: the 0-based inner step.
          dtype: dtype of the returned rate.
        """
        if callable(self.learning_rate):
            return tf.cast(self.learning_rate(step), dtype)
        return tf.constant(self.learning_rate, dtype)

    def rates(self, step, params):
        """One learning rate per parameter at inner step ``step``: the
        scalar rate repeated, or, when the learning rate is a callable that
        returns a list (Meta-SGD's per-parameter rates, each shaped like its
        parameter), that list.

        Args:
          step: the 0-based inner step.
          params: list of parameter tensors.
        """
        if callable(self.learning_rate):
            lr = self.learning_rate(step)
            if isinstance(lr, (list, tuple)):
                if len(lr) != len(params):
                    raise ValueError(
                        f"{len(lr)} per-parameter learning rates for "
                        f"{len(params)} parameters.")
                return [tf.cast(a, p.dtype) for a, p in zip(lr, params)]
        lr = self.lr(step, params[0].dtype)
        return [lr] * len(params)

    def with_learning_rate(self, learning_rate):
        """A copy with another learning rate: a float or a callable of the
        step (e.g. ``lambda step: variable``, a meta-learned step size; for
        ``SGD`` it may return one rate per parameter, see ``rates``).

        Args:
          learning_rate: the new rate (float or callable of the step).
        """
        new = copy.copy(self)
        new.learning_rate = learning_rate
        return new

    def init(self, params):
        """The optimizer's initial state for ``params`` (slots).

        Args:
          params: list of the parameter tensors it will update.
        """
        return ()

    def update(self, step, grads, params, state):
        """One update, pure: returns ``(new_params, new_state)``.

        Args:
          step: the 0-based inner step (int tensor).
          grads: gradients aligned with ``params``.
          params: list of parameter tensors.
          state: the state ``init`` (or the last ``update``) returned.
        """
        raise NotImplementedError

    def update_with_increments(self, step, grads, params, state):
        """``update`` and the step it took: ``(new_params, increments,
        new_state)``, ``increments`` aligned with ``params``. Here
        ``new - params``; ``SGD`` (but Nesterov), ``Adam`` and ``RMSprop``
        compute the increment first and return ``params + increments`` as
        their ``update`` does, so a caller that reads only the increments
        (Leap's hook, ``tfmeta.leap.flat_increment``) no longer needs the old
        parameters once the new ones exist (under XLA: no copies of them in
        the inner loop).

        Args:
          step: the 0-based inner step (int tensor).
          grads: gradients aligned with ``params``.
          params: list of parameter tensors.
          state: the state ``init`` (or the last ``update``) returned.
        """
        new, state = self.update(step, grads, params, state)
        return new, [n - p for n, p in zip(new, params)], state


class SGD(InnerOptimizer):
    """``keras.optimizers.SGD``: plain, momentum or Nesterov.

    Args:
      learning_rate: a positive float, a Keras ``LearningRateSchedule`` or a
        callable ``step -> rate`` of the 0-based inner step (a callable may
        return one rate per parameter: Meta-SGD).
      momentum: momentum factor in [0, 1) (default 0.0: plain SGD).
      nesterov: Nesterov momentum (default ``False``).
    """

    def __init__(self, learning_rate, momentum=0.0, nesterov=False):
        super().__init__(learning_rate)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def init(self, params):
        if self.momentum == 0.0:
            return ()
        return ([tf.zeros_like(p) for p in params],)

    def update(self, step, grads, params, state):
        new, _, state = self.update_with_increments(step, grads, params, state)
        return new, state

    def update_with_increments(self, step, grads, params, state):
        lrs = self.rates(step, params)  # scalar, or per parameter (Meta-SGD)
        if self.momentum == 0.0:
            # p + (-(lr g)) is p - lr g exactly (IEEE subtraction)
            increments = [-(lr * g) for lr, g in zip(lrs, grads)]
            return [p + d for p, d in zip(params, increments)], increments, ()
        m = self.momentum
        velocities = [m * v - lr * g for v, lr, g in zip(state[0], lrs, grads)]
        if self.nesterov:
            new = [p + m * v - lr * g
                   for p, v, lr, g in zip(params, velocities, lrs, grads)]
            return (new, [n - p for n, p in zip(new, params)],
                    (velocities,))
        return ([p + v for p, v in zip(params, velocities)], velocities,
                (velocities,))


class Adam(InnerOptimizer):
    """``keras.optimizers.Adam`` (bias-corrected step size, optional AMSGrad).

    Args:
      learning_rate: a positive float, a Keras ``LearningRateSchedule`` or a
        callable ``step -> rate`` of the 0-based inner step (a callable may
        return one rate per parameter: Meta-SGD).
      beta_1: decay of the first-moment estimate (default 0.9).
      beta_2: decay of the second-moment estimate (default 0.999).
      epsilon: added to the denominator (default 1e-7, Keras's).
      amsgrad: use AMSGrad's running maximum (default ``False``).
    """

    def __init__(self, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False):
        super().__init__(learning_rate)
        self.beta_1, self.beta_2 = float(beta_1), float(beta_2)
        self.epsilon, self.amsgrad = float(epsilon), bool(amsgrad)

    def init(self, params):
        zeros = lambda: [tf.zeros_like(p) for p in params]  # noqa: E731
        return (zeros(), zeros(), zeros()) if self.amsgrad else (zeros(), zeros())

    def update(self, step, grads, params, state):
        new, _, state = self.update_with_increments(step, grads, params, state)
        return new, state

    def update_with_increments(self, step, grads, params, state):
        dtype = params[0].dtype
        t = tf.cast(step + 1, dtype)
        alpha = (self.lr(step, dtype) * tf.sqrt(1.0 - self.beta_2 ** t)
                 / (1.0 - self.beta_1 ** t))
        ms = [m + (g - m) * (1.0 - self.beta_1) for m, g in zip(state[0], grads)]
        vs = [v + (tf.square(g) - v) * (1.0 - self.beta_2)
              for v, g in zip(state[1], grads)]
        new_state = (ms, vs)
        denominators = vs
        if self.amsgrad:
            vhats = [tf.maximum(vh, v) for vh, v in zip(state[2], vs)]
            new_state, denominators = (ms, vs, vhats), vhats
        increments = [-(alpha * m / (tf.sqrt(v) + self.epsilon))
                      for m, v in zip(ms, denominators)]
        return ([p + d for p, d in zip(params, increments)], increments,
                new_state)


class RMSprop(InnerOptimizer):
    """``keras.optimizers.RMSprop`` (optionally centered, with momentum).

    Args:
      learning_rate: a positive float, a Keras ``LearningRateSchedule`` or a
        callable ``step -> rate`` of the 0-based inner step (a callable may
        return one rate per parameter: Meta-SGD).
      rho: decay of the squared-gradient average (default 0.9).
      momentum: momentum factor (default 0.0).
      epsilon: added to the denominator (default 1e-7, Keras's).
      centered: divide by the gradient's estimated variance instead of its
        second moment (default ``False``).
    """

    def __init__(self, learning_rate, rho=0.9, momentum=0.0, epsilon=1e-7,
                 centered=False):
        super().__init__(learning_rate)
        self.rho, self.momentum = float(rho), float(momentum)
        self.epsilon, self.centered = float(epsilon), bool(centered)

    def init(self, params):
        zeros = lambda: [tf.zeros_like(p) for p in params]  # noqa: E731
        return (zeros(), zeros(), zeros())

    def update(self, step, grads, params, state):
        new, _, state = self.update_with_increments(step, grads, params, state)
        return new, state

    def update_with_increments(self, step, grads, params, state):
        lr = self.lr(step, params[0].dtype)
        rho = self.rho
        vel = [rho * v + (1.0 - rho) * tf.square(g)
               for v, g in zip(state[0], grads)]
        if self.centered:
            avg = [rho * a + (1.0 - rho) * g for a, g in zip(state[1], grads)]
            denominators = [v - tf.square(a) + self.epsilon
                            for v, a in zip(vel, avg)]
        else:
            avg = state[1]
            denominators = [v + self.epsilon for v in vel]
        increments = [lr * g * tf.math.rsqrt(d)
                      for g, d in zip(grads, denominators)]
        if self.momentum > 0:
            mom = [self.momentum * m + inc
                   for m, inc in zip(state[2], increments)]
            steps = [-m for m in mom]
        else:
            mom = state[2]
            steps = [-inc for inc in increments]
        return ([p + d for p, d in zip(params, steps)], steps,
                (vel, avg, mom))


_FROM_KERAS = {
    keras.optimizers.SGD: (SGD, ("momentum", "nesterov")),
    keras.optimizers.Adam: (Adam, ("beta_1", "beta_2", "epsilon", "amsgrad")),
    keras.optimizers.RMSprop: (RMSprop, ("rho", "momentum", "epsilon", "centered")),
}


def from_keras(optimizer):
    """Functional twin of a Keras optimizer instance (SGD, Adam or RMSprop).

    Args:
      optimizer: a ``keras.optimizers.SGD``, ``Adam`` or ``RMSprop`` (its
        config is read; weight decay and clipping are refused), its name as
        a string, or an ``InnerOptimizer`` (returned as it is).
    """
    if isinstance(optimizer, InnerOptimizer):
        return optimizer
    if isinstance(optimizer, str):
        optimizer = keras.optimizers.get(optimizer)
    for keras_cls, (cls, keys) in _FROM_KERAS.items():
        if type(optimizer) is keras_cls:
            break
    else:
        names = ", ".join(k.__name__ for k in _FROM_KERAS)
        raise ValueError(
            f"inner_optimizer {type(optimizer).__name__} is not supported for "
            f"task adaptation; use one of keras.optimizers.{{{names}}}.")
    config = optimizer.get_config()
    for option in _UNSUPPORTED_OPTIONS:
        value = config.get(option)
        if value is not None and not (option == "weight_decay" and value == 0):
            raise ValueError(
                f"inner_optimizer option {option}={value!r} is not supported "
                "in the compiled inner loop; remove it.")
    if config.get("use_ema"):
        raise ValueError("inner_optimizer option use_ema=True is not supported.")
    return cls(_learning_rate(config), **{k: config[k] for k in keys})

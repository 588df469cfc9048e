"""Meta-SGD (Li et al., 2017, "Meta-SGD: Learning to Learn Quickly for
Few-Shot Learning"): a learning rate per parameter, meta-learned with the
initialization by MAML's second-order gradient."""

import keras
import tensorflow as tf

from tfmeta import inner_optimizers, registry
from tfmeta.maml import MAML


@registry.register("metasgd", "Meta-SGD: per-parameter learning rates "
                              "meta-learned with the initialization")
class MetaSGD(MAML):
    """Meta-SGD: the inner update is ``theta - alpha * grad L(theta)``
    (``*`` element-wise: eq. 2 of ``gradient_based_transfer.txt`` with a
    diagonal ``M``) with ``alpha`` one learning rate per parameter entry (variables shaped like the learner's
    trainables, initialised to the inner SGD's learning rate). ``(theta,
    alpha)`` are meta-learned together by the outer optimizer on the
    gradient of the post-adaptation query loss, differentiated through the
    whole inner loop (second order, as ``MAML``). The paper itself is not
    in ``/work/shared/papers``: equation numbers are not quoted.

    ``alpha`` is the adaptation spec's ``step_size`` (``task_lr``, a list of
    variables) that the inner SGD reads: the same inner loop and the same
    path as WarpGrad's learned step size, so ``adapt``, ``evaluate`` and the
    exported ``adapt`` use it. It is saved with the meta-learner's weights.

    Args:
      learner: a built Keras model, the task learner.
      checkpoint_every: ``MAML``'s: the checkpointed gradient through the
        inner loop, the rates' included. Default ``None``.
      **kwargs: the ``tfmeta.MetaLearner`` arguments. ``inner_optimizer``
        must be a Keras SGD with a constant learning rate, the initial value
        of every alpha (momentum is allowed; the rates then scale each
        gradient before it enters the velocity).
    """

    def __init__(self, learner, checkpoint_every=None, **kwargs):
        super().__init__(learner, checkpoint_every=checkpoint_every, **kwargs)
        sgd = self.inner_update
        if not isinstance(sgd, inner_optimizers.SGD):
            raise ValueError(
                "MetaSGD meta-learns the rates of a Keras SGD inner optimizer; "
                f"got {type(sgd).__name__}.")
        if callable(sgd.learning_rate):
            raise ValueError(
                "MetaSGD needs a constant inner learning rate (the initial "
                "value of every alpha), not a learning-rate schedule.")
        self.task_lr = [
            self.add_weight(
                shape=v.shape, dtype=v.dtype, trainable=False,
                name="alpha_" + v.path.replace("/", "_"),
                initializer=keras.initializers.Constant(sgd.learning_rate))
            for v in learner.trainable_variables]
        rates = self.task_lr
        self.inner_update = sgd.with_learning_rate(lambda step: list(rates))

    @property
    def meta_variables(self):
        """The learner's trainables, then the learning rates alpha."""
        return list(self.learner.trainable_variables) + list(self.task_lr)

    def task_meta_gradient(self, params, nontrainable, task, seed):
        alphas = [a.value for a in self.task_lr]  # the tf.Variables
        with tf.GradientTape() as tape:
            tape.watch(params)
            tape.watch(alphas)
            result = self.adapt_task(params, nontrainable, task, seed,
                                     checkpoint_every=self.checkpoint_every,
                                     unroll=self.unrolled())
            loss, pred = self.query_loss(
                result.params, result.nontrainable, task)
        grads = self.scaled_gradient(tape, loss, list(params) + alphas)
        return grads, {"loss": loss, "support_loss": result.loss_after}, pred

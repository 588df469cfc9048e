"""MAML (Finn et al., 2017): second order, and its first-order variant."""

import tensorflow as tf

from tfmeta import inner_loop, registry
from tfmeta.meta_learner import MetaLearner

#: Grappler options for second-order graphs: TensorFlow 2.21's
#: ``ArithmeticOptimizer/AddOpsRewrite`` fails on the second-order graph of a
#: conv net's inner loop with a meta-batch above one (``AlreadyExistsError
#: ... AddOpsRewrite_add_NN/tmp_var``, every call). Set only while the
#: meta-learner's own ``fit``/``evaluate`` graphs run
#: (``MetaLearner.graph_options``); the other Grappler passes stay on.
SECOND_ORDER_GRAPH_OPTIONS = {"arithmetic_optimization": False}

#: The most inner steps for which a vectorized second-order meta-step
#: unrolls its inner loop (``MAML.unrolled``).
UNROLL_LIMIT = 32


@registry.register("maml", "MAML: second-order gradient through the inner "
                           "loop")
class MAML(MetaLearner):
    """MAML: the gradient of the post-adaptation query loss with respect to
    the initialization, differentiated through all ``inner_steps`` updates of
    the compiled inner loop (second order).

    Its ``fit``/``evaluate`` graphs run with Grappler's arithmetic optimizer
    off (``SECOND_ORDER_GRAPH_OPTIONS``); the rest of the process keeps it.

    Args:
      learner: a built Keras model, the task learner.
      checkpoint_every: ``None`` (store every inner step for the backward
        pass), a positive int ``c`` or ``"sqrt"``: store only every ``c``-th
        inner state and recompute the segments in the backward pass
        (``tfmeta.inner_loop.optimize``): the same meta-gradient, memory
        ~``K / c + c`` inner steps instead of ``K``, one more forward pass
        of the inner loop (docs/performance.md).
      **kwargs: ``MetaLearner``'s.
    """

    auto_vectorize = True  # (tfmeta.fast_path.vectorize_tasks)

    def __init__(self, learner, checkpoint_every=None, **kwargs):
        super().__init__(learner, **kwargs)
        self.checkpoint_every = inner_loop.checkpoint_interval(
            checkpoint_every)

    def get_config(self):
        return dict(super().get_config(),
                    checkpoint_every=self.checkpoint_every)

    def graph_options(self):
        return dict(SECOND_ORDER_GRAPH_OPTIONS)

    def unrolled(self):
        """Whether the differentiated inner loop runs unrolled: with
        ``vectorize_tasks``, no ``checkpoint_every`` and at most
        ``UNROLL_LIMIT`` inner steps, so that XLA can compile the vectorized
        second-order meta-step (a vectorized differentiated ``while_loop``
        makes nested TensorLists, which XLA does not support)."""
        return (bool(self.vectorize_tasks) and self.checkpoint_every is None
                and self.inner_steps <= UNROLL_LIMIT)

    def xla_unsupported(self):
        if self.vectorize_tasks and not self.unrolled():
            return ("with vectorize_tasks=True and checkpoint_every or more "
                    f"than {UNROLL_LIMIT} inner steps, vectorizing the "
                    "differentiated inner loop makes nested TensorLists, "
                    "which XLA does not support. Use either jit_compile=True "
                    "with vectorize_tasks=False, or vectorize_tasks=True "
                    "without XLA.")
        return None

    def task_meta_gradient(self, params, nontrainable, task, seed):
        with tf.GradientTape() as tape:
            tape.watch(params)
            result = self.adapt_task(params, nontrainable, task, seed,
                                     checkpoint_every=self.checkpoint_every,
                                     unroll=self.unrolled())
            loss, pred = self.query_loss(
                result.params, result.nontrainable, task)
        grads = self.scaled_gradient(tape, loss, params)
        return grads, {"loss": loss, "support_loss": result.loss_after}, pred


@registry.register("fomaml", "first-order MAML")
class FOMAML(MetaLearner):
    """First-order MAML: the query-loss gradient at the adapted weights,
    treating the inner updates as constants (Reptile paper, section 4)."""

    auto_vectorize = True  # (tfmeta.fast_path.vectorize_tasks)

    def task_meta_gradient(self, params, nontrainable, task, seed):
        result = self.adapt_task(params, nontrainable, task, seed)
        adapted = list(result.params)
        with tf.GradientTape() as tape:
            tape.watch(adapted)
            loss, pred = self.query_loss(adapted, result.nontrainable, task)
        grads = self.scaled_gradient(tape, loss, adapted)
        return grads, {"loss": loss, "support_loss": result.loss_after}, pred

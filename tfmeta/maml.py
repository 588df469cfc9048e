"""MAML (Finn et al., 2017): second order, and its first-order variant."""

import tensorflow as tf

from tfmeta.meta_learner import MetaLearner


def avoid_grappler_add_ops_bug():
    """Turns off Grappler's arithmetic optimizer for this process.

    TensorFlow 2.21's ``ArithmeticOptimizer/AddOpsRewrite`` fails on the
    second-order graph of a conv net's inner loop with a meta-batch above one
    (``AlreadyExistsError ... AddOpsRewrite_add_NN/tmp_var``, every call).
    Grappler options are process-wide in TensorFlow 2, so this affects every
    graph of the process; the other Grappler passes stay on.
    """
    tf.config.optimizer.set_experimental_options(
        {"arithmetic_optimization": False})


class MAML(MetaLearner):
    """MAML: the gradient of the post-adaptation query loss with respect to
    the initialization, differentiated through all ``inner_steps`` updates of
    the compiled inner loop (second order).

    ``compile`` turns off Grappler's arithmetic optimizer for the process
    (see ``avoid_grappler_add_ops_bug``).
    """

    def compile(self, *args, **kwargs):
        avoid_grappler_add_ops_bug()
        super().compile(*args, **kwargs)

    def xla_unsupported(self):
        if self.vectorize_tasks:
            return ("with vectorize_tasks=True, vectorizing the differentiated "
                    "inner loop makes nested TensorLists, which XLA does not "
                    "support. Use either jit_compile=True with "
                    "vectorize_tasks=False, or vectorize_tasks=True without XLA.")
        return None

    def task_meta_gradient(self, params, nontrainable, task, seed):
        with tf.GradientTape() as tape:
            tape.watch(params)
            result = self._adapt_task(params, nontrainable, task["support_x"],
                                      task["support_y"], self.inner_steps, seed)
            loss, pred = self._query_loss(
                result.params, result.nontrainable, task)
        grads = tape.gradient(loss, params)
        grads = [tf.zeros_like(p) if g is None else g
                 for p, g in zip(params, grads)]
        return grads, {"loss": loss, "support_loss": result.loss_after}, pred


class FOMAML(MetaLearner):
    """First-order MAML: the query-loss gradient at the adapted weights,
    treating the inner updates as constants (Reptile paper, section 4)."""

    def task_meta_gradient(self, params, nontrainable, task, seed):
        result = self._adapt_task(params, nontrainable, task["support_x"],
                                  task["support_y"], self.inner_steps, seed)
        adapted = list(result.params)
        with tf.GradientTape() as tape:
            tape.watch(adapted)
            loss, pred = self._query_loss(adapted, result.nontrainable, task)
        grads = tape.gradient(loss, adapted)
        grads = [tf.zeros_like(p) if g is None else g
                 for p, g in zip(adapted, grads)]
        return grads, {"loss": loss, "support_loss": result.loss_after}, pred

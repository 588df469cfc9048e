"""MAML (Finn et al., 2017): second order, and its first-order variant."""

import tensorflow as tf

from tfmeta.meta_learner import MetaLearner


class MAML(MetaLearner):
    """MAML: the gradient of the post-adaptation query loss with respect to
    the initialization, differentiated through all ``inner_steps`` updates of
    the compiled inner loop (second order)."""

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

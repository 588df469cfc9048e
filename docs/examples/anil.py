"""First-order ANIL (Raghu et al., 2020) as a tfmeta method: while a task
adapts only the head learns (the body is held fixed), and the meta-gradient
is the query-loss gradient at the adapted weights (first order)."""

import tensorflow as tf

import tfmeta
from tfmeta.checks import positive_int


@tfmeta.register("anil_example", "first-order ANIL: adapt the head only",
                 cli=False)  # the library's own is tfmeta.ANIL ("anil")
class FirstOrderANIL(tfmeta.MetaLearner):
    """First-order ANIL. ``head_variables``: how many of the learner's last
    trainable variables are the head (2: a Dense kernel and bias)."""

    def __init__(self, learner, head_variables=2, **kwargs):
        super().__init__(learner, **kwargs)
        self.head_variables = positive_int("head_variables", head_variables)
        n = len(learner.trainable_variables)
        # The adaptation spec's mask: False = held fixed in the inner loop
        # (fit, adapt, evaluate, evaluate_tasks and export all read it).
        self.task_mask = [j >= n - self.head_variables for j in range(n)]

    def get_config(self):  # constructor arguments, for tfmeta.load
        return dict(super().get_config(), head_variables=self.head_variables)

    def task_meta_gradient(self, params, nontrainable, task, seed):
        result = self.adapt_task(params, nontrainable, task, seed)
        adapted = list(result.params)
        with tf.GradientTape() as tape:
            tape.watch(adapted)
            loss, pred = self.query_loss(adapted, result.nontrainable, task)
        grads = tape.gradient(loss, adapted,
                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
        logs = {"loss": loss, "support_loss": result.loss_after}
        return grads, logs, pred

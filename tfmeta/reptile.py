"""Reptile (Nichol et al., 2018), serial and batched."""

from tfmeta import registry
from tfmeta.meta_learner import MetaLearner


@registry.register("reptile", "Reptile: move the initialization towards "
                              "adapted weights")
class Reptile(MetaLearner):
    """Reptile: the outer step is fed ``phi - W`` as the gradient.

    With a meta-batch of one task this is Algorithm 1 (serial): an outer SGD
    step of size epsilon gives ``phi <- phi + epsilon (W - phi)``. With ``n``
    tasks it is Algorithm 2 (batched): the gradient is ``mean_i(phi - W_i)``.
    Any Keras optimizer takes the outer step (the paper also uses Adam), and
    ``tfmeta.linear_annealing`` anneals its step size linearly to zero as in
    the paper's experiments.
    """

    auto_vectorize = True  # (tfmeta.fast_path.vectorize_tasks)

    def task_meta_gradient(self, params, nontrainable, task, seed):
        result = self.adapt_task(params, nontrainable, task, seed)
        loss, pred = self.query_loss(result.params, result.nontrainable, task)
        grads = [p0 - pk for p0, pk in zip(params, result.params)]
        return grads, {"loss": loss, "support_loss": result.loss_after}, pred

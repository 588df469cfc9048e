"""Train-from-scratch baseline: no meta-training."""

from tfmeta import registry
from tfmeta.meta_learner import MetaLearner, MetaStep


@registry.register("scratch", "baseline: no meta-training")
class Scratch(MetaLearner):
    """No pretraining: every task is adapted from the learner's random
    initialization. ``fit`` leaves the weights unchanged and logs the query
    loss of the initialization; ``evaluate`` adapts as the other methods do.
    """

    def meta_step(self, tasks):
        params, nontrainable = self.current_state()

        def initial_loss(task, seed):
            loss, pred = self.query_loss(params, nontrainable, task)
            return {"loss": loss, "support_loss": loss}, pred

        logs, preds = self.over_tasks(initial_loss, tasks)
        return MetaStep(logs, preds)

"""Train-from-scratch baseline: no meta-training."""

from tfmeta.meta_learner import MetaLearner


class Scratch(MetaLearner):
    """No pretraining: every task is adapted from the learner's random
    initialization. ``fit`` leaves the weights unchanged and logs the query
    loss of the initialization; ``evaluate`` adapts as the other methods do.
    """

    def train_step(self, data):
        tasks = self._prepare(data)
        params, nontrainable = self._current_state()

        def initial_loss(task, seed):
            loss, pred = self._query_loss(params, nontrainable, task)
            return [loss], {"loss": loss, "support_loss": loss}, pred

        _, logs, preds = self._over_tasks(initial_loss, tasks)
        return self._update_metrics(logs, tasks, preds)

"""Fine-tuning baseline: pretrain on the training tasks, then fine-tune."""

import keras
import tensorflow as tf

from tfmeta import registry
from tfmeta.checks import positive_int
from tfmeta.meta_learner import MetaLearner, MetaStep


@registry.register("finetune", "baseline: pretraining on the tasks, then "
                               "fine-tuning")
class FineTune(MetaLearner):
    """Pretraining followed by fine-tuning (the papers' "Finetuning" column).

    Each meta-step (``meta_step``) is one supervised step of the outer
    optimizer on the support data of the meta-batch. With ``num_heads=None``
    all tasks share the learner's output layer (pooled pretraining). With
    ``num_heads=H`` the pretraining is multi-headed: the learner's last layer
    must be a ``Dense`` layer, task ``t`` (``task_id`` in the task batch,
    ``0 <= t < H``) gets its own copy of it, and fine-tuning on a new task starts from the pretrained
    body with the learner's own (untrained) output layer.

    Args:
      learner: a built Keras model, the task learner.
      num_heads: ``None`` (default) for pooled pretraining, or the number of
        output heads ``H >= 1`` of multi-headed pretraining (one per
        training task id).
      **kwargs: the ``tfmeta.MetaLearner`` arguments (``inner_optimizer``,
        ``inner_steps``, ``eval_steps``, ``inner_batch_size``,
        ``parallel_tasks``, ``vectorize_tasks``, ``seed``, ``name``).
    """

    def __init__(self, learner, num_heads=None, **kwargs):
        super().__init__(learner, **kwargs)
        self.num_heads = num_heads
        if num_heads is None:
            return
        self.num_heads = num_heads = positive_int("num_heads", num_heads)
        head = learner.layers[-1]
        if not isinstance(head, keras.layers.Dense) or not getattr(
                learner, "inputs", None):
            raise ValueError(
                "multi-headed FineTune needs a Sequential or functional learner "
                "whose last layer is a Dense output layer.")
        self.head = head
        self.body = keras.Model(learner.inputs, learner.layers[-2].output)
        in_dim, units = head.kernel.shape
        self.head_kernels = self.add_weight(
            shape=(num_heads, in_dim, units), name="head_kernels",
            initializer=head.kernel_initializer)
        self.head_biases = self.add_weight(
            shape=(num_heads, units), name="head_biases", initializer="zeros")

    def get_config(self):
        return dict(super().get_config(), num_heads=self.num_heads)

    @property
    def meta_variables(self):
        if self.num_heads is None:
            return self.learner.trainable_variables
        return self.body.trainable_variables + [self.head_kernels,
                                                self.head_biases]

    def _pretraining_predictions(self, tasks):
        x = tasks["support_x"]
        flat_x = tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0))
        if self.num_heads is None:
            pred = self.learner(flat_x, training=True)
            return tf.reshape(pred, tf.concat(
                [tf.shape(x)[:2], tf.shape(pred)[1:]], 0))
        if "task_id" not in tasks:
            raise ValueError(
                "multi-headed FineTune needs 'task_id' in each task batch.")
        features = self.body(flat_x, training=True)
        features = tf.reshape(features, [tf.shape(x)[0], tf.shape(x)[1], -1])
        ids = tf.cast(tasks["task_id"], tf.int32)
        tf.debugging.assert_less(
            ids, self.num_heads, message="task_id out of range of num_heads")
        logits = tf.einsum("bnd,bdo->bno", features,
                           tf.gather(self.head_kernels, ids))
        logits += tf.gather(self.head_biases, ids)[:, None, :]
        return self.head.activation(logits)

    def meta_step(self, tasks):
        """One outer-optimizer step on the pooled (or multi-headed) support
        loss of the meta-batch; metrics on the support split."""
        with tf.GradientTape() as tape:
            pred = self._pretraining_predictions(tasks)
            loss = tf.reduce_mean(self.task_loss_fn(tasks["support_y"], pred))
        grads = tape.gradient(loss, self.meta_variables,
                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
        loss = self.apply_if_finite(grads, loss,
                                    tf.shape(tasks["support_x"])[0])
        return MetaStep({"loss": loss, "support_loss": loss}, pred,
                        tasks["support_y"])

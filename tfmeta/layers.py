"""Keras layers for task learners."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfmeta")
class BatchNormalization(keras.layers.BatchNormalization):
    """Batch normalization for meta-learning task learners.

    Differs from ``keras.layers.BatchNormalization`` in two ways:

    * exact higher-order gradients: on TensorFlow, Keras computes batch moments
      with ``tf.nn.moments``, which stops the gradient of the mean inside the
      variance. First derivatives are unaffected, but second derivatives
      (second-order MAML through a BN net) come out wrong. Here the variance
      is ``mean((x - mean)^2)`` with nothing stopped.
    * ``momentum=0.0`` by default: after a training-mode call the moving
      statistics are those of the last batch. Task learners adapt in training
      mode and predict in inference mode, which then uses the statistics of
      the last support minibatch (PyTorch ``momentum=1``, as in Leap's code).
    """

    def __init__(self, momentum=0.0, **kwargs):
        super().__init__(momentum=momentum, **kwargs)

    def _moments(self, inputs, mask):
        if mask is not None:
            return super()._moments(inputs, mask)
        mean = ops.mean(inputs, axis=self._reduction_axes, keepdims=True)
        variance = ops.mean(ops.square(inputs - mean),
                            axis=self._reduction_axes)
        return ops.squeeze(mean, axis=self._reduction_axes), variance

"""The functional inner optimizers follow the Keras optimizers exactly."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfmeta import inner_optimizers

CASES = [
    keras.optimizers.SGD(0.1),
    keras.optimizers.SGD(0.05, momentum=0.9),
    keras.optimizers.SGD(0.05, momentum=0.8, nesterov=True),
    keras.optimizers.Adam(0.01),
    keras.optimizers.Adam(0.01, beta_1=0.0, amsgrad=True),
    keras.optimizers.RMSprop(0.01),
    keras.optimizers.RMSprop(0.01, momentum=0.5, centered=True),
    keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 1, 0.5)),
]


@pytest.mark.parametrize("keras_optimizer", CASES,
                         ids=lambda o: str(o.get_config())[:60])
def test_matches_keras_optimizer(keras_optimizer):
    rng = np.random.default_rng(0)
    init = [rng.normal(size=(3, 2)).astype("float32"),
            rng.normal(size=(2,)).astype("float32")]
    variables = [keras.Variable(v) for v in init]
    functional = inner_optimizers.from_keras(keras_optimizer)
    params = [tf.constant(v) for v in init]
    state = functional.init(params)
    for step in range(6):
        grads = [tf.constant(rng.normal(size=v.shape).astype("float32"))
                 for v in init]
        keras_optimizer.apply(grads, variables)
        params, state = functional.update(tf.constant(step), grads, params,
                                          state)
    for var, param in zip(variables, params):
        np.testing.assert_allclose(np.array(var), param.numpy(), rtol=1e-5,
                                   atol=1e-6)


def test_unsupported_optimizer_is_named():
    with pytest.raises(ValueError, match="Adagrad is not supported"):
        inner_optimizers.from_keras(keras.optimizers.Adagrad(0.1))


def test_unsupported_option_is_named():
    with pytest.raises(ValueError, match="clipnorm"):
        inner_optimizers.from_keras(keras.optimizers.SGD(0.1, clipnorm=1.0))


@pytest.mark.parametrize("lr", [0.0, -0.1])
def test_non_positive_learning_rate(lr):
    with pytest.raises(ValueError, match="learning_rate must be positive"):
        inner_optimizers.from_keras(keras.optimizers.SGD(lr))

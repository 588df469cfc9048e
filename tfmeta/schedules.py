"""Learning-rate schedules used by the papers."""

import keras


def linear_annealing(initial_learning_rate, steps, final_learning_rate=0.0):
    """Outer step size annealed linearly to ``final_learning_rate`` over
    ``steps`` meta-steps (Reptile, section 5: "we linearly annealed the outer
    step size to 0"). A Keras schedule: pass it to any Keras optimizer.

    Args:
      initial_learning_rate: the outer step size at meta-step 0.
      steps: meta-steps over which it anneals, >= 1.
      final_learning_rate: the step size from meta-step ``steps`` on
        (default 0.0).
    """
    if not steps >= 1:
        raise ValueError(f"steps must be at least 1, got {steps!r}.")
    return keras.optimizers.schedules.PolynomialDecay(
        initial_learning_rate, decay_steps=steps,
        end_learning_rate=final_learning_rate, power=1.0)

"""Task families: each yields ``tf.data`` datasets of task batches.

``pendulum`` and ``ant_legs`` need MuJoCo (the ``mujoco`` extra) only when
they build tasks.
"""

from tfmeta.tasks import (ant_legs, cos_sin, fewshot, maze, omniglot,
                          omniglot_fewshot, pendulum, pipeline, sine, surfaces)

__all__ = ["ant_legs", "cos_sin", "fewshot", "maze", "omniglot", "omniglot_fewshot",
           "pendulum", "pipeline", "sine", "surfaces"]

"""Task families: each yields ``tf.data`` datasets of task batches.

``pendulum`` needs MuJoCo (the ``mujoco`` extra) only when it builds tasks.
"""

from tfmeta.tasks import (cos_sin, fewshot, maze, omniglot, omniglot_fewshot,
                          pendulum, sine, surfaces)

__all__ = ["cos_sin", "fewshot", "maze", "omniglot", "omniglot_fewshot",
           "pendulum", "sine", "surfaces"]

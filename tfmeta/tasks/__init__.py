"""Task families: each yields ``tf.data`` datasets of task batches.

``pendulum`` (MuJoCo, the ``mujoco`` extra) is imported on demand:
``from tfmeta.tasks import pendulum``.
"""

from tfmeta.tasks import cos_sin, maze, omniglot, sine, surfaces

__all__ = ["cos_sin", "maze", "omniglot", "sine", "surfaces"]

"""Task families: each yields ``tf.data`` datasets of task batches."""

from tfmeta.tasks import cos_sin, maze, omniglot, sine, surfaces

__all__ = ["cos_sin", "maze", "omniglot", "sine", "surfaces"]

"""Task families: each yields ``tf.data`` datasets of task batches."""

from tfmeta.tasks import sine, surfaces

__all__ = ["sine", "surfaces"]

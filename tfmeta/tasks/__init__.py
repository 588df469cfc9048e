"""Task families: each yields ``tf.data`` datasets of task batches."""

from tfmeta.tasks import omniglot, sine, surfaces

__all__ = ["omniglot", "sine", "surfaces"]

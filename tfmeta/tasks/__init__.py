"""Task families: each yields ``tf.data`` datasets of task batches."""

from tfmeta.tasks import omniglot, sine

__all__ = ["omniglot", "sine"]

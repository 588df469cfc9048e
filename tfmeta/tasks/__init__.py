"""Task families: each yields ``tf.data`` datasets of task batches."""

from tfmeta.tasks import fewshot, omniglot, omniglot_fewshot, sine, surfaces

__all__ = ["fewshot", "omniglot", "omniglot_fewshot", "sine", "surfaces"]

"""Errors raised by tfmeta with messages that name the problem.

The library's error classes live here (one home); the modules that raise
them re-export them under their old names.
"""


class NonFiniteLossError(FloatingPointError):
    """Meta-training produced a NaN or infinite loss or meta-gradient.

    Raised by ``fit`` after training has stopped. The meta-step that produced
    the non-finite value was not applied, so the model holds the weights of the
    last finite meta-step (WarpGrad's offline mode restores the weights from
    before the meta-step if any of its replay updates was not finite).

    Args:
      message: what was not finite, and where.
      history: the Keras ``History`` of the run (default ``None``), kept as
        ``.history``.
      step: the meta-step (optimizer iteration) that was not applied
        (default ``None``), kept as ``.step``.
    """

    def __init__(self, message, history=None, step=None):
        super().__init__(message)
        self.history = history
        self.step = step


class ExportError(ValueError):
    """An export directory is missing, incomplete or corrupt."""


class OmniglotDataError(ValueError):
    """An Omniglot archive is unreadable (truncated, corrupt or mis-laid)."""


class UsageError(ValueError):
    """Bad input on the command line or in a config file (exit status 2)."""


class MultiCVDataError(ValueError):
    """A Multi-CV data file is unreadable (truncated, corrupt or mis-laid)."""

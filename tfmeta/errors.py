"""Errors raised by tfmeta with messages that name the problem."""


class NonFiniteLossError(FloatingPointError):
    """Meta-training produced a NaN or infinite loss or meta-gradient.

    Raised by ``fit`` after training has stopped. The meta-step that produced
    the non-finite value was not applied, so the model holds the weights of the
    last finite meta-step. ``history`` is the Keras ``History`` of the run.
    """

    def __init__(self, message, history=None, step=None):
        super().__init__(message)
        self.history = history
        self.step = step


class UsageError(ValueError):
    """Bad input on the command line or in a config file (exit status 2)."""

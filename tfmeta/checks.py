"""Argument checks shared by the library: one validator per kind of value.

Each raises ``ValueError`` with a message that names the argument and the
value it got.
"""

import numbers

import numpy as np


def positive_int(name, value, allow_none=False):
    """``value`` as a Python int >= 1 (``None`` passes with ``allow_none``).

    Booleans and non-integral numbers (2.7) are refused.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def positive_number(name, value):
    """``value`` as a finite Python float > 0 (booleans refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}.")
    return float(value)

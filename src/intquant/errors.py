"""The exceptions intquant raises, in one place.

Every error is an :class:`IntquantError`. Where Concrete ML 1.7.0 raises ``AssertionError``
(invalid option combinations, a wrong dtype, missing parameters), intquant's error is also an
``AssertionError`` so that code written for the reference still catches it, and also a
``ValueError`` or ``TypeError`` as fits the problem.
"""

from __future__ import annotations

__all__ = [
    "IntquantError",
    "InvalidValueError",
    "InvalidTypeError",
    "InvalidOptionsError",
    "InvalidDtypeError",
    "MissingParameterError",
    "SerializationError",
    "MissingDependencyError",
]


class IntquantError(Exception):
    """Base class of every error raised by intquant."""


class InvalidValueError(IntquantError, ValueError):
    """An argument has the right type but an unusable value (NaN, empty, out of range)."""


class InvalidTypeError(IntquantError, TypeError):
    """An argument has the wrong type."""


class InvalidOptionsError(IntquantError, AssertionError, ValueError):
    """Quantization options that cannot go together (the reference asserts on these)."""


class InvalidDtypeError(IntquantError, AssertionError, TypeError):
    """An array has a dtype the operation does not accept (the reference asserts on these)."""


class MissingParameterError(IntquantError, AssertionError, ValueError):
    """A statistic or parameter the operation needs has not been set or computed yet."""


class SerializationError(IntquantError, ValueError):
    """Serialized text that intquant does not accept; nothing was imported or unpickled."""


class MissingDependencyError(IntquantError, ImportError):
    """An optional dependency of the feature in use is not installed; the message names the
    extra to install (``pip install "intquant[torch]"``, ``[onnx]``, ``[dask]``, ``[demo]``)."""

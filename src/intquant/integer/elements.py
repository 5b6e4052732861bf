"""The parameter-free elements of an integer network: ReLU and Flatten on codes.

* :class:`IntegerReLU` -- ``y = max(q, zp)``: the code of ``max(x, 0)`` for codes ``q`` of zero
  point ``zp`` (the code of 0.0), exact.
* :class:`IntegerFlatten` -- ``(N, d1, d2, ...) -> (N, d1*d2*...)`` in C order.
"""

from __future__ import annotations

from typing import Any

import numpy

from intquant._core.checks import as_real_array, check_int, is_integer
from intquant._core.codec import JSONSerializable
from intquant.errors import InvalidDtypeError, InvalidValueError, SerializationError

__all__ = ["IntegerFlatten", "IntegerReLU"]

_INT64 = numpy.iinfo(numpy.int64)


def _integer_codes(codes: Any, owner: str) -> numpy.ndarray:
    array = numpy.asarray(as_real_array(codes, f"{owner} input codes"))
    if array.dtype.kind not in "iu":
        raise InvalidDtypeError(
            f"{owner} input codes must be integers; got dtype {array.dtype} with shape {array.shape}."
        )
    return array if array.dtype == numpy.int64 else array.astype(numpy.int64)


class IntegerReLU(JSONSerializable, versioned_tag="intquant.IntegerReLU", format_version=1):
    """ReLU on codes: ``y = max(q, zero_point)`` (int64).

    Parameters
    ----------
    zero_point : int
        The zero point of the codes (that of the quantizer producing them).

    Examples
    --------
    >>> IntegerReLU(3)(numpy.array([0, 3, 7])).tolist()
    [3, 3, 7]
    """

    def __init__(self, zero_point: int) -> None:
        self._zero_point = check_int(
            "zero_point", zero_point, minimum=int(_INT64.min), maximum=int(_INT64.max)
        )

    @property
    def zero_point(self) -> int:
        return self._zero_point

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The input shape."""
        return tuple(shape)

    def __call__(self, codes: Any) -> numpy.ndarray:
        """``max(codes, zero_point)`` as int64 (a new array)."""
        return numpy.maximum(_integer_codes(codes, "IntegerReLU"), self._zero_point)

    def __repr__(self) -> str:
        return f"IntegerReLU(zero_point={self._zero_point})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IntegerReLU):
            return NotImplemented
        return self._zero_point == other._zero_point

    __hash__ = None  # type: ignore[assignment]

    def dump_dict(self) -> dict[str, Any]:
        return {"zero_point": self._zero_point}

    @staticmethod
    def load_dict(metadata: dict[str, Any], format_version: int = 1) -> IntegerReLU:
        """Rebuild from ``{"zero_point": int}``.

        Raises
        ------
        SerializationError
            For other keys, or a zero point that is not an int.
        """
        if not isinstance(metadata, dict) or set(metadata) != {"zero_point"}:
            raise SerializationError(f"IntegerReLU fields must be exactly zero_point; got {metadata!r}.")
        value = metadata["zero_point"]
        if not is_integer(value):
            raise SerializationError(
                f"IntegerReLU field 'zero_point' must be an int; got {value!r} of type "
                f"{type(value).__name__}."
            )
        return IntegerReLU(int(value))


class IntegerFlatten(JSONSerializable, versioned_tag="intquant.IntegerFlatten", format_version=1):
    """Flatten codes ``(N, d1, d2, ...)`` to ``(N, d1*d2*...)`` in C order.

    Examples
    --------
    >>> IntegerFlatten()(numpy.zeros((2, 3, 4, 5), dtype=numpy.int64)).shape
    (2, 60)
    """

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(N, prod(rest))``; needs a batch axis."""
        if len(shape) < 1:
            raise InvalidValueError("IntegerFlatten needs codes with a batch axis; got a 0-d value.")
        return (shape[0], int(numpy.prod(shape[1:], dtype=numpy.int64)))

    def __call__(self, codes: Any) -> numpy.ndarray:
        """The codes reshaped (int64; a view when they are int64 already)."""
        array = _integer_codes(codes, "IntegerFlatten")
        return array.reshape(self.output_shape(array.shape))

    def __repr__(self) -> str:
        return "IntegerFlatten()"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IntegerFlatten):
            return NotImplemented
        return True

    __hash__ = None  # type: ignore[assignment]

    def dump_dict(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def load_dict(metadata: dict[str, Any], format_version: int = 1) -> IntegerFlatten:
        """Rebuild from ``{}``.

        Raises
        ------
        SerializationError
            For any field.
        """
        if metadata != {}:
            raise SerializationError(f"IntegerFlatten has no fields; got {metadata!r}.")
        return IntegerFlatten()

"""Counter-based uniform noise: ``u`` as a pure function of (seed, element index).

Stochastic rounding (``floor(x + u)``) draws ``u`` from :class:`CounterNoise`: the noise of an
element depends only on the seed and on the element's C-order flat index in the *whole* array
being quantized, never on how the array is split into calls, chunks or blocks, or on the backend.
The same seed gives the same codes quantizing at once, by chunks (dask, the command line) or with
numba, and successive calls give the same codes for the same values.

The formula, all arithmetic on uint64 modulo ``2**64`` (SplitMix64's increment and finalizer)::

    G = 0x9E3779B97F4A7C15
    mix(z) = z3 where  z1 = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
                       z2 = (z1 ^ (z1 >> 27)) * 0x94D049BB133111EB
                       z3 = z2 ^ (z2 >> 31)
    key    = mix(seed + G)                           (seed taken modulo 2**64)
    u(seed, i) = (mix(key + (i + 1) * G) >> 11) * 2**-53

``u`` is one of the ``2**53`` doubles ``k / 2**53`` in ``[0, 1)``. Element ``(j0, j1, ...)`` of a
region at ``origin`` in a whole array of shape ``whole`` has the index
``i = sum((origin[k] + j[k]) * stride[k])`` with the C-order element strides of ``whole``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy

from intquant.errors import InvalidValueError

__all__ = ["CounterNoise", "counter_uniform", "fresh_seed"]

_U64 = numpy.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_MIX1 = _U64(0xBF58476D1CE4E5B9)
_MIX2 = _U64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = _U64(30), _U64(27), _U64(31), _U64(11)
_ONE = _U64(1)
_UNIT = numpy.float64(2.0**-53)
_MASK = (1 << 64) - 1


def _mix(z: numpy.ndarray) -> numpy.ndarray:
    """SplitMix64's finalizer on a uint64 array, in place (multiplications wrap around)."""
    z ^= z >> _S30
    z *= _MIX1
    z ^= z >> _S27
    z *= _MIX2
    z ^= z >> _S31
    return z


def _key(seed: int) -> numpy.uint64:
    with numpy.errstate(over="ignore"):
        return _mix(numpy.array([(seed + 0x9E3779B97F4A7C15) & _MASK], dtype=_U64))[0]


def counter_uniform(seed: int, indices: Any) -> numpy.ndarray:
    """``u(seed, i)`` in ``[0, 1)`` (float64) for each flat index in ``indices`` (uint64-able),
    with the shape of ``indices``; ``seed`` is taken modulo ``2**64``."""
    z = numpy.array(indices, dtype=_U64)  # a copy: updated in place
    with numpy.errstate(over="ignore"):
        z += _ONE
        z *= _GOLDEN
        z += _key(int(seed) & _MASK)
        _mix(z)
    z >>= _S11
    return numpy.multiply(z, _UNIT, dtype=numpy.float64)  # exact: below 2**53, times a power of 2


def fresh_seed() -> int:
    """A random 64-bit seed from the operating system's entropy."""
    return int(numpy.random.SeedSequence().generate_state(1, numpy.uint64)[0])


@dataclass(frozen=True)
class CounterNoise:
    """The noise of stochastic rounding for one seed, over the whole array or one region of it.

    Without a region, the values rounded are the whole array (element ``j`` has its own C-order
    flat index). :meth:`region` gives the noise of the part at ``origin`` of a whole array of
    shape ``whole``: executors of chunks (dask, the command line) pass their chunk's place.
    """

    seed: int
    origin: Optional[tuple[int, ...]] = None
    whole: Optional[tuple[int, ...]] = None

    def region(self, origin: tuple[int, ...], whole: tuple[int, ...]) -> CounterNoise:
        """The noise of the region starting at ``origin`` of a whole array of shape ``whole``
        (the same seed; any region this noise had is replaced)."""
        origin, whole = tuple(int(o) for o in origin), tuple(int(n) for n in whole)
        if len(origin) != len(whole) or any(o < 0 or o > n for o, n in zip(origin, whole, strict=False)):
            raise InvalidValueError(
                f"a region of stochastic-rounding noise needs one offset per dimension within the "
                f"whole array; got origin {origin} for a whole array of shape {whole}."
            )
        return CounterNoise(self.seed, origin, whole)

    def draw(self, shape: tuple[int, ...]) -> numpy.ndarray:
        """``u`` for every element of values of ``shape`` (float64 in ``[0, 1)``).

        Raises
        ------
        InvalidValueError
            If ``shape`` does not fit within the whole array from the region's origin.
        """
        shape = tuple(int(n) for n in shape)
        if self.origin is None or self.whole is None:
            return counter_uniform(self.seed, numpy.arange(math.prod(shape), dtype=_U64).reshape(shape))
        if len(shape) != len(self.whole) or any(
            o + n > whole for o, n, whole in zip(self.origin, shape, self.whole, strict=True)
        ):
            raise InvalidValueError(
                f"values of shape {shape} do not fit at {self.origin} in a whole array of shape "
                f"{self.whole}: the noise region must hold them."
            )
        strides = [math.prod(self.whole[k + 1 :]) for k in range(len(shape))]
        indices = numpy.zeros(shape, dtype=_U64)
        for k, (start, size, stride) in enumerate(zip(self.origin, shape, strides, strict=True)):
            along = (numpy.arange(start, start + size, dtype=_U64) * _U64(stride)).reshape(
                (size,) + (1,) * (len(shape) - k - 1)
            )
            indices += along  # broadcast over the leading dimensions
        return counter_uniform(self.seed, indices)

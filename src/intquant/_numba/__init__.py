"""Bottom layer: compiled one-pass loops (numba, optional) and the dispatcher that decides when
to use them. Nothing here knows of quantizers, options or JSON; ``import intquant`` does not
import numba (``dispatch`` loads ``loops`` on first use)."""

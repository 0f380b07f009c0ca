"""Fused numba kernels behind the NumPy fast paths (used when numba imports).

Each kernel makes one pass over its inputs, in parallel over rows, and
computes the portable algorithm's value with float64 sums before rounding it
once to the input dtype.  The kernels are compiled on first use and
cached on disk (``cache=True``).  ``fastmath`` stays off: no reassociation,
no assumptions about infinities or nan, so special values follow IEEE
arithmetic as in the portable code.  A kernel that meets a case it does not
handle the portable way (a squared norm that is zero, tiny, not finite)
says so, and the caller falls back to the NumPy kernels.
"""

from __future__ import annotations

import math
import threading

import numba
import numpy as np

_OPTS = dict(parallel=True, cache=True, fastmath=False, nogil=True)

# numba's fallback threading layer ("workqueue", where no OpenMP or TBB is
# found) aborts on parallel kernels launched from two threads at once.
_launch = threading.Lock()

# ------------------------------------------------------------------------- rows


@numba.njit(**_OPTS)
def _cosine(a, b, floor, low, out):
    """Per-row unscaled cosine (float64 sums); returns False when some
    squared norm is not finite or below ``low`` (scaling needed)."""
    n, c = a.shape
    bad = np.zeros(n, np.bool_)
    divisor = floor if floor > 0.0 else 1.0
    for r in numba.prange(n):
        ra = a[r]
        rb = b[r]
        d0 = 0.0
        d1 = 0.0
        p0 = 0.0
        p1 = 0.0
        q0 = 0.0
        q1 = 0.0
        j = 0
        while j + 2 <= c:
            u0 = np.float64(ra[j])
            u1 = np.float64(ra[j + 1])
            v0 = np.float64(rb[j])
            v1 = np.float64(rb[j + 1])
            d0 += u0 * v0
            d1 += u1 * v1
            p0 += u0 * u0
            p1 += u1 * u1
            q0 += v0 * v0
            q1 += v1 * v1
            j += 2
        if j < c:
            u0 = np.float64(ra[j])
            v0 = np.float64(rb[j])
            d0 += u0 * v0
            p0 += u0 * u0
            q0 += v0 * v0
        dot = d0 + d1
        sa = p0 + p1
        sb = q0 + q1
        if not (low <= sa <= 1.7976931348623157e308 and low <= sb <= 1.7976931348623157e308):
            bad[r] = True
            continue
        norms = math.sqrt(sa) * math.sqrt(sb)
        out[r] = dot / norms if norms >= floor else dot / divisor
    for r in range(n):
        if bad[r]:
            return False
    return True


def cosine(a, b, floor):
    """Per-row cosine of two (rows, c) arrays, or None."""
    n, c = a.shape
    out = np.empty(n, a.dtype)
    low = float(np.finfo(np.float64).tiny) * c
    with _launch:
        done = _cosine(a, b, float(floor), low, out)
    if not done:
        return None
    return out

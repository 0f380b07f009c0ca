"""Fast paths for NumPy arrays: the portable algorithms, a cache-sized block
at a time, on a few reused buffers, in parallel threads.

The portable code runs each operation over the whole array, so a loss with
ten operations makes ten passes through main memory and allocates several
array-sized temporaries.  Here every block of rows (or of elements) goes
through all the operations while it sits in the CPU cache, with ``out=``
buffers owned by the block, and the blocks are shared among threads (NumPy's
ufuncs release the GIL).  The operations and their order are the portable
ones, with two exceptions that keep the same accuracy:

* ``log1p`` of float32 has no vectorized NumPy loop; it is computed as
  ``log(w) * u / (w - 1)`` with ``w = 1 + u`` (exact ``u`` where ``w == 1``),
  which is accurate to a few units in the last place, tiny arguments included.
* means and sums add the per-block sums in float64.

Inputs are never written to.  Anything unusual (non-contiguous arrays, empty
arrays, other dtypes) goes back to the portable code by returning
``NotImplemented``.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

# Fused numba kernels when numba is installed (cosine similarity: one pass per
# row for the dot product and both norms); ANYLOSS_NO_NUMBA=1 turns them off.
_nb: Any = None
if os.environ.get("ANYLOSS_NO_NUMBA", "") in ("", "0"):
    try:
        from . import _numba as _nb
    except ImportError:  # numba is an optional dependency
        _nb = None

# elements per block: a few buffers of this size stay in a core's L2 cache
BLOCK = 1 << 16
# below this many elements a single thread does the work
PARALLEL_MIN = 1 << 20

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _threads() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_threads(), thread_name_prefix="anyloss")
        return _pool


def _spread(task: Callable[[int, int], Any], n: int, per_item: int) -> list[Any]:
    """Run ``task(start, stop)`` over ``range(n)`` in a few contiguous pieces,
    on threads when the work (``n * per_item`` elements) is large."""
    threads = _threads()
    if n * per_item < PARALLEL_MIN or threads == 1 or n < 2:
        return [task(0, n)]
    pieces = min(threads, n)
    bounds = [n * i // pieces for i in range(pieces + 1)]
    futures = [_executor().submit(task, bounds[i], bounds[i + 1]) for i in range(pieces)]
    return [f.result() for f in futures]


def _supported(*arrays: Any) -> bool:
    return all(
        a is None
        or (
            isinstance(a, np.ndarray)
            and a.flags.c_contiguous
            and a.size > 0
            and a.dtype in (np.float32, np.float64)
        )
        for a in arrays
    )


def _finish(loss: np.ndarray | None, total: float, count: int, reduction: str, out_dtype: Any) -> np.ndarray:
    if reduction == "none":
        assert loss is not None
        return loss if loss.dtype == out_dtype else loss.astype(out_dtype)
    value = total / count if reduction == "mean" else total
    return np.asarray(value, dtype=out_dtype)


def _log1p_inplace(u: np.ndarray, w: np.ndarray, d: np.ndarray) -> None:
    """``u <- log1p(u)`` for ``0 <= u <= 1`` with vectorized operations only:
    ``u * log(w) / (w - 1)`` with ``w = 1 + u`` (``w`` and ``d`` are scratch
    buffers).  Where ``w == 1`` the quotient is ``0 / 0``; adding the
    smallest normal number to both its terms makes it ``1`` there (so the
    result is ``u``) and changes no other quotient, whose terms are at least
    the float's epsilon."""
    tiny = float(np.finfo(u.dtype).tiny)
    np.add(u, 1.0, out=w)
    np.subtract(w, 1.0, out=d)  # exact
    np.add(d, tiny, out=d)
    np.log(w, out=w)
    np.add(w, tiny, out=w)
    np.divide(w, d, out=w)
    np.multiply(u, w, out=u)


def _elementwise(
    kernel: Callable[..., None],
    arrays: tuple[np.ndarray, ...],
    nbuf: int,
    reduction: str,
    out_dtype: Any,
    *params: Any,
) -> np.ndarray:
    """Run ``kernel(out, bufs, *blocks, *params)`` block by block; ``out`` is
    the block of the unreduced loss (a slice of the result, or a buffer when
    it is reduced)."""
    flat = [a.reshape(-1) for a in arrays]
    n = flat[0].size
    dtype = flat[0].dtype
    loss = np.empty(arrays[0].shape, dtype) if reduction == "none" else None
    loss_flat = None if loss is None else loss.reshape(-1)

    def task(start: int, stop: int) -> float:
        size = min(BLOCK, stop - start)
        bufs = [np.empty(size, dtype) for _ in range(nbuf)]
        mask = np.empty(size, np.bool_)
        own = np.empty(size, dtype) if loss_flat is None else None
        total = 0.0
        for i in range(start, stop, size):
            j = min(i + size, stop)
            m = j - i
            out = loss_flat[i:j] if loss_flat is not None else own[:m]  # type: ignore[index]
            kernel(out, [b[:m] for b in bufs], mask[:m], *(f[i:j] for f in flat), *params)
            if loss_flat is None:
                total += float(np.add.reduce(out))
        return total

    total = math.fsum(_spread(task, n, 1))
    return _finish(loss, total, n, reduction, out_dtype)


def _reduce_vector(loss: np.ndarray, reduction: str, out_dtype: Any) -> np.ndarray:
    """The portable reduction of a small unreduced loss (same operations)."""
    if reduction != "none":
        loss = np.asarray(np.mean(loss) if reduction == "mean" else np.sum(loss))
    return loss if loss.dtype == out_dtype else loss.astype(out_dtype)


# ------------------------------------------------------------------ elementwise


def _mse_kernel(out, bufs, mask, x, y):
    np.subtract(x, y, out=out)
    np.square(out, out=out)


def _l1_kernel(out, bufs, mask, x, y):
    np.subtract(x, y, out=out)
    np.abs(out, out=out)


def _huber_kernel(out, bufs, mask, x, y, delta):
    (q,) = bufs
    np.subtract(x, y, out=out)
    np.abs(out, out=out)  # |error|
    np.minimum(out, delta, out=q)  # its quadratic part
    np.subtract(out, q, out=out)
    np.multiply(out, delta, out=out)
    np.square(q, out=q)
    np.multiply(q, 0.5, out=q)
    np.add(q, out, out=out)


def _smooth_l1_kernel(out, bufs, mask, x, y, beta):
    q, r = bufs
    np.subtract(x, y, out=out)
    np.abs(out, out=out)
    np.less(out, beta, out=mask)
    np.multiply(out, 0.5, out=q)
    np.divide(out, beta, out=r)
    np.multiply(q, r, out=q)
    np.subtract(out, 0.5 * beta, out=out)
    np.copyto(out, q, where=mask)


def _bce_kernel(out, bufs, mask, x, t, *weights):
    u, w, d = bufs
    np.abs(x, out=u)
    np.negative(u, out=u)
    # Only an infinite (or nan) logit can make (1 - t) x or -t x a 0 * inf.
    special = not np.minimum.reduce(u) > -np.inf
    np.exp(u, out=u)
    _log1p_inplace(u, w, d)  # log(1 + exp(-|x|))
    np.greater_equal(x, 0.0, out=mask)
    np.subtract(mask, t, out=out)  # 1 - t where x >= 0, -t elsewhere
    if special:
        np.not_equal(out, 0.0, out=mask)
        np.multiply(out, x, out=out, where=mask)  # 0 * x = 0, infinite x included
    else:
        np.multiply(out, x, out=out)
    np.add(out, u, out=out)
    if weights:
        np.multiply(out, weights[0], out=out)


def mse_loss(xp, x, y, reduction, out_dtype):
    if not _supported(x, y):
        return NotImplemented
    return _elementwise(_mse_kernel, (x, y), 0, reduction, out_dtype)


def l1_loss(xp, x, y, reduction, out_dtype):
    if not _supported(x, y):
        return NotImplemented
    return _elementwise(_l1_kernel, (x, y), 0, reduction, out_dtype)


def huber_loss(xp, x, y, delta, reduction, out_dtype):
    if not _supported(x, y):
        return NotImplemented
    return _elementwise(_huber_kernel, (x, y), 1, reduction, out_dtype, delta)


def smooth_l1_loss(xp, x, y, beta, reduction, out_dtype):
    if beta == 0 or not _supported(x, y):
        return NotImplemented
    return _elementwise(_smooth_l1_kernel, (x, y), 2, reduction, out_dtype, beta)


def binary_cross_entropy(xp, x, t, weights, with_logits, reduction, out_dtype):
    if not with_logits or not _supported(x, t, weights):
        return NotImplemented
    if weights is not None and weights.dtype != x.dtype:
        return NotImplemented
    arrays = (x, t) if weights is None else (x, t, weights)
    return _elementwise(_bce_kernel, arrays, 3, reduction, out_dtype)


# ------------------------------------------------------------------------- rows


def _rows(x: np.ndarray, axis: int) -> np.ndarray | None:
    """``x`` as (rows, length of ``axis``) without a copy, when ``axis`` is last."""
    if axis != x.ndim - 1:
        return None
    return x.reshape(-1, x.shape[-1])


def cross_entropy(xp, logits, targets, weights, axis, smoothing, probabilities, reduction, out_dtype, dtype):
    if probabilities or logits.dtype != dtype or not _supported(logits, weights):
        return NotImplemented
    if weights is not None and weights.dtype != dtype:
        return NotImplemented
    x = _rows(logits, axis)
    if x is None:
        return NotImplemented
    n, c = x.shape
    y = np.ascontiguousarray(targets).reshape(-1)
    w = None if weights is None else weights.reshape(-1)
    loss = np.empty(n, dtype)
    rows = max(1, BLOCK // c)

    def task(start: int, stop: int) -> None:
        size = min(rows, stop - start)
        z = np.empty((size, c), dtype)
        ones = np.ones(c, dtype)
        inverse = np.full(c, 1.0 / c, dtype)  # the mean as a sum of z / c: no overflow
        for i in range(start, stop, size):
            j = min(i + size, stop)
            zb, xb = z[: j - i], x[i:j]
            # The portable algorithm on one block of rows (see _shifted_logsumexp):
            # z = x - max, lse = log1p(sum(exp(z)) - 1) with the 1 of one maximum
            # left out of the sum instead of subtracted from it (exp(0) - 1 = 0
            # there; other maxima add their 1 in the sum).
            top = np.argmax(xb, axis=1)[:, None]
            np.subtract(xb, np.take_along_axis(xb, top, axis=1), out=zb)
            score = np.take_along_axis(zb, y[i:j, None].astype(np.intp, copy=False), axis=1)[:, 0]
            mean = zb @ inverse if smoothing > 0 else None
            np.exp(zb, out=zb)
            np.put_along_axis(zb, top, 0.0, axis=1)
            lse = np.log1p(zb @ ones)
            if smoothing > 0:
                out = lse - (1.0 - smoothing) * score - smoothing * mean
            else:
                out = lse - score
            if w is not None:
                out = out * w[i:j]
            loss[i:j] = out

    _spread(task, n, c)
    return _reduce_vector(loss.reshape(logits.shape[:-1]), reduction, out_dtype)


def _safe(x: np.ndarray) -> np.ndarray:
    return np.where(x == 0, np.ones_like(x), x)


# row length cut into chunks of this many for fused dot products
_CHUNK = 128


def _row_dot(x: np.ndarray, y: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """Row-wise dot products of two (rows, c) blocks.  With ``c`` a multiple
    of ``_CHUNK``: fused dot products of the chunks (no temporary), then the
    chunks' sums added pairwise, as accurate as NumPy's pairwise sum of the
    products; otherwise the products, then their pairwise sum."""
    rows, c = x.shape
    with np.errstate(over="ignore", under="ignore"):  # such rows go to the scaled code
        if c % _CHUNK == 0 and hasattr(np, "vecdot"):
            chunks = np.vecdot(x.reshape(rows, -1, _CHUNK), y.reshape(rows, -1, _CHUNK))
            return np.sum(chunks, axis=1)
        return np.sum(np.multiply(x, y, out=tmp), axis=1)


def cosine_rows(a2: np.ndarray, b2: np.ndarray, floor: float) -> tuple[np.ndarray, ...] | None:
    """Unscaled per-row cosine, above-eps mask and norms of two (rows, c)
    arrays, or None when some squared norm lies outside the range where the
    unscaled values are exact enough (see ``cosine_similarity_loss``)."""
    n, c = a2.shape
    info = np.finfo(a2.dtype)
    low, high = float(info.tiny) * c, float(info.max)
    if not low < high:
        return None
    tmp = np.empty((min(n, max(1, BLOCK // c)), c), a2.dtype)
    parts = []
    for i in range(0, n, tmp.shape[0]):
        j = min(i + tmp.shape[0], n)
        t = tmp[: j - i]
        parts.append((_row_dot(a2[i:j], b2[i:j], t), _row_dot(a2[i:j], a2[i:j], t), _row_dot(b2[i:j], b2[i:j], t)))
    dot, sa, sb = (np.concatenate(p) for p in zip(*parts))
    if not (low <= min(sa.min(), sb.min()) and max(sa.max(), sb.max()) <= high):
        return None
    na, nb = np.sqrt(sa), np.sqrt(sb)
    norms = na * nb
    above = norms >= floor
    loss = np.divide(dot, norms, out=dot, where=above)
    np.divide(loss, floor if floor > 0 else 1.0, out=loss, where=~above)
    return loss, above, na, nb


def cosine_similarity_loss(xp, a, b, axis, floor, reduction, out_dtype):
    if not _supported(a, b):
        return NotImplemented
    a2, b2 = _rows(a, axis), _rows(b, axis)
    if a2 is None or b2 is None:
        return NotImplemented
    if _nb is not None and a2.dtype == b2.dtype:
        rows_nb = _nb.cosine(a2, b2, floor)
        if rows_nb is not None:
            return _reduce_vector(rows_nb.reshape(a.shape[:-1]), reduction, out_dtype)
    n, c = a2.shape
    dtype = a2.dtype
    loss = np.empty(n, dtype)
    rows = max(1, BLOCK // c)
    root_floor = math.sqrt(floor)

    info = np.finfo(dtype)
    # Below this a squared norm may have lost accuracy to underflowing squares;
    # above the largest float it overflowed.  Rows of a block whose squared
    # norms all lie between need no scaling.
    low = float(info.tiny) * c
    high = float(info.max)
    divisor = floor if floor > 0 else 1.0

    def task(start: int, stop: int) -> None:
        size = min(rows, stop - start)
        ua_buf, ub_buf, t_buf = (np.empty((size, c), dtype) for _ in range(3))
        for i in range(start, stop, size):
            j = min(i + size, stop)
            ab, bb_, tmp = a2[i:j], b2[i:j], t_buf[: j - i]
            # unscaled: the dot product and the squared norms
            dot, sa, sb = _row_dot(ab, bb_, tmp), _row_dot(ab, ab, tmp), _row_dot(bb_, bb_, tmp)
            if low < high and low <= min(sa.min(), sb.min()) and max(sa.max(), sb.max()) <= high:
                norms = np.sqrt(sa)
                norms *= np.sqrt(sb)
                above = norms >= floor
                out = np.divide(dot, norms, out=dot, where=above)
                if not above.all():  # below eps: the plain dot product over eps
                    np.divide(out, divisor, out=out, where=~above)
                loss[i:j] = out
                continue
            ua, ub = ua_buf[: j - i], ub_buf[: j - i]
            # the portable algorithm (scaled) on one block of rows
            scale_a = np.max(np.abs(a2[i:j], out=tmp), axis=1, keepdims=True)
            scale_b = np.max(np.abs(b2[i:j], out=tmp), axis=1, keepdims=True)
            np.divide(a2[i:j], _safe(scale_a), out=ua)
            np.divide(b2[i:j], _safe(scale_b), out=ub)
            dot = np.sum(np.multiply(ua, ub, out=tmp), axis=1)
            norm_ua = np.sqrt(_safe(np.sum(np.square(ua, out=tmp), axis=1)))
            norm_ub = np.sqrt(_safe(np.sum(np.square(ub, out=tmp), axis=1)))
            root_scale = np.sqrt(scale_a[:, 0]) * np.sqrt(scale_b[:, 0])
            above = root_scale >= root_floor / np.sqrt(norm_ua * norm_ub)
            out = dot / (norm_ua * norm_ub)
            if not above.all():
                # rows below eps: the plain dot product over eps (rarely any)
                small = ~above
                below = np.sum(a2[i:j][small] * b2[i:j][small], axis=1) / (floor if floor > 0 else 1.0)
                out[small] = below
            loss[i:j] = out

    _spread(task, n, c)
    return _reduce_vector(loss.reshape(a.shape[:-1]), reduction, out_dtype)

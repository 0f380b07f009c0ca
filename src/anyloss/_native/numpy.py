"""Fast paths for NumPy arrays: the portable algorithms, a cache-sized block
at a time, on a few reused buffers, in parallel threads.

The portable code runs each operation over the whole array, so a loss with
ten operations makes ten passes through main memory and allocates several
array-sized temporaries.  Here every block of rows (or of 64 Ki elements)
goes through all the operations while it sits in the CPU cache, with
``out=`` buffers owned by the block, and the blocks are shared among threads
(NumPy's ufuncs release the GIL; pieces are handed out as threads come free,
so a thread slowed by another process holds up one piece only).  The
operations and their order are the portable ones, except where noted:

* ``log1p`` of float32 has no vectorized NumPy loop; it is computed as
  ``log(w) * u / (w - 1)`` with ``w = 1 + u`` (exact ``u`` where ``w == 1``),
  which is accurate to a few units in the last place, tiny arguments included.
* means and sums add the per-block sums in float64; sums of products (mse,
  log_cosh, smooth_l1, gaussian_nll, kl_div, triplet) are fused dot products
  of 128- or 256-element pieces, added pairwise: the products of the portable
  code, summed as accurately as NumPy's pairwise sum.
* ``np.where`` and masked copies cost 5 to 13 ns per element with a random
  mask (more than a whole loss), so two-branch losses blend the branches
  arithmetically as ``m A + (1 - m) B`` with ``m = (condition)`` in {0, 1},
  each branch fed only arguments where it is finite: a product with a 0 is
  then an exact 0 and the blend is the selected branch exactly.

Per loss:

* ``hinge_loss``, ``margin_ranking_loss``: the portable operations, bit for
  bit (``max(margin - y (x1 - x2), 0)``; with margin 0 a mean or sum takes
  ``-sum(min(y (x1 - x2), 0))``, the same terms).  ``maximum`` against a
  block of zeros: NumPy's loop with a scalar operand is 3x slower.
* ``smooth_l1_loss``: the blend above, with ``A = (0.5 q)(q / beta)``,
  ``q = min(d, beta)`` (equal to the portable ``(0.5 d) min(d / beta, 1)``
  where it is used) and ``B = d - 0.5 beta``.
* ``gaussian_nll_loss``: the portable terms; a mean or sum adds
  ``0.5 log v`` and ``(r / 2)(r / v)`` separately (halving is exact).
* ``log_cosh_loss``: both portable branches blended; NumPy's float32 ``sinh``
  and ``log1p`` cost 40 and 19 ns per element (``exp`` 2.4), so the small
  branch ``log1p(2 sinh(a/2)**2) = log cosh a`` (``|a| < 1``) is ``s Q(s)``
  with ``s = a**2`` and the ``log1p(exp(-2|a|))`` of the large branch is
  ``q R(q)``, ``q = exp(-2 max(|a|, 1))``: polynomials fitted at Chebyshev
  points with mpmath (errors below a tenth of an ulp, see ``_LOG_COSH_Q``),
  evaluated by Horner's rule in the input dtype.  Within 1.5 eps of mpmath's
  log cosh from subnormal errors up (the portable code: 2.6 eps), ties at
  ``|a| = 1``, infinities and nan as the portable code.
* ``kl_div_loss``: per block of rows, ``exp(t)`` and ``t - x``, then the row
  sums as fused dot products, without the ``0 * inf`` guard: the guard can
  only change a product that is nan unguarded, so rows whose sum is nan (and
  only those) are summed again with it.  Along a middle axis: (classes,
  columns) slabs, summed along the classes as NumPy does.
* ``triplet_loss`` (last axis): for ``p = 2`` first the unscaled
  ``sqrt(sum(d**2) + eps)``; where every row's ``sum + eps`` of a block lies
  in ``[c * tiny, max]`` (no square overflowed; the underflowed ones moved
  the sum by under an ulp) it equals the scaled value to a few ulps, else
  that block runs the portable scaled algorithm, as do ``p != 2`` (``p = 1``:
  the plain sum).

Measured (``python benchmarks/bench.py --libraries numpy --losses ...
--repeat 3 --portable --out '' --plot ''``, 2-core AMD EPYC shared with other
jobs at a load of 3 to 4, so ratios moved by up to 2x between runs) on the
benchmark's float32 inputs, ours / the ``jax.jit`` floor, one run before ->
the range over three runs after: log_cosh 10.5 -> 1.4-1.8, kl_div 7.4 ->
2.5-3.6, triplet 7.9 -> 1.7-1.8, gaussian_nll 6.0 -> 1.9-3.0, hinge 5.0 ->
1.5-2.8, margin_ranking 6.1 -> 1.1-2.7, smooth_l1 2.0 -> 0.8-1.4, l1 2.6 ->
1.2-2.5, mse 1.3 -> 1.2-2.9 (its kernel alone: 13.5 ms against 16 ms for
the square-then-sum one, single thread).

What bounds the misses, per element in one thread (CPU time, 64 Ki-element
blocks in cache): NumPy's float32 ``exp`` costs 2.4 ns and ``log`` 1.8 to
2.7 ns, against 1.4 to 2 ns for the floor's entire kl_div or gaussian_nll
element (CPU time of its call over all threads, same run).  kl_div is 2.7 ns
per element, 2.4 of it ``exp``; gaussian_nll is 4.2 ns, about 2.5 of it
``log`` and 0.5 the portable code's check that ``vars >= 0`` (then a min
and a max over the array before the fast path ran; now the min only); log_cosh about 9 ns (``exp``
and 30 vector operations) against the floor's 7 ns.  The elementwise losses without transcendental functions
(hinge 1.3 ns, mse 0.8 ns) are bound by memory traffic and NumPy's per-call
overhead; on a busy machine the two threads rarely run at once.

Inputs are never written to.  Anything unusual (non-contiguous arrays, empty
arrays, other dtypes, mixed dtypes) goes back to the portable code by
returning ``NotImplemented``.
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


# work is cut into this many pieces per thread, handed out as threads come
# free: a thread slowed down (by another process on its core) holds up the
# result by one piece, not by half of the work
PIECES_PER_THREAD = 4


def _spread(task: Callable[[int, int], Any], n: int, per_item: int) -> list[Any]:
    """Run ``task(start, stop)`` over ``range(n)`` in contiguous pieces, on
    threads (the calling one included) when the work (``n * per_item``
    elements) is large; the results in the order of the pieces."""
    threads = _threads()
    if n * per_item < PARALLEL_MIN or threads == 1 or n < 2:
        return [task(0, n)]
    pieces = min(n, threads * PIECES_PER_THREAD)
    bounds = [n * i // pieces for i in range(pieces + 1)]
    results: list[Any] = [None] * pieces
    lock = threading.Lock()
    following = iter(range(pieces))

    def work() -> None:
        while True:
            with lock:
                k = next(following, None)
            if k is None:
                return
            results[k] = task(bounds[k], bounds[k + 1])

    futures = [_executor().submit(work) for _ in range(threads - 1)]
    try:
        work()
    finally:
        for f in futures:
            # one that has not started finds no piece left: cancel it rather
            # than wait for a free pool thread
            if not f.cancel():
                f.result()
    return results


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
    kernel: Callable[..., Any],
    arrays: tuple[np.ndarray, ...],
    nbuf: int,
    reduction: str,
    out_dtype: Any,
    *params: Any,
    block: int = BLOCK,
) -> np.ndarray:
    """Run ``kernel(out, bufs, mask, reduced, *blocks, *params)`` block by
    block; ``out`` is the block of the unreduced loss (a slice of the result,
    or a scratch buffer when ``reduced``).  When reduced, a kernel may return
    the block's sum itself (else the sum of ``out`` is taken)."""
    flat = [a.reshape(-1) for a in arrays]
    n = flat[0].size
    dtype = flat[0].dtype
    loss = np.empty(arrays[0].shape, dtype) if reduction == "none" else None
    loss_flat = None if loss is None else loss.reshape(-1)
    reduced = loss_flat is None

    def task(start: int, stop: int) -> float:
        size = min(block, stop - start)
        bufs = [np.empty(size, dtype) for _ in range(nbuf)]
        mask = np.empty(size, np.bool_)
        own = np.empty(size, dtype) if reduced else None
        total = 0.0
        for i in range(start, stop, size):
            j = min(i + size, stop)
            m = j - i
            out = own[:m] if own is not None else loss_flat[i:j]  # type: ignore[index]
            part = kernel(out, [b[:m] for b in bufs], mask[:m], reduced, *(f[i:j] for f in flat), *params)
            if reduced:
                total += float(np.add.reduce(out)) if part is None else part
        return total

    total = math.fsum(_spread(task, n, 1))
    return _finish(loss, total, n, reduction, out_dtype)


# length of the pieces whose fused dot products _dot adds
_DOT_CHUNK = 256


def _dot(u: np.ndarray, v: np.ndarray) -> float:
    """``sum(u * v)`` of two 1-d blocks: fused dot products of 256-element
    pieces (no temporary array), their sums then added in float64.  As
    accurate as NumPy's pairwise sum of the products; the products are the
    same (or, with a fused multiply-add, unrounded)."""
    n = u.size
    k = n - n % _DOT_CHUNK
    total = 0.0
    if k:
        parts = np.vecdot(u[:k].reshape(-1, _DOT_CHUNK), v[:k].reshape(-1, _DOT_CHUNK))
        total = float(np.add.reduce(parts, dtype=np.float64))
    if k < n:
        total += float(np.dot(u[k:], v[k:]))
    return total


_CONSTANTS: dict[tuple[float, Any], np.ndarray] = {}


def _constant(value: float, dtype: Any, size: int) -> np.ndarray:
    """A read-only array of ``size`` copies of ``value``:
    ``np.maximum(x, array)`` has a vectorized loop, ``np.maximum(x, scalar)``
    a slower one."""
    key = (value, np.dtype(dtype))
    array = _CONSTANTS.get(key)
    if array is None or array.size < size:
        array = np.full(max(size, BLOCK), value, dtype)
        array.flags.writeable = False
        _CONSTANTS[key] = array
    return array[:size]


def _reduce_vector(loss: np.ndarray, reduction: str, out_dtype: Any) -> np.ndarray:
    """The portable reduction of a small unreduced loss (same operations)."""
    if reduction != "none":
        loss = np.asarray(np.mean(loss) if reduction == "mean" else np.sum(loss))
    return loss if loss.dtype == out_dtype else loss.astype(out_dtype)


# ------------------------------------------------------------------ elementwise


def _mse_kernel(out, bufs, mask, reduced, x, y):
    np.subtract(x, y, out=out)
    if reduced:
        return _dot(out, out)
    np.square(out, out=out)
    return None


def _l1_kernel(out, bufs, mask, reduced, x, y):
    np.subtract(x, y, out=out)
    np.abs(out, out=out)


def _huber_kernel(out, bufs, mask, reduced, x, y, delta):
    (q,) = bufs
    np.subtract(x, y, out=out)
    np.abs(out, out=out)  # |error|
    np.minimum(out, delta, out=q)  # its quadratic part
    np.subtract(out, q, out=out)
    np.multiply(out, delta, out=out)
    np.square(q, out=q)
    np.multiply(q, 0.5, out=q)
    np.add(q, out, out=out)


def _smooth_l1_kernel(out, bufs, mask, reduced, x, y, beta):
    # The portable where(d < beta, (0.5 d) min(d / beta, 1), d - 0.5 beta) as
    # m A + (1 - m) B with m = (d < beta) in {0, 1}: a masked copy costs more
    # than the whole loss.  Each product with a 0 is an exact 0, as neither
    # branch is infinite where it is unused (A sees min(d, beta), which is d
    # where it is used; B is infinite only where d is, and there m = 0).
    m, a, r = bufs
    np.subtract(x, y, out=out)
    np.abs(out, out=out)  # d
    np.less(out, beta, out=m)
    np.minimum(out, _constant(beta, out.dtype, out.size), out=a)
    np.divide(a, beta, out=r)  # d / beta, at most 1 where used
    np.multiply(a, 0.5, out=a)
    np.multiply(a, r, out=a)  # A
    np.subtract(out, 0.5 * beta, out=out)  # B
    np.subtract(1.0, m, out=r)
    if reduced:
        return _dot(m, a) + _dot(r, out)
    np.multiply(out, r, out=out)
    np.multiply(a, m, out=a)
    np.add(out, a, out=out)
    return None


def _bce_kernel(out, bufs, mask, reduced, x, t, *weights):
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


def _hinge_kernel(out, bufs, mask, reduced, x, t):
    np.multiply(x, t, out=out)
    np.subtract(1.0, out, out=out)
    np.maximum(out, _constant(0.0, out.dtype, out.size), out=out)


def _margin_ranking_kernel(out, bufs, mask, reduced, x1, x2, y, margin):
    np.subtract(x1, x2, out=out)
    np.multiply(y, out, out=out)
    zeros = _constant(0.0, out.dtype, out.size)
    if reduced and margin == 0:  # max(0 - u, 0) = -min(u, 0): one pass fewer
        np.minimum(out, zeros, out=out)
        return -float(np.add.reduce(out))
    np.subtract(margin, out, out=out)
    np.maximum(out, zeros, out=out)
    return None


def _gaussian_nll_kernel(out, bufs, mask, reduced, x, y, v, full, floor):
    w, r = bufs
    np.maximum(v, _constant(floor, v.dtype, v.size), out=w)  # v = max(vars, eps)
    np.subtract(y, x, out=r)
    np.divide(r, w, out=out)  # r / v
    np.multiply(r, 0.5, out=r)  # r / 2
    np.log(w, out=w)
    if reduced:
        # The sums of 0.5 log v and of (r / 2)(r / v) apart: halving is exact.
        total = 0.5 * float(np.add.reduce(w)) + _dot(r, out)
        return total + out.size * _HALF_LOG_2PI if full else total
    np.multiply(r, out, out=out)
    np.multiply(w, 0.5, out=w)
    np.add(w, out, out=out)
    if full:
        np.add(out, _HALF_LOG_2PI, out=out)
    return None


_LOG2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

# log cosh(a) = s Q(s) with s = a**2 for 0 <= a <= 1, and log1p(q) = q R(q)
# for 0 <= q <= exp(-2): polynomials (highest degree first) fitted to these
# functions at Chebyshev points (mpmath, 40 digits; mpmath.chebyfit), with a
# largest error of 3.6e-9 (Q, degree 6, float32), 5.0e-18 (Q, degree 14,
# float64), 1.1e-8 (R, degree 4, float32) and 5.7e-18 (R, degree 10,
# float64): a tenth of an ulp of log cosh or less.
_LOG_COSH_Q = {
    np.dtype(np.float32): (
        8.605410201288882e-05, -0.0005546654952256772, 0.002075578429968007, -0.006709512068926296,
        0.022216355218102883, -0.08333297333913557, 0.4999999963398586,
    ),
    np.dtype(np.float64): (
        7.149426687319922e-09, -7.274045244955428e-08, 3.7585381118136593e-07, -1.3729456929291544e-06,
        4.187437739149353e-06, -1.1823332233363504e-05, 3.271939287579791e-05, -9.097002146219214e-05,
        0.0002565759865330968, -0.0007386022204321077, 0.0021869487752007918, -0.0067460317410084555,
        0.022222222222053067, -0.08333333333333108, 0.5,
    ),
}
_LOG1P_R = {
    np.dtype(np.float32): (
        0.1527626873236855, -0.24472727146130063, 0.3330851713257813, -0.4999958521220745, 0.9999999887987532,
    ),
    np.dtype(np.float64): (
        0.047411558351055566, -0.08772810334307986, 0.10902255928228051, -0.12477323238003318,
        0.1428411083012755, -0.1666659327590879, 0.19999997895273075, -0.24999999964663686,
        0.33333333333028264, -0.49999999999998973, 1.0,
    ),
}


def _times_polynomial(coefficients: tuple[float, ...], s: np.ndarray, acc: np.ndarray) -> None:
    """``acc <- s * P(s)`` (Horner's rule) for ``P`` with these coefficients."""
    np.multiply(s, coefficients[0], out=acc)
    for c in coefficients[1:]:
        np.add(acc, c, out=acc)
        np.multiply(acc, s, out=acc)


def _log_cosh_kernel(out, bufs, mask, reduced, x, y):
    # The portable branches, both evaluated on every element and blended as
    # m S + (1 - m) B, m = (|a| < 1), each branch fed only arguments where it
    # is finite (min(|a|, 1), max(|a|, 1)).  S = log1p(2 sinh(a/2)**2) is
    # log cosh(a) = s Q(s), s = a**2, and the log1p(exp(-2|a|)) of B is
    # q R(q): vectorized polynomials instead of NumPy's scalar sinh and log1p.
    m, b, p, q = bufs
    dtype = out.dtype
    ones = _constant(1.0, dtype, out.size)
    np.subtract(x, y, out=out)
    np.abs(out, out=out)  # |a|
    np.less(out, 1.0, out=m)
    np.maximum(out, ones, out=b)
    np.minimum(out, ones, out=out)
    np.square(out, out=out)  # s
    _times_polynomial(_LOG_COSH_Q[dtype], out, p)  # S
    np.multiply(b, -2.0, out=q)
    np.exp(q, out=q)
    _times_polynomial(_LOG1P_R[dtype], q, out)  # log1p(exp(-2 |a|))
    np.add(b, out, out=b)
    np.subtract(b, _LOG2, out=b)  # B
    np.subtract(1.0, m, out=q)
    np.multiply(p, m, out=out)
    np.multiply(b, q, out=b)
    np.add(out, b, out=out)


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
    return _elementwise(_smooth_l1_kernel, (x, y), 3, reduction, out_dtype, beta)


def binary_cross_entropy(xp, x, t, weights, with_logits, reduction, out_dtype):
    if not with_logits or not _supported(x, t, weights):
        return NotImplemented
    if weights is not None and weights.dtype != x.dtype:
        return NotImplemented
    arrays = (x, t) if weights is None else (x, t, weights)
    return _elementwise(_bce_kernel, arrays, 3, reduction, out_dtype)


def _same_dtype(*arrays: np.ndarray) -> bool:
    return all(a.dtype == arrays[0].dtype for a in arrays)


def hinge_loss(xp, x, t, reduction, out_dtype):
    if not _supported(x, t) or not _same_dtype(x, t):
        return NotImplemented
    return _elementwise(_hinge_kernel, (x, t), 0, reduction, out_dtype)


def margin_ranking_loss(xp, x1, x2, y, m, reduction, out_dtype):
    if not _supported(x1, x2, y) or not _same_dtype(x1, x2, y):
        return NotImplemented
    return _elementwise(_margin_ranking_kernel, (x1, x2, y), 0, reduction, out_dtype, m)


def gaussian_nll_loss(xp, x, y, v, full, floor, reduction, out_dtype):
    if not _supported(x, y, v) or not _same_dtype(x, y, v):
        return NotImplemented
    return _elementwise(_gaussian_nll_kernel, (x, y, v), 2, reduction, out_dtype, full, floor)


def log_cosh_loss(xp, x, y, reduction, out_dtype):
    if not _supported(x, y) or not _same_dtype(x, y):
        return NotImplemented
    return _elementwise(_log_cosh_kernel, (x, y), 4, reduction, out_dtype)


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


# ---------------------------------------------------------------- kl_div_loss


def _kl_guarded(e: np.ndarray, d: np.ndarray, axis: int) -> np.ndarray:
    """The portable ``sum(xlogy_like(e, d), axis)``: ``e * d`` with a 0 where
    ``e == 0`` and ``d`` is not finite."""
    d = np.where((e == 0) & ~np.isfinite(d), 0, d)
    return np.sum(np.multiply(e, d, out=d), axis=axis)


def kl_div_loss(xp, x, t, axis, reduction, out_dtype):
    # sum(exp(t) (t - x)) along the axis, a block of rows (or of columns) at a
    # time, the products without the 0 * inf guard.  Where the guard would
    # change a product (exp(t) == 0 and t - x not finite), the unguarded
    # product is nan, so its row sum is nan: only such rows are computed
    # again with the guard (as are rows that hold a nan input anyway).
    if not _supported(x, t) or not _same_dtype(x, t):
        return NotImplemented
    shape, dtype = x.shape, x.dtype
    c = shape[axis]
    pre, post = math.prod(shape[:axis]), math.prod(shape[axis + 1 :])
    loss = np.empty((pre, post), dtype)
    if post == 1:
        x2, t2 = x.reshape(pre, c), t.reshape(pre, c)
        rows = max(1, BLOCK // c)

        def task(start: int, stop: int) -> None:
            size = min(rows, stop - start)
            e_buf, d_buf, t_buf = (np.empty((size, c), dtype) for _ in range(3))
            for i in range(start, stop, size):
                j = min(i + size, stop)
                e, d = e_buf[: j - i], d_buf[: j - i]
                np.exp(t2[i:j], out=e)
                with np.errstate(invalid="ignore"):  # -inf - -inf and 0 * inf, guarded below
                    np.subtract(t2[i:j], x2[i:j], out=d)
                    sums = _row_dot(e, d, t_buf[: j - i])
                bad = np.flatnonzero(np.isnan(sums))
                if bad.size:
                    sums[bad] = _kl_guarded(e[bad], d[bad], 1)
                loss[i:j, 0] = sums

        _spread(task, pre, c)
    else:
        # Reductions along a middle axis: blocks of (c, columns) slabs, summed
        # along c the way NumPy sums along a non-contiguous axis.
        x3, t3 = x.reshape(pre, c, post), t.reshape(pre, c, post)
        width = max(1, min(post, BLOCK // c))
        chunks = -(-post // width)

        def task(start: int, stop: int) -> None:
            e_buf, d_buf = (np.empty((c, width), dtype) for _ in range(2))
            for item in range(start, stop):
                i, k = divmod(item, chunks)
                lo, hi = k * width, min(k * width + width, post)
                e, d = e_buf[:, : hi - lo], d_buf[:, : hi - lo]
                np.exp(t3[i, :, lo:hi], out=e)
                with np.errstate(invalid="ignore"):  # -inf - -inf and 0 * inf, guarded below
                    np.subtract(t3[i, :, lo:hi], x3[i, :, lo:hi], out=d)
                    sums = np.add.reduce(np.multiply(e, d, out=d), axis=0)
                if np.isnan(sums).any():
                    with np.errstate(invalid="ignore"):
                        np.subtract(t3[i, :, lo:hi], x3[i, :, lo:hi], out=d)
                    sums = _kl_guarded(e, d, 0)
                loss[i, lo:hi] = sums

        _spread(task, pre * chunks, c * width)
    return _reduce_vector(loss.reshape(shape[:axis] + shape[axis + 1 :]), reduction, out_dtype)


# --------------------------------------------------------------- triplet_loss


def _block_distance(u, v, d, tmp, p, eps, low, high):
    """The portable ``_distance(u - v, p, eps)`` of a (rows, c) block, along
    its rows (``d``, ``tmp``: scratch blocks).  For ``p == 2`` first unscaled:
    ``sqrt(sum(diff**2) + eps)``, the same value to a few ulps wherever every
    row's ``sum + eps`` lies in ``[low, high] = [c * tiny, max]`` (no square
    overflowed, and those that underflowed moved the sum by less than an
    ulp); otherwise, and for other ``p``, the portable scaled computation."""
    np.subtract(u, v, out=d)
    if p == 2:
        sums = _row_dot(d, d, tmp)
        sums += eps
        if low <= sums.min() and sums.max() <= high:  # nan fails both
            return np.sqrt(sums, out=sums)
    magnitude = np.abs(d, out=d)
    if p == 1:
        return np.sum(magnitude, axis=1) + eps
    floor = eps ** (1.0 / p)
    scale = _safe(np.maximum(np.max(magnitude, axis=1, keepdims=True), floor))
    with np.errstate(invalid="ignore"):  # inf / inf: nan, as the portable value
        scaled = np.divide(magnitude, scale, out=d)
    scale = scale[:, 0]
    if p == 2:
        return scale * np.sqrt(np.sum(np.square(scaled, out=scaled), axis=1) + np.square(floor / scale))
    inner = np.sum(np.power(scaled, p, out=scaled), axis=1) + np.power(floor / scale, p)
    return scale * np.power(inner, 1.0 / p)


def triplet_loss(xp, a, pos, neg, axis, degree, alpha, floor, reduction, out_dtype):
    if not _supported(a, pos, neg) or not _same_dtype(a, pos, neg):
        return NotImplemented
    a2, p2, n2 = _rows(a, axis), _rows(pos, axis), _rows(neg, axis)
    if a2 is None or p2 is None or n2 is None:
        return NotImplemented
    n, c = a2.shape
    dtype = a2.dtype
    info = np.finfo(dtype)
    low, high = float(info.tiny) * c, float(info.max)
    loss = np.empty(n, dtype)
    rows = max(1, BLOCK // c)
    zeros = np.zeros(min(rows, n), dtype)

    def task(start: int, stop: int) -> None:
        size = min(rows, stop - start)
        d_buf, t_buf = (np.empty((size, c), dtype) for _ in range(2))
        for i in range(start, stop, size):
            j = min(i + size, stop)
            d, tmp = d_buf[: j - i], t_buf[: j - i]
            with np.errstate(over="ignore", under="ignore"):
                near = _block_distance(a2[i:j], p2[i:j], d, tmp, degree, floor, low, high)
                far = _block_distance(a2[i:j], n2[i:j], d, tmp, degree, floor, low, high)
            gap = np.subtract(near, far, out=near)
            np.add(gap, alpha, out=gap)
            np.maximum(gap, zeros[: j - i], out=loss[i:j])

    _spread(task, n, c)
    return _reduce_vector(loss.reshape(a.shape[:-1]), reduction, out_dtype)

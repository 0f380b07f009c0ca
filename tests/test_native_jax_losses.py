"""JAX fast paths for kl_div_loss, log_cosh_loss and triplet_loss, and the
fallbacks of the JAX fast paths, against the portable code.

Each fast path computes a cheaper form first and runs the portable
computation (in blocks, ``_native.jax._blocked``) only for inputs where the
cheap form is not exact: a ``0 * inf`` (kl_div_loss), sums of squares that
overflow or lost digits to underflow (triplet_loss, cosine_similarity_loss).
Both branches are forced here, under ``jax.jit``, ``jax.grad`` (both
differentiable arguments), ``jax.jvp``, second derivatives and ``jax.vmap``
(which runs both branches of a ``jax.lax.cond``).
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import anyloss
from anyloss import _native

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

from anyloss._native import jax as native_jax  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

DTYPES = (np.float32, np.float64)
EPS = {np.float32: 2.0**-23, np.float64: 2.0**-52}
TINY = {np.float32: float(np.finfo(np.float32).tiny), np.float64: float(np.finfo(np.float64).tiny)}


def _fast(name, *args):
    """Whether the fast path ``name`` takes the call (traced, not run)."""
    result = []

    def probe():
        result.append(getattr(native_jax, name)(jnp, *args))
        return jnp.zeros(())

    jax.eval_shape(probe)
    return result[0] is not NotImplemented


def _weights(out):
    """Distinct weights per output element, so that each row's gradient counts."""
    return jnp.arange(1, out.size + 1, dtype=out.dtype).reshape(out.shape) / out.size


def _run(fn, args):
    """Value and gradients (all arguments) of ``fn`` under ``jax.jit`` (one
    compilation for both), on the fast path and on the portable code (each
    traced afresh, inside its own setting)."""

    def objective(*a):
        out = fn(*a)
        return jnp.sum(out * _weights(out))

    def both(*a):
        return fn(*a), jax.grad(objective, argnums=tuple(range(len(a))))(*a)

    results = []
    for fast in (True, False):
        with contextlib.nullcontext() if fast else _native.portable():
            value, grads = jax.jit(lambda *a: both(*a))(*args)
            results.append((np.asarray(value), [np.asarray(g) for g in grads]))
    return results


def _close(got, want, dtype, ulps=8, atol=0.0):
    """Equal to ``ulps`` units in the last place (nan where the other is nan;
    infinities equal)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    finite = np.isfinite(want)
    np.testing.assert_array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)])
    atol = np.broadcast_to(atol, want.shape)[finite]
    tol = ulps * EPS[dtype] * np.abs(want[finite]) + atol
    diff = np.abs(got[finite] - want[finite])
    assert np.all(diff <= tol), np.max(diff / np.maximum(tol, 1e-300))


def _close_rows(got, want, dtype, axis, ulps=64):
    """Gradients equal to ``ulps`` units of the largest finite entry along
    ``axis`` (a gradient entry is a difference of terms of that size)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    finite = np.isfinite(want)
    np.testing.assert_array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)])
    scale = np.max(np.where(finite, np.abs(want), 0.0), axis=axis, keepdims=True)
    diff = np.where(finite, np.abs(got - want), 0.0)
    assert np.all(diff <= ulps * EPS[dtype] * scale), np.max(diff / np.maximum(scale, 1e-300))


def _distances(a, p, n, axis, reduction):
    """d(a, p) + d(a, n) in float64, reduced: the size of the terms that
    cancel in the triplet loss (the loss' absolute tolerance scales with it)."""
    a, p, n = (np.asarray(v, np.float64) for v in (a, p, n))
    with np.errstate(all="ignore"):
        size = np.sqrt(np.sum((a - p) ** 2, axis=axis)) + np.sqrt(np.sum((a - n) ** 2, axis=axis))
    size = np.where(np.isfinite(size), size, 0.0)
    return {"none": size, "mean": size.mean(), "sum": size.sum()}[reduction]


def _check(fn, args, dtype, grad_axis=None, ulps=8, grad_ulps=16, atol=0.0, grad_atol=0.0):
    """Values to ``ulps`` (plus ``atol``, a scalar or one per value), gradients
    to ``grad_ulps`` of themselves or, with ``grad_axis``, of the largest
    entry along that axis."""
    (v1, g1), (v2, g2) = _run(fn, args)
    assert v1.dtype == v2.dtype and v1.shape == v2.shape
    _close(v1, v2, dtype, ulps=ulps, atol=atol)
    for a, b in zip(g1, g2):
        if grad_axis is None:
            _close(a, b, dtype, ulps=grad_ulps, atol=grad_atol)
        else:
            _close_rows(a, b, dtype, grad_axis, ulps=grad_ulps)
    return v1


# ------------------------------------------------------------------- kl_div_loss


def _kl_terms(x, t, axis, reduction):
    """The sum of |exp(t) (t - x)| along ``axis`` in float64, reduced: the
    size of the terms whose sum is the loss (its absolute tolerance)."""
    x, t = np.asarray(x, np.float64), np.asarray(t, np.float64)
    with np.errstate(all="ignore"):
        size = np.sum(np.where(np.isfinite(t - x), np.abs(np.exp(t) * (t - x)), 0.0), axis=axis)
    size = np.where(np.isfinite(size), size, 0.0)
    return {"none": size, "mean": size.mean(), "sum": size.sum()}[reduction]


def _log_probs(seed, shape, dtype):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(shape) - np.log(shape[-1])).astype(dtype) for _ in range(2)]


@pytest.mark.parametrize(
    "axis,reduction,dtype",
    [(0, "none", np.float32), (1, "mean", np.float64), (-1, "sum", np.float32), (-1, "none", np.float64)],
)
def test_kl_div_random(axis, reduction, dtype):
    x, t = _log_probs(1, (5, 7, 9), dtype)
    assert _fast("kl_div_loss", jnp.asarray(x), jnp.asarray(t), 2, "none", x.dtype)

    def fn(a, b):
        return anyloss.kl_div_loss(a, b, axis=axis, reduction=reduction)

    # the gradient in t, exp(t) (t - x + 1), is a difference: compared to the
    # largest entry along the axis
    atol = 16 * EPS[dtype] * _kl_terms(x, t, axis, reduction)
    _check(fn, (jnp.asarray(x), jnp.asarray(t)), dtype, atol=atol, grad_axis=axis, grad_ulps=16)


def _kl_special(dtype):
    """Rows with a target of probability 0 (t = -inf, or exp(t) underflowing
    to 0) against finite, infinite and nan predictions, and plain rows."""
    x, t = _log_probs(2, (8, 6), dtype)
    under = -800.0  # exp underflows to 0 in float32 and float64
    t[0, 1], x[0, 1] = -np.inf, 0.5  # 0 * -inf
    t[1, 2], x[1, 2] = -np.inf, -np.inf  # 0 * nan
    t[2, 3], x[2, 3] = -np.inf, np.inf
    t[3, 0], x[3, 0] = -np.inf, np.nan  # 0 * nan: the portable term is 0
    t[4, 4], x[4, 4] = under, np.inf  # exp(t) = 0 against t - x = -inf
    t[5, 5], x[5, 5] = under, -np.inf
    t[6, 0] = np.inf  # a real infinity: inf on both paths
    x[7, 1] = np.nan  # a nan with a nonzero probability: nan on both paths
    return x, t


@pytest.mark.parametrize(
    "reduction,dtype", [("none", np.float32), ("none", np.float64), ("mean", np.float32), ("sum", np.float64)]
)
def test_kl_div_zero_probabilities(reduction, dtype):
    x, t = _kl_special(dtype)

    def fn(a, b):
        return anyloss.kl_div_loss(a, b, reduction=reduction)

    atol = 16 * EPS[dtype] * _kl_terms(x, t, -1, reduction)
    value = _check(fn, (jnp.asarray(x), jnp.asarray(t)), dtype, atol=atol, grad_axis=1, grad_ulps=16)
    if reduction == "none":
        assert np.all(np.isfinite(value[:6]))  # rows that the plain sum makes nan


# ----------------------------------------------------------------- log_cosh_loss


def _errors(dtype):
    """Errors across every regime of the loss: tiny (down to where the loss
    underflows), around 1 (where the portable code changes formula), around
    the point where the fast path adds the rest linearly, huge, infinite, nan."""
    rng = np.random.default_rng(3)
    one = np.array([1.0], dtype)
    twenty = np.array([20.0], dtype)
    near = []
    for v in (one, twenty):
        up, down = v.copy(), v.copy()
        for _ in range(4):
            up, down = np.nextafter(up, np.inf), np.nextafter(down, 0)
            near += [up, down]
    values = np.concatenate(
        [
            10.0 ** rng.uniform(-18 if dtype == np.float32 else -150, 2.5, 300),
            rng.uniform(0.5, 1.5, 100),
            rng.uniform(15.0, 25.0, 50),
            [0.0, 1.0, 20.0, 1e-4, 1e5, 3e38, np.inf, np.nan],
            np.concatenate(near),
        ]
    ).astype(dtype)
    signs = np.where(rng.random(values.size) < 0.5, -1.0, 1.0).astype(dtype)
    return values * signs


@pytest.mark.parametrize(
    "reduction,dtype", [("none", np.float32), ("none", np.float64), ("mean", np.float32)]
)
def test_log_cosh_all_regimes(reduction, dtype):
    err = _errors(dtype)
    rng = np.random.default_rng(4)
    y = (rng.standard_normal(err.size) * 0.01).astype(dtype)
    y[~np.isfinite(err) | (np.abs(err) < 1e-3) | (np.abs(err) > 1e3)] = 0.0  # keep those errors exact
    x = (err + y).astype(dtype)

    def fn(a, b):
        return anyloss.log_cosh_loss(a, b, reduction=reduction)

    args = (jnp.asarray(x), jnp.asarray(y))
    assert _fast("log_cosh_loss", *args, "none", x.dtype)
    # The fast form is within about 5 ulps of the exact loss, as the portable
    # form is; XLA flushes results below the smallest normal number to zero,
    # which the two forms reach at slightly different errors.
    _check(fn, args, dtype, ulps=12, grad_ulps=4, atol=4 * TINY[dtype])


def test_log_cosh_against_float64():
    """float32 fast values against the loss computed in float64."""
    err = _errors(np.float32)
    err = err[np.isfinite(err)]
    got = np.asarray(jax.jit(anyloss.log_cosh_loss)(jnp.asarray(err), jnp.zeros_like(jnp.asarray(err))))
    e = np.abs(err.astype(np.float64))
    want = np.where(e < 1, np.log1p(2 * np.sinh(e / 2) ** 2), e + np.log1p(np.exp(-2 * e)) - np.log(2))
    _close(got, want, np.float32, ulps=6, atol=2 * TINY[np.float32])


# ------------------------------------------------------------------ triplet_loss


def _triplets(seed, shape, dtype, cases=()):
    rng = np.random.default_rng(seed)
    a, p, n = ((rng.standard_normal(shape) * 2).astype(dtype) for _ in range(3))
    big = np.finfo(dtype).max ** 0.6
    tiny = np.sqrt(np.finfo(dtype).tiny)
    if "huge" in cases:  # squares overflow: the scaled fallback
        a[0] *= big
        p[0] *= big
    if "tiny" in cases:  # squares underflow (flushed to 0): the scaled fallback (with eps = 0)
        a[1] = p[1] + (rng.standard_normal(shape[1:]) * tiny * 0.5).astype(dtype)
        a[1].flat[0] = p[1].flat[0] + dtype(tiny * 40)  # the one square that does not underflow
    if "equal" in cases:  # anchor equal to positive: eps alone under the root
        p[2] = a[2]  # (with eps = 0: distance 0 and a nan gradient on both paths)
    if "inf" in cases:
        a[3].flat[1] = np.inf
    if "nan" in cases:
        n[4].flat[2] = np.nan
    return a, p, n


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "eps,cases", [(1e-6, ()), (1e-6, ("huge", "equal", "inf", "nan")), (0.0, ("tiny", "equal"))]
)
def test_triplet_branches(eps, cases, dtype):
    """Plain rows (the unscaled sums), then rows that force the scaled
    fallback among plain ones."""
    a, p, n = _triplets(5, (6, 33), dtype, cases)

    def fn(x, y, z):
        return anyloss.triplet_loss(x, y, z, eps=eps, margin=0.5)

    args = tuple(jnp.asarray(v) for v in (a, p, n))
    assert _fast("triplet_loss", *args, 1, 2.0, 0.5, eps, "none", a.dtype)
    atol = 8 * EPS[dtype] * _distances(a, p, n, 1, "none")
    _check(fn, args, dtype, grad_axis=1, ulps=8, grad_ulps=64, atol=atol)


@pytest.mark.parametrize(
    "axis,reduction,eps,margin,dtype",
    [
        (0, "none", 1e-6, 1.0, np.float32),
        (1, "mean", 1e-6, 0.0, np.float64),
        (2, "sum", 0.5, 2.0, np.float32),
        (-1, "none", 1e-3, 100.0, np.float64),
    ],
)
def test_triplet_options(axis, reduction, eps, margin, dtype):
    a, p, n = _triplets(7, (4, 5, 6), dtype)

    def fn(x, y, z):
        return anyloss.triplet_loss(x, y, z, axis=axis, margin=margin, eps=eps, reduction=reduction)

    args = tuple(jnp.asarray(v) for v in (a, p, n))
    atol = 8 * EPS[dtype] * _distances(a, p, n, axis, reduction)
    _check(fn, args, dtype, grad_axis=axis, ulps=8, grad_ulps=64, atol=atol)


def test_triplet_declines():
    """p other than 2, and an eps that float32 cannot hold, are left to the
    portable code."""
    a, p, n = (jnp.asarray(v) for v in _triplets(7, (4, 5), np.float32))
    for degree, eps in ((1.0, 1e-6), (3.0, 1e-6), (2.0, 1e-300), (2.0, 1e300)):
        assert not _fast("triplet_loss", a, p, n, 1, degree, 1.0, eps, "none", a.dtype)
    assert _fast("triplet_loss", a, p, n, 1, 2.0, 1.0, 0.0, "none", a.dtype)


def test_triplet_flushed_squares_take_the_scaled_branch():
    """Squares below the smallest normal number are flushed to zero by XLA:
    a sum just above ``n * tiny`` can have lost most of its value."""
    n = 1000
    d = np.full(n, 9.9e-20, np.float32)  # squares just below float32's tiny
    d[0] = np.sqrt(2 * n * np.finfo(np.float32).tiny)
    zeros = np.zeros((1, n), np.float32)
    got = jax.jit(lambda a, b, c: anyloss.triplet_loss(a, b, c, eps=0.0, margin=0.0, reduction="none"))
    # d(a, pos) - d(a, neg) + 0 with d(a, neg) = 0: the loss is d(a, pos)
    value = got(jnp.asarray(d[None]), jnp.asarray(zeros), jnp.asarray(d[None]))
    want = np.sqrt(np.sum(d.astype(np.float64) ** 2))
    np.testing.assert_allclose(np.asarray(value), [want], rtol=8 * EPS[np.float32])


def test_cosine_flushed_squares_take_the_scaled_branch():
    n = 1000
    a = np.full(n, 9.9e-20, np.float32)
    a[0] = np.sqrt(2 * n * np.finfo(np.float32).tiny)
    b = np.zeros(n, np.float32)
    b[0] = 1.0
    loss = jax.jit(lambda x, y: anyloss.cosine_similarity_loss(x, y, eps=0.0))
    got = loss(jnp.asarray(a[None]), jnp.asarray(b[None]))
    want = a[0] / np.sqrt(np.sum(a.astype(np.float64) ** 2))
    np.testing.assert_allclose(np.asarray(got), [want], rtol=8 * EPS[np.float32])


# ------------------------------------------------------- blocked fallbacks


@pytest.mark.parametrize("shape,axis,block", [((13, 11), 1, 33), ((7, 5, 3), 0, 42)])
def test_blocked_fallbacks(monkeypatch, shape, axis, block):
    """The fallbacks computed in blocks (3 and 2 rows: the last block
    overlaps the one before it), for each loss that has one."""
    monkeypatch.setattr(native_jax, "_BLOCK", block)
    dtype = np.float64
    rng = np.random.default_rng(8)
    x, y, z = ((rng.standard_normal(shape) * 2).astype(dtype) for _ in range(3))
    first = (slice(None),) * axis + (0,)

    # kl_div: a -inf target with a nan prediction
    t = y - 3.0
    t[first] = -np.inf
    x_nan = x.copy()
    x_nan[first] = np.nan

    def kl(a, b):
        return anyloss.kl_div_loss(a, b, axis=axis, reduction="none")

    atol = 16 * EPS[dtype] * _kl_terms(x_nan, t, axis, "none")
    _check(kl, (jnp.asarray(x_nan), jnp.asarray(t)), dtype, atol=atol, grad_axis=axis, grad_ulps=16)

    # triplet: one huge difference
    huge = x.copy()
    huge.flat[0] = 1e300

    def triplet(a, b, c):
        return anyloss.triplet_loss(a, b, c, axis=axis, reduction="none")

    atol = 8 * EPS[dtype] * _distances(huge, y, z, axis, "none")
    _check(triplet, (jnp.asarray(huge), jnp.asarray(y), jnp.asarray(z)), dtype, grad_axis=axis, grad_ulps=64,
           atol=atol)

    # cosine: a zero vector
    zero = x.copy()
    index = [0] * len(shape)
    index[axis] = slice(None)
    zero[tuple(index)] = 0.0

    def cosine(a, b):
        return anyloss.cosine_similarity_loss(a, b, axis=axis, reduction="none")

    (v1, g1), (v2, g2) = _run(cosine, (jnp.asarray(zero), jnp.asarray(y)))
    _close(v1, v2, dtype, ulps=16)
    for a, b in zip(g1, g2):
        _close_rows(a, b, dtype, axis, ulps=64)


# ------------------------------------------------------------------- transforms


def _transforms(fn, args, tangents):
    """vmap over a batch of two examples (the first plain, the second needing
    the fallback), and at the second a forward-mode derivative and a
    Hessian-vector product in each argument, on both paths (each in one
    compilation)."""

    def all_of(batch, primals):
        batched = jax.vmap(fn)(*batch)
        _, forward = jax.jvp(fn, primals, tangents)
        hvps = []
        for i in range(len(primals)):
            def inner(*p, i=i):
                g = jax.grad(lambda *q: jnp.sum(fn(*q) * _weights(fn(*q))), argnums=i)(*p)
                return jnp.sum(g * tangents[i])

            hvps.extend(jax.grad(inner, argnums=tuple(range(len(primals))))(*primals))
        return [batched, forward] + hvps

    batch = tuple(jnp.stack([a, b]) for a, b in args)
    primals = tuple(b for _, b in args)
    out = []
    for fast in (True, False):
        with contextlib.nullcontext() if fast else _native.portable():
            out.append([np.asarray(r) for r in jax.jit(lambda b, p: all_of(b, p))(batch, primals)])
    return out


def test_kl_div_transforms(monkeypatch):
    monkeypatch.setattr(native_jax, "_BLOCK", 12)  # the fallback in blocks of 2 rows
    x, t = _log_probs(9, (4, 6), np.float64)
    t_special, x_special = t.copy(), x.copy()
    t_special[0, 0], x_special[0, 0] = -np.inf, np.inf
    rng = np.random.default_rng(10)
    tangents = tuple(jnp.asarray(rng.standard_normal(x.shape)) for _ in range(2))

    def fn(a, b):
        return anyloss.kl_div_loss(a, b, reduction="none")

    args = [(jnp.asarray(x), jnp.asarray(x_special)), (jnp.asarray(t), jnp.asarray(t_special))]
    fast, slow = _transforms(fn, args, tangents)
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


def test_log_cosh_transforms():
    err = _errors(np.float64)[:40]
    err = np.where(np.isfinite(err), err, 3.0)
    rng = np.random.default_rng(11)
    y = rng.standard_normal(err.size) * 0.1
    x = err + y
    tangents = tuple(jnp.asarray(rng.standard_normal(x.shape)) for _ in range(2))

    def fn(a, b):
        return anyloss.log_cosh_loss(a, b, reduction="none")

    args = [(jnp.asarray(x), jnp.asarray(x[::-1].copy())), (jnp.asarray(y), jnp.asarray(y))]
    fast, slow = _transforms(fn, args, tangents)
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


def test_triplet_transforms(monkeypatch):
    monkeypatch.setattr(native_jax, "_BLOCK", 8)  # the fallback row by row
    a, p, n = _triplets(12, (3, 8), np.float64)
    rng = np.random.default_rng(13)
    tangents = tuple(jnp.asarray(rng.standard_normal(a.shape)) for _ in range(3))

    def fn(x, y, z):
        return anyloss.triplet_loss(x, y, z, margin=3.0, reduction="none")

    # the second example's squares overflow: the scaled fallback
    args = [(jnp.asarray(v), jnp.asarray(v * 1e200)) for v in (a, p, n)]
    fast, slow = _transforms(fn, args, tangents)
    for got, want in zip(fast, slow):
        scale = np.max(np.abs(want)) if want.size else 1.0
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * scale)

"""The JAX and MLX fast paths against the portable code and float64 references.

JAX's cross_entropy fast path sums ``exp(x - max)`` plainly and switches, via
``jax.lax.cond``, to the masked sum when some row is confident (``s < 2``);
both branches are exercised here, with values and gradients.
"""

from __future__ import annotations

import numpy as np
import pytest

import anyloss
from anyloss import _native

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

REDUCTIONS = ("none", "mean", "sum")
EPS = {np.float32: 2.0**-23, np.float64: 2.0**-52}


def _reference(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cross entropy in float64 with the maximum's term left out of the sum."""
    x = x.astype(np.float64)
    z = x - x.max(axis=-1, keepdims=True)
    rest = np.where(z < 0, np.exp(z), 0.0).sum(axis=-1) + ((z == 0).sum(axis=-1) - 1)
    return np.log1p(rest) - np.take_along_axis(z, y[:, None], axis=-1)[:, 0]


def _logits(seed: int, rows: int, classes: int, dtype, confident: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, classes)) * 2.0).astype(dtype)
    y = rng.integers(0, classes, size=rows).astype(np.int32)
    if confident:
        # rows 0-2 confident and correct (tiny losses); row 3 a tie at the maximum
        x[0, y[0]] = 40.0
        x[1, y[1]] = 12.0
        x[2, y[2]] = 3.0
        x[3, :2] = 50.0
        y[3] = 1
    return x, y


def _close(got, want, dtype, ulps=16):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    tol = ulps * EPS[dtype] * (np.abs(want) + 1.0)
    assert np.all(np.abs(got - want) <= tol), np.max(np.abs(got - want) / tol)


def _ce(x, y, **kw):
    return anyloss.cross_entropy(x, y, **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("confident", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_jax_cross_entropy_values_and_gradients(reduction, confident, dtype):
    x, y = _logits(1, 9, 37, dtype, confident)
    jx, jy = jnp.asarray(x), jnp.asarray(y)

    def objective(v):
        return jnp.sum(_ce(v, jy, reduction=reduction) * 1.5)

    fast = jax.jit(lambda v: _ce(v, jy, reduction=reduction))(jx)
    fast_grad = jax.jit(jax.grad(objective))(jx)
    with _native.portable():
        slow = _ce(jx, jy, reduction=reduction)
        slow_grad = jax.grad(objective)(jx)
    assert fast.dtype == x.dtype and fast.shape == slow.shape
    _close(fast, slow, dtype)
    ref = _reference(x, y)
    ref = {"none": ref, "mean": ref.mean(), "sum": ref.sum()}[reduction]
    _close(fast, ref, dtype)
    # gradient: 1.5 * (softmax - onehot), divided by the rows for 'mean'
    _close(fast_grad, slow_grad, dtype)
    x64 = x.astype(np.float64)
    p = np.exp(x64 - x64.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    want = 1.5 * p / (len(y) if reduction == "mean" else 1)
    _close(fast_grad, want, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_jax_cross_entropy_keeps_tiny_losses(dtype):
    # one confident row takes the masked branch; its loss is exp(-d) to the last bits
    d = np.array([5.0, 17.0, 30.0, 80.0])
    x = np.zeros((4, 3), dtype)
    x[:, 1] = d
    y = np.ones(4, np.int32)
    got = np.asarray(jax.jit(_ce)(jnp.asarray(x), jnp.asarray(y)), np.float64)
    want = np.log1p(2.0 * np.exp(-d.astype(dtype).astype(np.float64)))
    np.testing.assert_allclose(got, want, rtol=8 * EPS[dtype], atol=0)
    assert np.all(got > 0)


def test_jax_cross_entropy_options_and_extremes():
    x, y = _logits(2, 6, 11, np.float64, True)
    x[4, 3] = -np.inf  # a -inf logit: contributes nothing
    rng = np.random.default_rng(3)
    w = rng.random(6)
    p = rng.random((6, 11))
    p[4, 3] = 0.0  # 0 * log 0 = 0 against the -inf logit
    p /= p.sum(axis=-1, keepdims=True)
    jx = jnp.asarray(x)
    for targets in (jnp.asarray(y), jnp.asarray(p)):
        for kw in ({}, {"weights": jnp.asarray(w)}, {"axis": 0}):
            t = targets
            if kw.get("axis") == 0:
                args = (jx.T, t.T if t.ndim == 2 else t)
            else:
                args = (jx, t)
            fast = jax.jit(lambda a, b: _ce(a, b, reduction="none", **kw))(*args)
            with _native.portable():
                slow = _ce(*args, reduction="none", **kw)
            _close(fast, slow, np.float64)
    # label smoothing (finite logits only: the mean of a -inf row is -inf on both paths)
    xs = np.where(np.isfinite(x), x, 0.0)
    fast = jax.jit(lambda a: _ce(a, jnp.asarray(y), label_smoothing=0.2))(jnp.asarray(xs))
    with _native.portable():
        slow = _ce(jnp.asarray(xs), jnp.asarray(y), label_smoothing=0.2)
    _close(fast, slow, np.float64)
    # +inf or nan logits give nan on both paths
    bad = x.copy()
    bad[0, 0], bad[1, 0] = np.inf, np.nan
    fast = np.asarray(_ce(jnp.asarray(bad), jnp.asarray(y)))
    with _native.portable():
        slow = np.asarray(_ce(jnp.asarray(bad), jnp.asarray(y)))
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(slow))
    _close(fast[2:], slow[2:], np.float64)


def test_jax_cross_entropy_transforms():
    x, y = _logits(4, 5, 7, np.float64, True)
    jx, jy = jnp.asarray(x), jnp.asarray(y)

    def loss(v):
        return _ce(v, jy, reduction="mean")

    tangent = jnp.asarray(np.random.default_rng(5).standard_normal(x.shape))
    results = []
    for path in ("fast", "portable"):
        with _native.portable() if path == "portable" else _nullcontext():
            batched = jax.vmap(lambda v, t: _ce(v, t, reduction="mean"))(jnp.stack([jx, jx * 0.5]), jnp.stack([jy, jy]))
            _, jvp = jax.jvp(loss, (jx,), (tangent,))
            hvp = jax.grad(lambda v: jnp.sum(jax.grad(loss)(v) * tangent))(jx)
            jit_of_grad = jax.jit(jax.grad(loss))(jx)
            results.append((batched, jvp, hvp, jit_of_grad))
    for got, want in zip(*results):
        _close(got, want, np.float64)


def _nullcontext():
    import contextlib

    return contextlib.nullcontext()


def _bce_inputs(dtype, extremes: bool):
    rng = np.random.default_rng(11)
    x = (rng.standard_normal(40) * 4.0).astype(dtype)
    t = (rng.random(40) < 0.5).astype(dtype)
    t[::7] = rng.random(6).astype(dtype)
    x[:4] = [40.0, -40.0, 0.0, -0.0]
    t[:4] = [1.0, 0.0, 1.0, 0.0]
    if extremes:
        # infinite logits with the matching target: loss 0 (0 * inf = 0)
        x[4:6], t[4:6] = [np.inf, -np.inf], [1.0, 0.0]
    return x, t


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("extremes", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_jax_binary_cross_entropy_values_and_gradients(reduction, weighted, extremes, dtype):
    x, t = _bce_inputs(dtype, extremes)
    w = np.random.default_rng(12).random(40).astype(dtype) if weighted else None
    args = [jnp.asarray(x), jnp.asarray(t)] + ([jnp.asarray(w)] if weighted else [])

    def loss(*a):
        return anyloss.binary_cross_entropy(a[0], a[1], weights=a[2] if weighted else None, reduction=reduction)

    def objective(*a):
        return jnp.sum(loss(*a) * 1.5)

    argnums = tuple(range(len(args)))
    fast = jax.jit(loss)(*args)
    fast_grad = jax.jit(jax.grad(objective, argnums=argnums))(*args)
    with _native.portable():
        slow = loss(*args)
        slow_grad = jax.grad(objective, argnums=argnums)(*args)
    assert fast.dtype == x.dtype and fast.shape == slow.shape
    _close(fast, slow, dtype)
    # float64 reference: (1 - t) x + log(1 + exp(-x)) for x >= 0, -t x + log(1 + exp(x)) otherwise
    x64, t64 = x.astype(np.float64), t.astype(np.float64)
    finite = np.isfinite(x64)
    ref = np.where(x64 >= 0, (1 - t64) * np.where(finite, x64, 0), -t64 * np.where(finite, x64, 0))
    ref = ref + np.log1p(np.exp(-np.abs(x64)))
    if weighted:
        ref = ref * w
    ref = {"none": ref, "mean": ref.mean(), "sum": ref.sum()}[reduction]
    _close(fast, ref, dtype)
    if reduction == "none":
        assert np.all(np.asarray(fast)[:2] > 0)  # tiny losses kept
    for got, want in zip(fast_grad, slow_grad):
        _close(got, want, dtype)
    # d/dx = sigmoid(x) - t, d/dt = -x (0 at the infinite logits)
    scale = 1.5 / (40 if reduction == "mean" else 1) * (w if weighted else 1.0)
    sig = np.where(finite, 1.0 / (1.0 + np.exp(-np.where(finite, x64, 0))), (x64 > 0) * 1.0)
    _close(fast_grad[0], scale * (sig - t64), dtype)
    _close(fast_grad[1], scale * -np.where(finite, x64, 0), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ("mean", "sum"))
def test_jax_binary_cross_entropy_nonfinite(reduction, dtype):
    # a mismatched infinite logit gives inf, a nan logit or target nan, on both paths
    for xv, tv, want in ((np.inf, 0.0, np.inf), (-np.inf, 1.0, np.inf), (np.nan, 1.0, np.nan), (1.0, np.nan, np.nan),
                         (np.inf, 1.0, None), (-np.inf, 0.0, None)):
        x, t = _bce_inputs(dtype, True)
        x[7], t[7] = xv, tv
        fast = np.asarray(jax.jit(lambda a, b: anyloss.binary_cross_entropy(a, b, reduction=reduction))(
            jnp.asarray(x), jnp.asarray(t)))
        with _native.portable():
            slow = np.asarray(anyloss.binary_cross_entropy(jnp.asarray(x), jnp.asarray(t), reduction=reduction))
        if want is None:
            _close(fast, slow, dtype)
        else:
            np.testing.assert_array_equal(fast, slow)
            np.testing.assert_array_equal(fast, np.asarray(want, dtype))

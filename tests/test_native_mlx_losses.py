"""MLX fast paths of cross_entropy, log_cosh_loss, smooth_l1_loss,
gaussian_nll_loss and kl_div_loss against the portable code: values and
gradients (every differentiable argument, and second derivatives), over
reductions, axes, parameters and special inputs, and under ``mx.compile``
and ``mx.vmap``.

The fast paths evaluate ``exp`` as ``2 ** (u * 1.442695)`` through
``power``, which is MLX's own ``exp`` to within an ulp, and ``log1p`` from
``log``; values agree to a few ulps.  A gradient that is a difference of
two terms (``softmax - target``, ``sigmoid - t``) agrees to a few ulps of
the terms, so those comparisons scale the tolerance by the terms' size.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

import anyloss
from anyloss import _native
from anyloss._native import mlx as fast_mlx

REDUCTIONS = ("none", "mean", "sum")
# Errors of every size, each side of the branch points, overflow and the
# non-finite ones.
SPECIAL = np.array(
    [0.0, -0.0, 1e-30, 1e-20, 1e-4, 0.5, 0.999, 1.0, 1.0001, 3.0, 20.0, 43.9, 44.0, 44.1,
     60.0, 87.9, 88.5, 100.0, 1e30, np.inf, np.nan],
    np.float32,
)


def _close(got, want, ulps=16, scale=None):
    """Equal to ``ulps`` units of ``scale`` (default: of ``want``), nan
    where ``want`` is nan."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    size = np.abs(want) if scale is None else np.broadcast_to(np.asarray(scale, np.float64), want.shape)
    tol = ulps * 2.0**-23 * np.maximum(size, np.finfo(np.float32).tiny)
    with np.errstate(invalid="ignore"):
        ok = same | (np.abs(got - want) <= tol)
    assert np.all(ok), (got[~ok][:5], want[~ok][:5])


def _portable(fn, *args):
    with _native.portable():
        return fn(*args)


def _pair(seed, n=4000, scale=3.0):
    """Random predictions and targets, then every special error (both signs)."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.standard_normal(n) * scale, SPECIAL, -SPECIAL, [np.inf, 1.0]])
    y = np.concatenate([rng.standard_normal(n), np.zeros(2 * SPECIAL.size), [np.inf, np.nan]])
    return mx.array(x.astype(np.float32)), mx.array(y.astype(np.float32))


def _check(loss, args, argnums, ulps=16, grad_ulps=16, grad_scale=None):
    """Value, first and second derivatives of ``loss`` (unreduced loss,
    summed with a random cotangent), fast path against the portable code."""
    fast = loss(*args)
    slow = _portable(loss, *args)
    assert fast.dtype == slow.dtype and fast.shape == slow.shape
    _close(fast, slow, ulps)
    weights = mx.array(np.random.default_rng(1).uniform(0.5, 1.5, size=fast.shape).astype(np.float32))

    def scalar(*a):
        return mx.sum(loss(*a) * weights)

    for i in argnums:
        gf = mx.grad(scalar, argnums=i)(*args)
        gs = _portable(mx.grad(scalar, argnums=i), *args)
        scale = None if grad_scale is None else grad_scale(i, gs)
        _close(gf, gs, grad_ulps, scale)
    return fast, slow


# ------------------------------------------------------------------ elementwise losses

ELEMENTWISE = {
    "log_cosh": (lambda x, y, r: anyloss.log_cosh_loss(x, y, reduction=r), 2),
    "smooth_l1": (lambda x, y, r: anyloss.smooth_l1_loss(x, y, beta=1.0, reduction=r), 2),
    "smooth_l1_beta_0.3": (lambda x, y, r: anyloss.smooth_l1_loss(x, y, beta=0.3, reduction=r), 2),
    "smooth_l1_beta_7": (lambda x, y, r: anyloss.smooth_l1_loss(x, y, beta=7.0, reduction=r), 2),
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise_values_and_gradients(name, reduction):
    fn, _ = ELEMENTWISE[name]
    x, y = _pair(hash(name) % 1000)
    # the sum of a loss with infinite terms is inf either way; the
    # gradients of the finite ones are what the reductions test
    if reduction != "none":
        x, y = x[:4000], y[:4000]
    _check(lambda a, b: fn(a, b, reduction), (x, y), (0, 1))


def test_smooth_l1_at_beta():
    # errors at beta and one ulp below it: the branch point, exactly
    beta = 3.0
    diff = np.nextafter(np.float32(beta), np.float32(0))
    x = mx.array(np.array([diff, -diff, beta, 0.0, 2.9999], np.float32))
    y = mx.zeros_like(x)
    _check(lambda a, b: anyloss.smooth_l1_loss(a, b, beta=beta, reduction="none"), (x, y), (0, 1), ulps=0)


def test_smooth_l1_beta_zero_is_portable():
    x, y = _pair(3, 50)
    assert fast_mlx.smooth_l1_loss(mx, x, y, 0.0, "none", mx.float32) is NotImplemented


def test_log_cosh_exact_values():
    # log cosh a from float64: tiny errors keep their a**2 / 2
    a = np.array([1e-20, 1e-4, 0.3, 0.999, 1.0, 2.5, 30.0, 50.0, 1e30], np.float32)
    got = anyloss.log_cosh_loss(mx.array(a), mx.zeros((a.size,)), reduction="none")
    a64 = a.astype(np.float64)
    want = np.where(a64 < 20, np.log(np.cosh(np.minimum(a64, 20))), a64 - np.log(2.0))
    want = np.where(a64 < 1e-3, a64**2 / 2, want)
    _close(got, want, 8)
    g = mx.grad(lambda x: mx.sum(anyloss.log_cosh_loss(x, mx.zeros_like(x))))(mx.array(a))
    _close(g, np.tanh(a64), 8)


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gaussian_nll_values_and_gradients(reduction, full):
    rng = np.random.default_rng(5)
    x, y = _pair(6, 3000)
    n = x.shape[0]
    v = rng.uniform(0.0, 3.0, n).astype(np.float32)
    v[:200] = 1e-6  # at the floor: a tie, no gradient
    v[200:300] = 0.0
    v[300:400] = 1e-8
    v[-60:] = np.array([1e-30, 1e30, np.inf] * 20, np.float32)
    v = mx.array(v)
    if reduction != "none":
        x, y, v = x[:3000], y[:3000], v[:3000]
    for eps in (1e-6, 0.5):
        _check(
            lambda a, b, c: anyloss.gaussian_nll_loss(a, b, c, full=full, eps=eps, reduction=reduction),
            (x, y, v), (0, 1, 2),
        )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("axis", [-1, 0])
def test_kl_div_values_and_gradients(reduction, axis):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((60, 40)) - 3.0).astype(np.float32)
    t = (rng.standard_normal((60, 40)) - 3.0).astype(np.float32)
    t[0, :5] = -np.inf  # zero-probability classes, each against a finite, -inf, inf, nan input
    x[0, :5] = [0.0, -np.inf, np.inf, np.nan, -1e30]
    t[1, :4] = [90.0, -90.0, -87.7, 88.5]  # exp overflows / underflows / MLX's cut-offs
    x[2, :3] = [-np.inf, np.inf, np.nan]
    t[3, :] = np.log(np.full(40, 1 / 40, np.float32))
    x, t = mx.array(x), mx.array(t)

    def loss(a, b):
        return anyloss.kl_div_loss(a, b, axis=axis, reduction=reduction)

    _check(loss, (x, t), (0,))
    gf = mx.grad(lambda a, b: mx.sum(loss(a, b)), argnums=1)(x, t)
    gs = _portable(mx.grad(lambda a, b: mx.sum(loss(a, b)), argnums=1), x, t)
    # the targets' gradient is exp(t) (1 + t - x): a few ulps of its terms
    cot = 1.0 / (x.size // x.shape[axis]) if reduction == "mean" else 1.0
    with np.errstate(invalid="ignore", over="ignore"):
        p = np.exp(np.asarray(t, np.float64))
        d = np.asarray(t, np.float64) - np.asarray(x, np.float64)
        terms = np.nan_to_num(cot * p * (1.0 + np.abs(d)), nan=0.0, posinf=np.inf)
    _close(gf, gs, 16, terms)


# ---------------------------------------------------------------------- cross entropy


def _logits(seed, shape, scale=3.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _ce_cases():
    """Rows of every kind: ordinary, confident (a sum of the others' exp far
    below 1), ties at the maximum, -inf classes, a nan, an inf, all -inf."""
    x = _logits(0, (24, 50))
    x[1] = -30.0
    x[1, 7] = 10.0  # confident: the loss at class 7 is about 49 exp(-40)
    x[2] = 0.0  # all tied
    x[3, [4, 9]] = x[3].max() + 1.0  # a tie of two at the maximum
    x[4, :40] = -np.inf
    x[5, 3] = np.nan
    x[6, 3] = np.inf
    x[7] = -np.inf
    x[8] *= 1e-30
    x[9] = x[9] * 1e4
    return x


def _ce_scale(x, targets, reduction, g_weights, smoothing=0.0):
    """The size of the gradient's terms: softmax plus the target part."""
    with np.errstate(all="ignore"):
        z = x.astype(np.float64) - np.max(x, axis=-1, keepdims=True)
        e = np.exp(z)
        soft = e / np.sum(e, axis=-1, keepdims=True)
        part = targets if targets.ndim == x.ndim else np.eye(x.shape[-1])[targets]
        size = np.abs(soft) + np.abs(part) + smoothing
    w = np.asarray(g_weights, np.float64)[..., None]
    if reduction == "mean":
        w = w / x.shape[0]
    return np.nan_to_num(size * w, nan=0.0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("kind", ["indices", "probabilities", "weighted"])
def test_cross_entropy_values_and_gradients(kind, smoothing, reduction):
    xs = _ce_cases()
    rng = np.random.default_rng(11)
    labels = rng.integers(0, xs.shape[1], xs.shape[0])
    labels[1], labels[4] = 7, 45
    probs = rng.dirichlet(np.ones(xs.shape[1]), xs.shape[0]).astype(np.float32)
    probs[4, :40] = 0.0  # zero probability against the -inf logits
    probs[4] /= probs[4].sum()
    targets = probs if kind == "probabilities" else labels
    weights = mx.array(rng.uniform(0.5, 2.0, xs.shape[0]).astype(np.float32)) if kind == "weighted" else None
    x, t = mx.array(xs), mx.array(targets)

    def loss(a):
        return anyloss.cross_entropy(a, t, weights=weights, label_smoothing=smoothing, reduction=reduction)

    fast, slow = loss(x), _portable(loss, x)
    _close(fast, slow, 8)
    g_w = np.random.default_rng(2).uniform(0.5, 1.5, size=fast.shape).astype(np.float32)

    def scalar(a):
        return mx.sum(loss(a) * mx.array(g_w))

    gf, gs = mx.grad(scalar)(x), _portable(mx.grad(scalar), x)
    ww = np.asarray(weights) if weights is not None else 1.0
    per_row = np.broadcast_to(g_w * ww, (xs.shape[0],)) if reduction == "none" else np.broadcast_to(g_w * ww, (xs.shape[0],))
    _close(gf, gs, 16, _ce_scale(xs, targets, reduction, per_row, smoothing))


def test_cross_entropy_confident_row_exact():
    # the tiny loss of a confident prediction survives (log1p of the rest)
    x = np.full((1, 50), -30.0, np.float32)
    x[0, 7] = 10.0
    got = anyloss.cross_entropy(mx.array(x), mx.array([7]), reduction="none")
    _close(got, [49 * np.exp(-40.0)], 8)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_cross_entropy_axes_and_float16(axis):
    x = _logits(3, (6, 7, 8))
    labels = np.random.default_rng(4).integers(0, x.shape[axis], np.delete(x.shape, axis))
    for dtype in (mx.float32, mx.float16):
        xm = mx.array(x).astype(dtype)

        def loss(a):
            return anyloss.cross_entropy(a, mx.array(labels), axis=axis, reduction="none")

        fast, slow = loss(xm), _portable(loss, xm)
        assert fast.dtype == slow.dtype == dtype
        _close(fast.astype(mx.float32), slow.astype(mx.float32), 8 if dtype == mx.float32 else 2**13)
        gf = mx.grad(lambda a: mx.sum(loss(a).astype(mx.float32)))(xm)
        gs = _portable(mx.grad(lambda a: mx.sum(loss(a).astype(mx.float32))), xm)
        assert gf.dtype == dtype
        ones = np.eye(x.shape[axis])[labels]
        scale = 1.0 + np.moveaxis(ones, -1, axis)
        _close(gf.astype(mx.float32), gs.astype(mx.float32), 16 if dtype == mx.float32 else 2**13, scale)


def test_second_derivatives():
    # Hessian-vector products through the custom VJPs are the portable ones
    x = mx.array(_logits(5, (4, 30)))
    labels = mx.array([1, 5, 29, 0])
    v = mx.array(_logits(6, (4, 30), 1.0))
    a, b = _pair(8, 200)
    a, b = a[:200], b[:200]
    va = mx.array(np.random.default_rng(9).standard_normal(200).astype(np.float32))
    cases = [
        (lambda z: mx.sum(anyloss.cross_entropy(z, labels, reduction="none")), x, v),
        (lambda z: mx.sum(anyloss.log_cosh_loss(z, b)), a, va),
        (lambda z: mx.sum(anyloss.kl_div_loss(z.reshape(20, 10), b.reshape(20, 10))), a, va),
    ]
    for f, z, direction in cases:

        def hvp(z):
            return mx.grad(lambda w: mx.sum(mx.grad(f)(w) * direction))(z)

        # second derivatives are differences of first-order terms (1 - tanh**2,
        # diag(softmax) - softmax softmax^T): a few ulps of the largest
        want = _portable(hvp, z)
        _close(hvp(z), want, 16, np.max(np.abs(np.asarray(want)), initial=0.0))


def test_under_compile_and_vmap():
    x = mx.array(_logits(12, (3, 5, 20)))
    labels = mx.array(np.random.default_rng(13).integers(0, 20, (3, 5)))
    a, b = _pair(14, 300)
    a, b = a[:300].reshape(3, 100), b[:300].reshape(3, 100)
    cases = [
        (lambda x, t: anyloss.cross_entropy(x, t, reduction="mean"), (x, labels)),
        (lambda p, q: anyloss.log_cosh_loss(p, q, reduction="mean"), (a, b)),
        (lambda p, q: anyloss.smooth_l1_loss(p, q, reduction="mean"), (a, b)),
        (lambda p, q: anyloss.kl_div_loss(p, q, reduction="mean"), (a, b)),
        (lambda p, q: anyloss.gaussian_nll_loss(p, q, mx.abs(q) + 0.1, reduction="mean"), (a, b)),
    ]
    for loss, args in cases:
        vg = mx.value_and_grad(loss)
        (vf, gf), (vs, gs) = mx.compile(vg)(*args), _portable(vg, *args)
        # gradients of cross_entropy are softmax - one-hot: a few ulps of the largest
        _close(vf, vs, 16)
        _close(gf, gs, 16, np.max(np.abs(np.asarray(gs))))
        _close(mx.vmap(loss)(*args), _portable(mx.vmap(loss), *args), 16)
        want = _portable(mx.vmap(mx.grad(loss)), *args)
        _close(mx.vmap(mx.grad(loss))(*args), want, 16, np.max(np.abs(np.asarray(want))))


def test_exp_is_mlx_exp():
    u = np.concatenate([np.linspace(-90, 90, 20001), [-np.inf, np.inf, np.nan, -87.68, -87.7, 88.0, 88.01]])
    u = mx.array(u.astype(np.float32))
    _close(mx.compile(fast_mlx._exp)(u), mx.exp(u), 2)
    w = mx.array(np.concatenate([[0.0, 1e-30, 1e-8, 1e-7, 6e-8], np.geomspace(1e-6, 1e6, 5000)]).astype(np.float32))
    _close(mx.compile(fast_mlx._log1p)(w), mx.log1p(w), 4)

"""MLX fast paths against the portable code: values and gradients, under
``mx.grad``, ``mx.value_and_grad``, ``mx.compile`` and ``mx.vmap``.

MLX's float32 transcendentals differ by a few ulps between its fused
(compiled) and eager kernels, so the comparison allows a few tens of ulps.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

import anyloss
from anyloss import _native

REDUCTIONS = ("none", "mean", "sum")
EXTREMES = np.array([np.inf, -np.inf, 0.0, -0.0, 40.0, -40.0, 1e-30, -1e-30, 17.0, -17.0], np.float32)


def _close(got, want, ulps=32):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    tol = ulps * 2.0**-23 * np.maximum(np.abs(want), np.finfo(np.float32).tiny)
    with np.errstate(invalid="ignore"):
        ok = same | (np.abs(got - want) <= tol)
    assert np.all(ok), (got[~ok], want[~ok])


def _bce_inputs(seed: int = 0, n: int = 600):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * 6.0).astype(np.float32)
    t = rng.random(n).astype(np.float32)
    t[: n // 3] = np.round(t[: n // 3])
    # every extreme logit against the targets 0, 1 and 0.5
    grid_x, grid_t = np.meshgrid(EXTREMES, np.array([0.0, 1.0, 0.5, -0.0], np.float32))
    x = np.concatenate([x, grid_x.ravel()])
    t = np.concatenate([t, grid_t.ravel()])
    w = rng.random(x.size).astype(np.float32)
    return mx.array(x), mx.array(t), mx.array(w)


def _both(fn, *args):
    fast = fn(*args)
    with _native.portable():
        slow = fn(*args)
    return fast, slow


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mlx_bce_with_logits_values_and_gradients(reduction, weighted):
    x, t, w = _bce_inputs()

    def loss(x, t, w):
        return anyloss.binary_cross_entropy(x, t, weights=w if weighted else None, reduction=reduction)

    def scalar(x, t, w):
        return mx.sum(loss(x, t, w))

    fast, slow = _both(loss, x, t, w)
    _close(fast, slow)
    for argnums in (0, 2):
        gf, gs = _both(mx.grad(scalar, argnums=argnums), x, t, w)
        _close(gf, gs)
    (vf, (gxf, gtf)), (vs, (gxs, gts)) = _both(mx.value_and_grad(scalar, argnums=(0, 1)), x, t, w)
    _close(vf, vs)
    _close(gxf, gxs)
    # The targets' gradient is -x (times the weight).  Where an infinite
    # logit keeps its term, the portable code's is nan (MLX's VJP of
    # ``where`` multiplies the cotangent inf by the mask 0); the fast path
    # gives the derivative itself, -inf * sign(x).
    xs, ts = np.asarray(x), np.asarray(t)
    kept = np.isinf(xs) & ~(((xs > 0) & (ts == 1)) | ((xs < 0) & (ts == 0)))
    _close(np.asarray(gtf)[~kept], np.asarray(gts)[~kept])
    assert np.all(np.isnan(np.asarray(gts)[kept]))
    assert np.array_equal(np.asarray(gtf)[kept], -xs[kept])


def test_mlx_bce_safeguards_exact():
    # tiny losses kept, matching infinities give 0 with gradient 0, the
    # targets' gradient is -x where the term is kept
    x = mx.array([40.0, -40.0, np.inf, -np.inf, np.inf, 0.0, -0.0], mx.float32)
    t = mx.array([1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0], mx.float32)
    loss = anyloss.binary_cross_entropy(x, t, reduction="none")
    want = np.array([np.exp(-40.0), np.exp(-40.0), 0.0, 0.0, np.inf, np.log(2.0), np.log(2.0)])
    _close(loss, want, ulps=8)
    gx, gt = mx.grad(lambda x, t: mx.sum(anyloss.binary_cross_entropy(x, t, reduction="none")), argnums=(0, 1))(x, t)
    sig40 = np.exp(-40.0)
    _close(gx, np.array([-sig40, sig40, 0.0, 0.0, 1.0, -0.5, 0.5]), ulps=8)
    _close(gt, np.array([-40.0, 40.0, 0.0, 0.0, -np.inf, -0.0, 0.0]), ulps=8)


def test_mlx_bce_under_compile_and_vmap():
    x, t, w = _bce_inputs(1, 300)
    x, t, w = (a[:300].reshape(3, 100) for a in (x, t, w))

    def loss(x, t):
        return anyloss.binary_cross_entropy(x, t, reduction="mean")

    compiled = mx.compile(mx.value_and_grad(loss))
    (vf, gf) = compiled(x, t)
    with _native.portable():
        vs, gs = mx.value_and_grad(loss)(x, t)
    _close(vf, vs)
    _close(gf, gs)
    # vmap over rows, and over columns with the targets unbatched
    fast, slow = _both(mx.vmap(loss), x, t)
    _close(fast, slow)
    fast, slow = _both(mx.vmap(loss, in_axes=(1, 1)), x, t)
    _close(fast, slow)
    fast, slow = _both(mx.vmap(loss, in_axes=(0, None)), x, t[0])
    _close(fast, slow)
    gf, gs = _both(mx.vmap(mx.grad(loss)), x, t)
    _close(gf, gs)

"""Every fast path in ``anyloss._native`` against the portable reference code.

Each test computes a loss twice on the same random inputs, once with the
fast paths on and once inside ``_native.portable()``, and asserts that the
values (and, for autodiff, the gradients) agree to within a few units in the
last place.  The portable code itself is tested against independent
references in the other test modules.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

import anyloss
from anyloss import _native
from anyloss._native import numpy as native_numpy

REDUCTIONS = ("none", "mean", "sum")
RTOL = {np.float32: 2e-6, np.float64: 1e-13}


def both(fn, *args, **kwargs):
    fast = fn(*args, **kwargs)
    with _native.portable():
        slow = fn(*args, **kwargs)
    return fast, slow


def as_np(x):
    return x.detach().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def assert_same(fast, slow, dtype, sums=False, atol=0.0):
    """Equal to a few ulps; ``sums``: long sums added in another order (the
    relative error of a sum of n positive terms grows with n); ``atol``: for
    values whose error is bounded in absolute terms (a cosine)."""
    assert type(fast) is type(slow)
    assert fast.dtype == slow.dtype
    assert tuple(fast.shape) == tuple(slow.shape)
    rtol = RTOL[dtype] * (10 if sums else 1)
    np.testing.assert_allclose(as_np(fast), as_np(slow), rtol=rtol, atol=atol)


def cosine_atol(dtype, reduction, n):
    """A cosine is a dot product over the norms: rounding the sums of its
    products in another order (or the vectors scaled, or not) moves it by a
    few ulps of 1, whatever its own size."""
    return 8 * float(np.finfo(dtype).eps) * (n if reduction == "sum" else 1)


def pair(seed, shape, dtype, scale=3.0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    y = (rng.standard_normal(shape) * scale).astype(dtype)
    return x, y


ELEMENTWISE = [
    ("mse_loss", {}),
    ("l1_loss", {}),
    ("huber_loss", {"delta": 1.0}),
    ("huber_loss", {"delta": 0.25}),
    ("smooth_l1_loss", {"beta": 1.0}),
    ("smooth_l1_loss", {"beta": 2.5}),
]


def test_portable_switches_fast_paths_off(monkeypatch):
    monkeypatch.setattr(_native, "_enabled", True)  # also under ANYLOSS_PORTABLE=1
    calls = []
    monkeypatch.setattr(native_numpy, "mse_loss", lambda *a: calls.append(a) or NotImplemented)
    x, y = pair(0, (5,), np.float32)
    anyloss.mse_loss(x, y)
    assert len(calls) == 1
    with _native.portable():
        assert not _native.enabled()
        anyloss.mse_loss(x, y)
    assert len(calls) == 1 and _native.enabled()


# ---------------------------------------------------------------------- numpy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,params", ELEMENTWISE)
@pytest.mark.parametrize("shape", [(7,), (3, 5, 11), (300_001,)])
def test_numpy_elementwise(name, params, reduction, dtype, shape):
    x, y = pair(1, shape, dtype)
    x_copy, y_copy = x.copy(), y.copy()
    fast, slow = both(getattr(anyloss, name), x, y, reduction=reduction, **params)
    assert_same(fast, slow, dtype)
    np.testing.assert_array_equal(x, x_copy)  # inputs untouched
    np.testing.assert_array_equal(y, y_copy)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(9,), (4, 6), (1 << 20,)])
def test_numpy_binary_cross_entropy(shape, weighted, reduction, dtype):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(shape) * 8).astype(dtype)
    x.flat[:4] = [40.0, -40.0, 0.0, -0.0]  # tiny losses and the x = 0 branch
    t = rng.random(shape).astype(dtype)
    t.flat[:2] = [1.0, 0.0]
    w = rng.random(shape).astype(dtype) if weighted else None
    fast, slow = both(anyloss.binary_cross_entropy, x, t, weights=w, reduction=reduction)
    assert_same(fast, slow, dtype)


def test_numpy_binary_cross_entropy_keeps_tiny_losses():
    x = np.array([30.0, -30.0, 90.0], np.float32)
    t = np.array([1.0, 0.0, 1.0], np.float32)
    loss = anyloss.binary_cross_entropy(x, t, reduction="none")
    expected = np.log1p(np.exp(-np.abs(x.astype(np.float64))))
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 70_000), (600, 2000)])
def test_numpy_cross_entropy(shape, weighted, smoothing, reduction, dtype):
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal(shape) * 4).astype(dtype)
    logits.reshape(-1, shape[-1])[0, :2] = logits.max() + 1  # a tie for the maximum
    logits.reshape(-1, shape[-1])[1, 0] = 60.0  # a confident row: a tiny loss
    targets = rng.integers(0, shape[-1], size=shape[:-1])
    targets.reshape(-1)[1] = 0
    w = rng.random(shape[:-1]).astype(dtype) if weighted else None
    copy = logits.copy()
    fast, slow = both(
        anyloss.cross_entropy, logits, targets, weights=w, label_smoothing=smoothing, reduction=reduction
    )
    assert_same(fast, slow, dtype, sums=True)
    np.testing.assert_array_equal(logits, copy)


def test_numpy_cross_entropy_tiny_loss():
    loss = anyloss.cross_entropy(np.array([[20.0, 0.0], [0.0, 30.0]], np.float32), np.array([0, 1]))
    np.testing.assert_allclose(loss, [np.log1p(np.exp(-20.0)), np.log1p(np.exp(-30.0))], rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(4, 3), (700, 1024), (3, 2, 50)])
def test_numpy_cosine_similarity(shape, reduction, dtype):
    a, b = pair(4, shape, dtype)
    a[0] = 0.0  # a zero vector
    b[1] *= 1e-30  # tiny norms, below eps
    fast, slow = both(anyloss.cosine_similarity_loss, a, b, axis=-1, reduction=reduction)
    assert_same(fast, slow, dtype, atol=cosine_atol(dtype, reduction, a.size // a.shape[-1]))


# ---------------------------------------------------------------------- torch


def t(a, grad=False):
    return torch.from_numpy(np.array(a, copy=True)).requires_grad_(grad)


def grads(fn, inputs, *rest, **kwargs):
    """Value and gradient of ``fn`` with fast paths on, then off."""
    out = []
    for fast in (True, False):
        leaves = [t(a, grad=True) for a in inputs]
        if fast:
            loss = fn(*leaves, *rest, **kwargs)
        else:
            with _native.portable():
                loss = fn(*leaves, *rest, **kwargs)
        total = loss.sum() if loss.ndim else loss
        total.backward()
        out.append((loss.detach(), [leaf.grad for leaf in leaves]))
    return out


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,params", ELEMENTWISE)
def test_torch_elementwise(name, params, reduction):
    x, y = pair(5, (3, 400), np.float32)
    fast, slow = both(getattr(anyloss, name), t(x), t(y), reduction=reduction, **params)
    assert_same(fast, slow, np.float32)
    (v1, g1), (v2, g2) = grads(getattr(anyloss, name), (x, y), reduction=reduction, **params)
    np.testing.assert_allclose(v1.numpy(), v2.numpy(), rtol=2e-6)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=2e-6, atol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_torch_binary_cross_entropy_and_cosine(reduction):
    x, y = pair(6, (64, 33), np.float32)
    target = (y > 0).astype(np.float32)
    fast, slow = both(anyloss.binary_cross_entropy, t(x), t(target), reduction=reduction)
    assert_same(fast, slow, np.float32)
    fast, slow = both(anyloss.cosine_similarity_loss, t(x), t(y), reduction=reduction)
    assert_same(fast, slow, np.float32, atol=cosine_atol(np.float32, reduction, 64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_torch_cross_entropy(weighted, smoothing, reduction, dtype):
    rng = np.random.default_rng(7)
    logits = (rng.standard_normal((40, 300)) * 4).astype(dtype)
    logits[0, 0] = 50.0
    targets = torch.from_numpy(rng.integers(0, 300, 40))
    targets[0] = 0
    w = torch.from_numpy(rng.random(40).astype(dtype)) if weighted else None
    kwargs = dict(weights=w, label_smoothing=smoothing, reduction=reduction)
    fast, slow = both(anyloss.cross_entropy, t(logits), targets, **kwargs)
    assert_same(fast, slow, dtype, sums=True)
    (v1, (g1,)), (v2, (g2,)) = grads(anyloss.cross_entropy, (logits,), targets, **kwargs)
    np.testing.assert_allclose(v1.numpy(), v2.numpy(), rtol=10 * RTOL[dtype])
    np.testing.assert_allclose(g1.numpy(), g2.numpy(), rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-9)


def bce_inputs(seed, shape, dtype, with_logits):
    """Random inputs with the extremes: infinite logits (with matching and
    mismatched targets), x = +-0, confident logits; probabilities exactly 0
    and 1, and below exp(-100)."""
    rng = np.random.default_rng(seed)
    if with_logits:
        x = (rng.standard_normal(shape) * 8).astype(dtype)
        x.flat[:8] = [np.inf, -np.inf, np.inf, -np.inf, 0.0, -0.0, 40.0, -40.0]
    else:
        x = rng.random(shape).astype(dtype)
        x.flat[:6] = [0.0, 1.0, 0.0, 1.0, np.finfo(dtype).tiny, 1e-45 if dtype == np.float32 else 1e-300]
    t = rng.random(shape).astype(dtype)
    t.flat[:8] = [1.0, 0.0, 0.0, 1.0, 0.3, 0.7, 1.0, 0.0]
    w = rng.random(shape).astype(dtype)
    return x, t, w


def bce_value_and_grads(fast, x, t, w, with_logits, reduction, targets_grad):
    xs, ts = t_(x, True), t_(t, targets_grad)
    with contextlib.nullcontext() if fast else _native.portable():
        loss = anyloss.binary_cross_entropy(
            xs, ts, weights=None if w is None else t_(w), with_logits=with_logits, reduction=reduction
        )
    upstream = torch.from_numpy(np.linspace(0.5, 2.0, loss.numel()).astype(x.dtype)).reshape(loss.shape)
    (loss * upstream).sum().backward()
    return loss, xs.grad, ts.grad


def t_(a, grad=False):
    return t(a, grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("with_logits", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("targets_grad", [False, True])
def test_torch_binary_cross_entropy_autograd(targets_grad, weighted, with_logits, reduction, dtype):
    # 70_000 elements: several blocks of the blocked loops
    x, t, w = bce_inputs(14, (7, 10_000), dtype, with_logits)
    w = w if weighted else None
    fast = bce_value_and_grads(True, x, t, w, with_logits, reduction, targets_grad)
    slow = bce_value_and_grads(False, x, t, w, with_logits, reduction, targets_grad)
    if _native.enabled():
        assert "BinaryCrossEntropy" in type(fast[0].grad_fn).__name__
    assert_same(fast[0].detach(), slow[0].detach(), dtype, sums=True)
    for g1, g2 in zip(fast[1:], slow[1:]):
        if not targets_grad and g2 is None:
            assert g1 is None
            continue
        np.testing.assert_allclose(g1.numpy(), g2.numpy(), rtol=RTOL[dtype], atol=0)


@pytest.mark.parametrize("with_logits", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_torch_binary_cross_entropy_double_backward(with_logits, weighted):
    x, t, w = bce_inputs(15, (6, 5), np.float64, with_logits)
    if with_logits:
        x[0, :2] = [3.0, -2.0]  # finite logits: second derivatives of inf are nan
    else:
        x[0, :2] = [0.3, 0.9]
    rng = np.random.default_rng(16)
    v = torch.from_numpy(rng.standard_normal((6, 5)))
    results = []
    for fast in (True, False):
        xs, ts = t_(x, True), t_(t, True)
        with contextlib.nullcontext() if fast else _native.portable():
            loss = anyloss.binary_cross_entropy(
                xs, ts, weights=t_(w) if weighted else None, with_logits=with_logits, reduction="mean"
            )
        gx, gt = torch.autograd.grad(loss, (xs, ts), create_graph=True)
        hx, ht = torch.autograd.grad((gx * v).sum() + (gt * v).sum(), (xs, ts), allow_unused=True)
        results.append([np.nan_to_num(a.numpy(), nan=7.0) for a in (gx.detach(), gt.detach(), hx, ht)])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_torch_binary_cross_entropy_falls_back(reduction):
    """Weights requiring a gradient run the portable code."""
    rng = np.random.default_rng(17)
    x = rng.standard_normal(20) * 4
    t = rng.random(20)
    ws = t_(rng.random(20), True)
    loss = anyloss.binary_cross_entropy(t_(x, True), t_(t), weights=ws, reduction=reduction)
    assert "BinaryCrossEntropy" not in type(loss.grad_fn).__name__
    (loss.sum() if loss.ndim else loss).backward()
    unweighted = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))  # d loss / d weights
    scale = 1 / x.size if reduction == "mean" else 1
    np.testing.assert_allclose(ws.grad.numpy(), unweighted * scale, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_numpy_binary_cross_entropy_infinite_logits(reduction, dtype):
    """Blocks with an infinite logit take the 0 * inf = 0 branch; others not."""
    x, t, _ = bce_inputs(18, (200_000,), dtype, True)
    x[150_000] = -np.inf
    t[150_000] = 0.0
    fast, slow = both(anyloss.binary_cross_entropy, x, t, reduction=reduction)
    assert_same(fast, slow, dtype, sums=True)
    part = anyloss.binary_cross_entropy(x[:4], t[:4], reduction="none")
    np.testing.assert_array_equal(part, [0.0, 0.0, np.inf, np.inf])


def test_torch_cross_entropy_double_backward():
    rng = np.random.default_rng(8)
    logits = rng.standard_normal((6, 5))
    targets = torch.from_numpy(rng.integers(0, 5, 6))
    v = torch.from_numpy(rng.standard_normal((6, 5)))
    hvps = []
    for fast in (True, False):
        x = t(logits, grad=True)
        if fast:
            loss = anyloss.cross_entropy(x, targets, reduction="sum")
        else:
            with _native.portable():
                loss = anyloss.cross_entropy(x, targets, reduction="sum")
        (g,) = torch.autograd.grad(loss, x, create_graph=True)
        (hvp,) = torch.autograd.grad((g * v).sum(), x)
        hvps.append(hvp.numpy())
    np.testing.assert_allclose(hvps[0], hvps[1], rtol=1e-10, atol=1e-14)


def test_torch_compile_and_func_use_portable_code():
    x, y = pair(9, (16,), np.float32)
    target = t(y)
    value = torch.func.grad(lambda a: anyloss.mse_loss(a, target))(t(x))
    np.testing.assert_allclose(value.numpy(), 2 * (x - y) / 16, rtol=1e-6)
    fast, slow = both(anyloss.cross_entropy, t(x.reshape(4, 4)), torch.tensor([0, 1, 2, 3]))
    assert_same(fast, slow, np.float32)


# ------------------------------------------------------------------------ jax


def _jax():
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


def cosine_inputs(seed, shape, dtype, case):
    a, b = pair(seed, shape, dtype)
    if case == "zero-vector":  # a zero vector: the scaled branch
        a[0] = 0.0
    elif case == "huge":  # squared norms overflow: the scaled branch
        a[1] *= np.finfo(dtype).max ** 0.75 / 10
    elif case == "tiny":  # squared norms underflow: the scaled branch
        b[1] *= np.finfo(dtype).tiny ** 0.6
    elif case == "below-eps":  # norms below eps, unscaled branch
        b[2] *= 1e-6
    return a, b


COSINE_CASES = ["random", "zero-vector", "huge", "tiny", "below-eps"]


@pytest.mark.parametrize(
    "case,eps,reduction,dtype",
    [(c, 1e-8, "none", d) for c in COSINE_CASES for d in (np.float32, np.float64)]
    + [("zero-vector", 0.0, "none", np.float64), ("random", 0.0, "mean", np.float32),
       ("random", 1e-8, "sum", np.float64), ("huge", 1e-8, "mean", np.float32)],
)
def test_jax_cosine_similarity(case, eps, reduction, dtype):
    jax = _jax()
    import jax.numpy as jnp

    a, b = cosine_inputs(10, (6, 40), dtype, case)
    ja, jb = jnp.asarray(a), jnp.asarray(b)

    def loss(x, y):
        return anyloss.cosine_similarity_loss(x, y, axis=1, eps=eps, reduction=reduction)

    def objective(x, y):
        out = loss(x, y)
        return jnp.sum(out * jnp.arange(1, out.size + 1, dtype=out.dtype).reshape(out.shape))

    fast = jax.jit(loss)(ja, jb)
    fast_grads = jax.jit(jax.grad(objective, argnums=(0, 1)))(ja, jb)
    eager = loss(ja, jb)
    with _native.portable():
        slow = loss(ja, jb)
        slow_grads = jax.grad(objective, argnums=(0, 1))(ja, jb)
    tol = RTOL[dtype] * 4
    np.testing.assert_allclose(np.asarray(fast), np.asarray(slow), rtol=tol, atol=0)
    np.testing.assert_allclose(np.asarray(eager), np.asarray(slow), rtol=tol, atol=0)
    assert fast.dtype == slow.dtype and fast.shape == slow.shape
    for g1, g2 in zip(fast_grads, slow_grads):
        g1, g2 = np.asarray(g1), np.asarray(g2)
        assert np.all(np.isfinite(g1)) or not _native.enabled()  # ANYLOSS_PORTABLE=1
        # The portable gradient passes through the scaling by the largest
        # magnitude: that adds rounding of a few ulps of the row's largest
        # entry, and nan where 1 / scale**2 overflows (a tiny vector), which
        # the fast path (scale-free) does not have.
        finite = np.isfinite(g2)
        scale = np.max(np.where(finite, np.abs(g2), 0), axis=1, keepdims=True)
        assert np.all((np.abs(g1 - g2) <= 10 * tol * scale) | ~finite), case


def test_jax_cosine_similarity_transforms():
    """vmap (both branches run), forward mode and second derivatives."""
    jax = _jax()
    import jax.numpy as jnp

    a, b = cosine_inputs(11, (3, 4, 7), np.float64, "zero-vector")
    ja, jb = jnp.asarray(a), jnp.asarray(b)

    def loss(x, y):
        return anyloss.cosine_similarity_loss(x, y, axis=-1, reduction="sum")

    results = []
    for fast in (True, False):
        with contextlib.nullcontext() if fast else _native.portable():
            v = jax.vmap(loss)(ja, jb)
            _, tangent = jax.jvp(loss, (ja, jb), (jb, ja))
            hvp = jax.grad(lambda x: jnp.sum(jax.grad(loss)(x, jb) * jb))(ja)
        results.append([np.asarray(r) for r in (v, tangent, hvp)])
    for r1, r2 in zip(*results):
        np.testing.assert_allclose(r1, r2, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", COSINE_CASES)
def test_numpy_and_torch_cosine_similarity_branches(case, reduction, dtype):
    """The unscaled rows and the scaled fallback, values (NumPy, PyTorch)
    and gradients (PyTorch, both inputs)."""
    a, b = cosine_inputs(12, (6, 256), dtype, case)
    atol = cosine_atol(dtype, reduction, 6)
    fast, slow = both(anyloss.cosine_similarity_loss, a, b, reduction=reduction)
    assert_same(fast, slow, dtype, atol=atol)
    weights = t(np.arange(1.0, 7.0, dtype=dtype))
    results = []
    for fast in (True, False):
        x, y = t(a, grad=True), t(b, grad=True)
        with contextlib.nullcontext() if fast else _native.portable():
            loss = anyloss.cosine_similarity_loss(x, y, reduction=reduction)
        (loss * weights if loss.ndim else loss).sum().backward()
        results.append((loss.detach().numpy(), x.grad.numpy(), y.grad.numpy()))
    (v1, ga1, gb1), (v2, ga2, gb2) = results
    np.testing.assert_allclose(v1, v2, rtol=RTOL[dtype], atol=atol)
    for g1, g2 in ((ga1, ga2), (gb1, gb2)):
        assert np.all(np.isfinite(g1)) or not _native.enabled()  # ANYLOSS_PORTABLE=1
        finite = np.isfinite(g2)  # see test_jax_cosine_similarity
        scale = np.max(np.where(finite, np.abs(g2), 0), axis=1, keepdims=True)
        assert np.all((np.abs(g1 - g2) <= 40 * RTOL[dtype] * scale) | ~finite), case


def test_torch_cosine_similarity_double_backward():
    rng = np.random.default_rng(13)
    a, b = rng.standard_normal((5, 7)), rng.standard_normal((5, 7))
    v = torch.from_numpy(rng.standard_normal((5, 7)))
    hvps = []
    for fast in (True, False):
        x, y = t(a, grad=True), t(b)
        with contextlib.nullcontext() if fast else _native.portable():
            loss = anyloss.cosine_similarity_loss(x, y, reduction="sum")
        (g,) = torch.autograd.grad(loss, x, create_graph=True)
        (hvp,) = torch.autograd.grad((g * v).sum(), x)
        hvps.append(hvp.numpy())
    np.testing.assert_allclose(hvps[0], hvps[1], rtol=1e-10, atol=1e-13)

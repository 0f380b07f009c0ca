"""sigmoid_focal_loss, softmax_focal_loss and poly1_cross_entropy.

Float64 references written from the definitions; the peers (torchvision's
sigmoid_focal_loss written out in PyTorch from its source, the textbook
softmax focal loss in PyTorch, optax's poly_loss_cross_entropy) on random
inputs, values and gradients; every library, autodiff and tracing through
the shared matrix (``matrix_checks.py``); saturated logits against mpmath;
bad arguments.
"""

from __future__ import annotations

import contextlib
import math

import mpmath as mp
import numpy as np
import pytest

import matrix_checks as mx_
from backends import LIBRARIES, to_lib, to_numpy
from test_bad_input import raises
from test_libraries import assert_close, reduce_ref

import anyloss
from anyloss import _native

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

# ------------------------------------------------------------------ float64 references


def _log_softmax(x, axis):
    z = x - np.max(x, axis=axis, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


def ref_sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0):
    p = 1.0 / (1.0 + np.exp(-inputs))
    ce = targets * np.logaddexp(0.0, -inputs) + (1 - targets) * np.logaddexp(0.0, inputs)
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss


def ref_softmax_focal_loss(logits, targets, gamma=2.0, class_weights=None, axis=-1):
    log_p = np.take_along_axis(_log_softmax(logits, axis), np.expand_dims(targets, axis), axis).squeeze(axis)
    loss = -((1 - np.exp(log_p)) ** gamma) * log_p
    return loss if class_weights is None else loss * class_weights[targets]


def ref_poly1_cross_entropy(logits, targets, epsilon=2.0, axis=-1):
    log_p = _log_softmax(logits, axis)
    if targets.ndim == logits.ndim:
        return -np.sum(targets * log_p, axis=axis) + epsilon * np.sum(targets * (1 - np.exp(log_p)), axis=axis)
    log_pt = np.take_along_axis(log_p, np.expand_dims(targets, axis), axis).squeeze(axis)
    return -log_pt + epsilon * (1 - np.exp(log_pt))


# ----------------------------------------------------------------------------- cases


def make_sigmoid(shape, soft=False):
    """Logits and targets: soft targets in (0.05, 0.95) (differentiable), or
    0/1 labels as integers."""

    def make(rng):
        inputs = rng.normal(scale=2.0, size=shape)
        if soft:
            targets = rng.uniform(0.05, 0.95, size=shape)
        else:
            targets = rng.integers(0, 2, size=shape).astype(np.int64)
        return {"inputs": inputs, "targets": targets}

    return make


def make_softmax(shape, axis, weights=False, probs=False):
    def make(rng):
        ax = axis % len(shape)
        logits = rng.normal(scale=2.0, size=shape)
        if probs:
            e = np.exp(rng.normal(size=shape))
            targets = e / e.sum(axis=ax, keepdims=True)
        else:
            targets = rng.integers(0, shape[ax], size=shape[:ax] + shape[ax + 1 :]).astype(np.int64)
        arrays = {"logits": logits, "targets": targets}
        if weights:
            arrays["class_weights"] = rng.uniform(0.5, 2.0, size=shape[ax])
        return arrays

    return make


S1, S2, S3 = (10,), (6, 5), (3, 4, 5)
CASES = mx_.cases_of([
    ("sfocal-default", "sigmoid_focal_loss", make_sigmoid(S2), {}, ref_sigmoid_focal_loss),
    ("sfocal-soft-gamma0.5-noalpha", "sigmoid_focal_loss", make_sigmoid(S3, soft=True),
     {"alpha": None, "gamma": 0.5}, ref_sigmoid_focal_loss),
    ("sfocal-soft-gamma1-alpha0.75", "sigmoid_focal_loss", make_sigmoid(S1, soft=True),
     {"alpha": 0.75, "gamma": 1}, ref_sigmoid_focal_loss),
    ("sfocal-gamma0", "sigmoid_focal_loss", make_sigmoid(S2, soft=True), {"gamma": 0.0},
     ref_sigmoid_focal_loss),
    ("mfocal-default", "softmax_focal_loss", make_softmax(S2, -1), {}, ref_softmax_focal_loss),
    ("mfocal-3d-axis1-weights-gamma0.5", "softmax_focal_loss", make_softmax(S3, 1, weights=True),
     {"axis": 1, "gamma": 0.5}, ref_softmax_focal_loss),
    ("mfocal-gamma3-weights", "softmax_focal_loss", make_softmax(S2, -1, weights=True), {"gamma": 3},
     ref_softmax_focal_loss),
    ("poly1-index", "poly1_cross_entropy", make_softmax(S2, -1), {}, ref_poly1_cross_entropy),
    ("poly1-probs-axis0-eps-1", "poly1_cross_entropy", make_softmax(S2, 0, probs=True),
     {"axis": 0, "epsilon": -1.0}, ref_poly1_cross_entropy),
    ("poly1-3d-axis1-eps0.5", "poly1_cross_entropy", make_softmax(S3, 1), {"axis": 1, "epsilon": 0.5},
     ref_poly1_cross_entropy),
])
IDS = [c.id for c in CASES]
FIRSTS = mx_.first_of_each(CASES)
FIRST_IDS = [c.id for c in FIRSTS]
LOSSES = ("poly1_cross_entropy", "sigmoid_focal_loss", "softmax_focal_loss")
# JAX compiles each case: the first of each loss and those with class weights or probabilities.
JAX_CASES = [c for c in CASES if c in FIRSTS or "weights" in c.id or "probs" in c.id]


def test_cases_cover_the_family():
    assert sorted({c.loss for c in CASES}) == sorted(LOSSES)


# ------------------------------------------------------------ every library, autodiff


@pytest.mark.parametrize("lib, dtype, case", mx_.value_params(CASES))
def test_values_type_shape_dtype(lib, dtype, case):
    mx_.check_values(lib, dtype, case)


@pytest.mark.parametrize("case", FIRSTS, ids=FIRST_IDS)
@pytest.mark.parametrize("lib", [lib for lib in LIBRARIES if lib != "numpy"])
def test_equals_numpy_float32(lib, case):
    mx_.check_equals_numpy(lib, case)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_torch_devices_and_gradcheck(case):
    mx_.check_torch_devices(case)
    mx_.check_torch_gradcheck(case)


@pytest.mark.parametrize("case", FIRSTS, ids=FIRST_IDS)
def test_torch_backward_and_compile(case):
    mx_.check_torch_backward(case)
    mx_.check_torch_compile(case)


@pytest.mark.parametrize("case", JAX_CASES, ids=[c.id for c in JAX_CASES])
def test_jax_grad_and_jit(case):
    mx_.check_jax_grad(case)
    mx_.check_jax_jit(case)
    mx_.check_jax_jit_static(case)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_mlx_grad_and_compile(case):
    mx_.check_mlx_grad(case)
    mx_.check_mlx_compile(case)


# ------------------------------------------------------------------------------ peers


def torchvision_sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0):
    """torchvision.ops.sigmoid_focal_loss, as its source writes it (alpha < 0: none)."""
    import torch.nn.functional as F
    import torch

    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return loss


def _torch_pair(rng, shape, soft):
    import torch

    x = torch.from_numpy(rng.normal(scale=3.0, size=shape)).requires_grad_(True)
    t = rng.uniform(0, 1, size=shape) if soft else rng.integers(0, 2, size=shape).astype(np.float64)
    return x, torch.from_numpy(t)


@pytest.mark.parametrize("alpha", [0.25, None, 0.9])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.5])
@pytest.mark.parametrize("soft", [False, True])
def test_sigmoid_focal_equals_torchvision(alpha, gamma, soft):
    """Values and the gradient wrt the logits, against torchvision's formula in float64."""
    import torch

    rng = np.random.default_rng(int(gamma * 10) + 3 * soft)
    x, t = _torch_pair(rng, (8, 7), soft)
    x2 = x.detach().clone().requires_grad_(True)
    for reduction in ("none", "mean", "sum"):
        ours = anyloss.sigmoid_focal_loss(x, t, alpha=alpha, gamma=gamma, reduction=reduction)
        theirs = torchvision_sigmoid_focal_loss(x2, t, -1 if alpha is None else alpha, gamma)
        theirs = {"none": theirs, "mean": theirs.mean(), "sum": theirs.sum()}[reduction]
        assert ours.shape == theirs.shape
        assert_close(to_numpy(ours), to_numpy(theirs), "float64")
    w = torch.from_numpy(rng.uniform(0.5, 1.5, size=(8, 7)))
    (g,) = torch.autograd.grad((anyloss.sigmoid_focal_loss(x, t, alpha=alpha, gamma=gamma) * w).sum(), x)
    (h,) = torch.autograd.grad(
        (torchvision_sigmoid_focal_loss(x2, t, -1 if alpha is None else alpha, gamma) * w).sum(), x2
    )
    assert_close(to_numpy(g), to_numpy(h), "float64")


@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 2.0), (None, 0.5)])
def test_sigmoid_focal_equals_optax(alpha, gamma):
    """Values and jax.grad against optax.losses.sigmoid_focal_loss (log space too), soft targets."""
    import jax
    import optax

    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(13)
    x = to_lib("jax", rng.normal(scale=4.0, size=(8, 7)))
    t = to_lib("jax", rng.uniform(0, 1, size=(8, 7)))
    kw = dict(alpha=alpha, gamma=gamma)
    theirs = jax.jit(lambda z: optax.losses.sigmoid_focal_loss(z, t, **kw))(x)
    assert_close(np.asarray(anyloss.sigmoid_focal_loss(x, t, **kw)), np.asarray(theirs), "float64")
    g = jax.jit(jax.grad(lambda z: anyloss.sigmoid_focal_loss(z, t, **kw, reduction="sum")))(x)
    h = jax.jit(jax.grad(lambda z: optax.losses.sigmoid_focal_loss(z, t, **kw).sum()))(x)
    assert_close(np.asarray(g), np.asarray(h), "float64")


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_focal_equals_the_torch_expression(gamma, weighted):
    """Against ``-w_y (1 - p_y)^gamma log p_y`` from torch.log_softmax, values and gradients."""
    import torch

    rng = np.random.default_rng(7 + int(10 * gamma) + weighted)
    x = torch.from_numpy(rng.normal(scale=3.0, size=(9, 6))).requires_grad_(True)
    y = torch.from_numpy(rng.integers(0, 6, size=9))
    w = torch.from_numpy(rng.uniform(0.5, 2.0, size=6)) if weighted else None
    log_p = torch.log_softmax(x, dim=-1).gather(1, y[:, None]).squeeze(1)
    theirs = -((1 - log_p.exp()) ** gamma) * log_p * (1.0 if w is None else w[y])
    ours = anyloss.softmax_focal_loss(x, y, gamma=gamma, class_weights=w)
    assert_close(to_numpy(ours), to_numpy(theirs), "float64")
    (g,) = torch.autograd.grad(ours.sum(), x)
    (h,) = torch.autograd.grad(theirs.sum(), x)
    assert_close(to_numpy(g), to_numpy(h), "float64")


@pytest.mark.parametrize(("epsilon", "probs"), [(2.0, False), (-1.0, False), (2.0, True), (0.5, True)])
def test_poly1_equals_optax(epsilon, probs):
    """Values and jax.grad against optax.losses.poly_loss_cross_entropy (one-hot labels for indices)."""
    import jax
    import jax.numpy as jnp
    import optax

    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(11 + probs)
    x = jnp.asarray(rng.normal(scale=3.0, size=(9, 6)))
    if probs:
        e = np.exp(rng.normal(size=(9, 6)))
        t = jnp.asarray(e / e.sum(axis=1, keepdims=True))
        labels = t
    else:
        t = jnp.asarray(rng.integers(0, 6, size=9))
        labels = jax.nn.one_hot(t, 6, dtype=jnp.float64)
    ours = anyloss.poly1_cross_entropy(x, t, epsilon=epsilon)
    # compiled: one XLA compilation instead of one per operation
    theirs = jax.jit(lambda z: optax.losses.poly_loss_cross_entropy(z, labels, epsilon=epsilon))(x)
    assert_close(np.asarray(ours), np.asarray(theirs), "float64")
    g = jax.jit(jax.grad(lambda z: anyloss.poly1_cross_entropy(z, t, epsilon=epsilon, reduction="sum")))(x)
    h = jax.jit(jax.grad(lambda z: optax.losses.poly_loss_cross_entropy(z, labels, epsilon=epsilon).sum()))(x)
    assert_close(np.asarray(g), np.asarray(h), "float64")


def test_poly1_axis1_equals_optax_on_moved_axis():
    import jax
    import optax

    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 4, 3, 3))
    y = rng.integers(0, 4, size=(2, 3, 3))
    ours = anyloss.poly1_cross_entropy(to_lib("jax", x), to_lib("jax", y), axis=1)
    labels = jax.nn.one_hot(np.asarray(y), 4, dtype="float64")
    theirs = jax.jit(optax.losses.poly_loss_cross_entropy)(np.moveaxis(x, 1, -1), labels)
    assert_close(np.asarray(ours), np.asarray(theirs), "float64")


# ------------------------------------------------------------------------ hard inputs

# The portable path on JAX runs op by op (a compile per primitive and shape):
# it is the formula its fast path compiles, checked on the other libraries.
HARD = [
    pytest.param(lib, path, id=f"{lib}-{path}")
    for lib in ("numpy", "torch", "jax", "mlx")
    for path in ("fast", "portable")
    if not (lib == "jax" and path == "portable")
]


def _path(path):
    return _native.portable() if path == "portable" else contextlib.nullcontext()


def mp_sigmoid_focal(x, t, alpha, gamma):
    x = x if isinstance(x, mp.mpf) else mp.mpf(float(x))
    t = mp.mpf(float(t))
    ce = t * mp.log1p(mp.exp(-x)) + (1 - t) * mp.log1p(mp.exp(x))
    m = t / (1 + mp.exp(x)) + (1 - t) / (1 + mp.exp(-x))  # 1 - p_t, without cancellation
    loss = ce * m**gamma
    return loss if alpha is None else loss * (alpha * t + (1 - alpha) * (1 - t))


SATURATED = np.array([-1e4, -200.0, -100.0, -30.0, -5.0, 0.0, 5.0, 30.0, 100.0, 200.0, 1e4])


def _close_to(got, exact, dtype, ulps=8, floor=None):
    """Within a few ulps of the exact value; values below the smallest normal
    number (or ``floor``) may be anything below it."""
    info = np.finfo(dtype)
    floor = 4 * float(info.tiny) if floor is None else floor
    for g, e in zip(np.ravel(got), exact):
        e = float(e)
        assert math.isfinite(g), (g, e)
        assert abs(g - e) <= ulps * float(info.eps) * abs(e) + floor, (g, e)


# Fast paths whose cross entropy of class indices is the native kernel's
# log(sum(exp)): exact to eps, not relatively (the differences page).
KERNEL_CE = ("torch", "jax")


def _ce_floor(lib, path, dtype):
    return float(np.finfo(dtype).eps) if path == "fast" and lib in KERNEL_CE else None


# MLX's own exp and log1p in float32 are off by up to about 10 ulps.
ULPS = {"mlx": 24}


@pytest.mark.parametrize("lib, path", HARD)
@pytest.mark.parametrize("gamma", [0.25, 2.0])
def test_sigmoid_focal_saturated_logits(lib, gamma, path):
    """Loss within a few ulps of mpmath's; the gradient finite and right
    wherever it is representable (torchvision's form gives NaN for gamma < 1)."""
    dtype = "float64" if lib != "mlx" else "float32"
    x = np.concatenate([SATURATED, SATURATED]).astype(dtype)
    t = np.repeat([0.0, 1.0], len(SATURATED)).astype(dtype)
    with mp.workdps(60):
        exact = [mp_sigmoid_focal(v, w, 0.25, gamma) for v, w in zip(x, t)]
        slope = [mp.diff(lambda z: mp_sigmoid_focal(z, w, 0.25, gamma), mp.mpf(float(v))) for v, w in zip(x, t)]
    with _path(path):
        got = to_numpy(anyloss.sigmoid_focal_loss(to_lib(lib, x), to_lib(lib, t), gamma=gamma))
        grad = _grad(lib, lambda z: anyloss.sigmoid_focal_loss(z, to_lib(lib, t), gamma=gamma, reduction="sum"), x)
    _close_to(got, exact, dtype, ULPS.get(lib, 8), _ce_floor(lib, path, dtype))
    if grad is None:
        return
    assert np.all(np.isfinite(grad)), grad
    # the gradient to a few ulps of the largest one (a norm-wise bound)
    scale = max(abs(float(s)) for s in slope)
    for g, s in zip(grad, slope):
        assert abs(g - float(s)) <= 64 * float(np.finfo(dtype).eps) * scale, (g, float(s))


def test_torchvision_form_gives_nan_where_ours_does_not():
    """The motivation, checked: torchvision's gradient is NaN at a saturated,
    right logit with gamma < 1; ours is 0 there."""
    import torch

    x = torch.tensor([120.0, -120.0], requires_grad=True)
    t = torch.tensor([1.0, 0.0])
    (g,) = torch.autograd.grad(torchvision_sigmoid_focal_loss(x, t, 0.25, 0.5).sum(), x)
    assert torch.isnan(g).all()
    (g,) = torch.autograd.grad(anyloss.sigmoid_focal_loss(x, t, gamma=0.5, reduction="sum"), x)
    assert torch.equal(g, torch.zeros(2))


@pytest.mark.parametrize("lib, path", HARD)
def test_sigmoid_focal_infinite_logits(lib, path):
    x = np.array([np.inf, -np.inf, np.inf, -np.inf], dtype=np.float32)
    t = np.array([1.0, 0.0, 0.0, 1.0], dtype=np.float32)
    with _path(path):
        got = to_numpy(anyloss.sigmoid_focal_loss(to_lib(lib, x), to_lib(lib, t), gamma=0.5))
    np.testing.assert_array_equal(got, [0.0, 0.0, np.inf, np.inf])


def _grad(lib, f, x):
    """The gradient of ``f`` at ``x`` by the library's autodiff (NumPy has none: None)."""
    if lib == "numpy":
        return None
    if lib == "torch":
        import torch

        z = torch.from_numpy(np.array(x)).requires_grad_(True)
        (g,) = torch.autograd.grad(f(z), z)
        return to_numpy(g)
    if lib == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
        return np.asarray(jax.grad(f)(to_lib("jax", x)))
    import mlx.core as mx

    return np.array(mx.grad(f)(mx.array(x)))


def mp_softmax_focal(row, y, gamma):
    row = [mp.mpf(float(v)) for v in row]
    lse = mp.log(mp.fsum(mp.exp(v) for v in row))
    log_p = row[y] - lse
    return -((-mp.expm1(log_p)) ** gamma) * log_p


@pytest.mark.parametrize("lib, path", HARD)
@pytest.mark.parametrize("gamma", [0.5])
def test_softmax_focal_confident_predictions(lib, gamma, path):
    """A confident, right prediction keeps its tiny loss (on the native
    cross entropy kernels: to eps); one beyond the dtype's range has loss 0
    and a finite (zero) gradient."""
    dtype = "float64" if lib != "mlx" else "float32"
    rows = np.array([[30.0, 0.0, 0.0], [80.0, 0.0, -1.0], [2000.0, 0.0, 0.0], [-40.0, 0.0, 3.0]], dtype=dtype)
    y = np.array([0, 0, 0, 0])
    with mp.workdps(60):
        exact = [mp_softmax_focal(r, 0, gamma) for r in rows]
    with _path(path):
        got = to_numpy(anyloss.softmax_focal_loss(to_lib(lib, rows), to_lib(lib, y), gamma=gamma))
        grad = _grad(lib, lambda z: anyloss.softmax_focal_loss(z, to_lib(lib, y), gamma=gamma, reduction="sum"), rows)
    _close_to(got, exact, dtype, ULPS.get(lib, 8), _ce_floor(lib, path, dtype))
    if grad is None:
        return
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(grad[2], 0.0)


@pytest.mark.parametrize("lib, path", HARD)
def test_poly1_confident_prediction_keeps_its_loss(lib, path):
    """CE + eps (1 - p) with 1 - p = 2e-17: both terms exact (1 - p as 1 - exp(-CE) is 0;
    with class indices on the native cross entropy kernels: to eps)."""
    dtype = "float64" if lib != "mlx" else "float32"
    rows = np.array([[40.0, 0.0, 0.0], [-3.0, 1.0, 0.0]], dtype=dtype)
    probs = np.array([[1.0, 0.0, 0.0], [0.2, 0.5, 0.3]], dtype=dtype)
    with mp.workdps(60):
        def exact(row, t):
            lse = mp.log(mp.fsum(mp.exp(mp.mpf(float(v))) for v in row))
            logp = [mp.mpf(float(v)) - lse for v in row]
            return -mp.fsum(mp.mpf(float(a)) * b for a, b in zip(t, logp)) + 2 * mp.fsum(
                mp.mpf(float(a)) * (1 - mp.exp(b)) for a, b in zip(t, logp))
        want_idx = [exact(rows[0], [1, 0, 0]), exact(rows[1], [0, 1, 0])]
        want_p = [exact(r, t) for r, t in zip(rows, probs)]
    with _path(path):
        got_idx = to_numpy(anyloss.poly1_cross_entropy(to_lib(lib, rows), to_lib(lib, np.array([0, 1]))))
        got_p = to_numpy(anyloss.poly1_cross_entropy(to_lib(lib, rows), to_lib(lib, probs)))
    _close_to(got_idx, want_idx, dtype, ULPS.get(lib, 8), _ce_floor(lib, path, dtype))
    _close_to(got_p, want_p, dtype, ULPS.get(lib, 8))


@pytest.mark.parametrize("lib", ["jax", "mlx", "torch"])
def test_unchecked_class_indices_give_nan(lib):
    """Under a trace (jax.jit, mx.compile, torch.func) the indices cannot be
    read: out of range gives NaN, never a number."""
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    y = np.array([0, 4, -1])
    w = np.ones(4, dtype=np.float32)
    fns = [
        lambda a, b: anyloss.softmax_focal_loss(a, b, class_weights=to_lib(lib, w)),
        lambda a, b: anyloss.poly1_cross_entropy(a, b),
    ]
    for fn in fns:
        if lib == "jax":
            import jax

            got = np.asarray(jax.jit(fn)(to_lib(lib, x), to_lib(lib, y)))
        elif lib == "mlx":
            import mlx.core as mx

            got = np.array(mx.compile(fn)(mx.array(x), mx.array(y)))
        else:
            import torch

            # torch.func wraps the tensors: their values cannot be read either
            got = to_numpy(torch.func.vmap(fn)(torch.from_numpy(x)[None], torch.from_numpy(y)[None])[0])
        assert np.isfinite(got[0]) and np.isnan(got[1:]).all(), got


# ------------------------------------------------------------------------- bad inputs

X = np.random.default_rng(3).normal(size=(4, 3))
Y = np.array([0, 2, 1, 0])
T01 = np.array([[1.0, 0.0, 1.0]] * 4)


@pytest.mark.parametrize("lib", ["numpy", "torch", "jax"])
def test_bad_arguments(lib):
    L = lambda a: to_lib(lib, a)  # noqa: E731
    sf = anyloss.sigmoid_focal_loss
    with raises(ValueError, "sigmoid_focal_loss", "gamma", "-0.5"):
        sf(L(X), L(T01), gamma=-0.5)
    with raises(ValueError, "sigmoid_focal_loss", "alpha", "[0, 1]", "1.5"):
        sf(L(X), L(T01), alpha=1.5)
    with raises(ValueError, "sigmoid_focal_loss", "alpha", "alpha=None"):
        sf(L(X), L(T01), alpha=-1)
    with raises(TypeError, "sigmoid_focal_loss", "alpha"):
        sf(L(X), L(T01), alpha="0.25")
    with raises(ValueError, "sigmoid_focal_loss", "targets", "[0, 1]", "-1"):
        sf(L(X), L(np.sign(X)))
    with raises(ValueError, "sigmoid_focal_loss", "(4, 3)", "(4, 1)", "no broadcasting"):
        sf(L(X), L(T01[:, :1]))
    with raises(ValueError, "sigmoid_focal_loss", "reduction", "'max'"):
        sf(L(X), L(T01), reduction="max")
    mf = anyloss.softmax_focal_loss
    with raises(ValueError, "softmax_focal_loss", "gamma", "-1"):
        mf(L(X), L(Y), gamma=-1)
    with raises(ValueError, "softmax_focal_loss", "targets", "from 0 to 3", "3 entries"):
        mf(L(X), L(np.array([0, 3, 1, 0])))
    with raises(TypeError, "softmax_focal_loss", "targets", "integer"):
        mf(L(X), L(Y.astype(np.float64)))
    with raises(ValueError, "softmax_focal_loss", "targets", "(4, 3)", "(3,)"):
        mf(L(X), L(Y[:3]))
    with raises(ValueError, "softmax_focal_loss", "class_weights", "(4,)", "(3,)"):
        mf(L(X), L(Y), class_weights=L(np.ones(4)))
    with raises(TypeError, "softmax_focal_loss", "class_weights", "floating"):
        mf(L(X), L(Y), class_weights=L(np.ones(3, dtype=np.int64)))
    with raises(ValueError, "softmax_focal_loss", "axis=2"):
        mf(L(X), L(Y), axis=2)
    with raises(ValueError, "softmax_focal_loss", "0-d"):
        mf(L(np.float64(1.0)), L(np.int64(0)))
    pc = anyloss.poly1_cross_entropy
    with raises(ValueError, "poly1_cross_entropy", "epsilon", "inf"):
        pc(L(X), L(Y), epsilon=math.inf)
    with raises(ValueError, "poly1_cross_entropy", "targets", "from -1 to 2"):
        pc(L(X), L(np.array([0, 2, -1, 0])))
    with raises(ValueError, "poly1_cross_entropy", "targets", "(4, 3)", "(4, 2)"):
        pc(L(X), L(T01[:, :2]))
    with raises(ValueError, "poly1_cross_entropy", "targets", "[0, 1]"):
        pc(L(X), L(2 * T01))


def test_arrays_of_two_libraries():
    with raises(TypeError, "softmax_focal_loss", "one library", "class_weights"):
        anyloss.softmax_focal_loss(X, Y, class_weights=to_lib("torch", np.ones(3)))


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_inputs_are_not_changed(lib):
    x, y, w, t = X.copy(), Y.copy(), np.ones(3), T01.copy()
    args = [(anyloss.sigmoid_focal_loss, (x, t), {"alpha": None, "gamma": 0.5}),
            (anyloss.softmax_focal_loss, (x, y), {"class_weights": w}),
            (anyloss.poly1_cross_entropy, (x, t / 2), {}),
            (anyloss.poly1_cross_entropy, (x.astype(np.float16), y), {"reduction": "mean"})]
    for fn, arrays, kw in args:
        before = [a.copy() for a in arrays]
        fn(*(to_lib(lib, a) for a in arrays), **{k: (to_lib(lib, v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()})
        for a, b in zip(arrays, before):
            np.testing.assert_array_equal(a, b)


def test_reductions_with_class_weights_are_plain_means():
    """'mean' is the mean over examples of the weighted losses (not PyTorch
    cross_entropy's weighted mean)."""
    w = np.array([0.5, 2.0, 1.0])
    per = anyloss.softmax_focal_loss(X, Y, class_weights=w)
    assert_close(anyloss.softmax_focal_loss(X, Y, class_weights=w, reduction="mean"), reduce_ref(per, "mean"), "float64")
    assert_close(anyloss.softmax_focal_loss(X, Y, class_weights=w, reduction="sum"), reduce_ref(per, "sum"), "float64")
    assert_close(per, ref_softmax_focal_loss(X, Y, class_weights=w), "float64")


@pytest.mark.parametrize("lib", ["numpy", "torch", "jax"])
def test_sigmoid_focal_plain_form(lib):
    """The plain form is the formula bit for bit where it is not NaN, and NaN
    exactly where an infinite logit meets its matching target."""
    from anyloss import _formulas as F
    import array_api_compat

    x = np.array([3.0, -1.0, 0.0, 40.0, -200.0, np.inf, -np.inf, np.inf], dtype=np.float32)
    t = np.array([1.0, 0.3, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0], dtype=np.float32)
    X, T = to_lib(lib, x), to_lib(lib, t)
    xp = array_api_compat.array_namespace(X)
    for alpha, gamma in [(0.25, 2.0), (None, 0.5), (0.5, 0.0)]:
        plain = to_numpy(F.sigmoid_focal_plain(xp, X, T, alpha, gamma))
        formula = to_numpy(F.sigmoid_focal_loss(xp, X, T, alpha, gamma))
        np.testing.assert_array_equal(np.isnan(plain), [False] * 5 + [True, True, False])
        np.testing.assert_array_equal(plain[~np.isnan(plain)], formula[~np.isnan(plain)])

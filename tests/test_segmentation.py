"""dice_loss: the Dice / Jaccard / Tversky loss per sample.

A float64 reference written from the definition; optax.losses.dice_loss as
the peer on channels-last inputs (values and jax.grad), with class indices
and probability targets, one class (sigmoid) and several, probabilities as
inputs, empty classes; every library, autodiff and tracing through the
shared matrix (``matrix_checks.py``); hard inputs against mpmath; bad arguments.
"""

from __future__ import annotations

import contextlib

import mpmath as mp
import numpy as np
import pytest

import matrix_checks as mx_
from backends import LIBRARIES, to_lib, to_numpy
from test_bad_input import raises
from test_libraries import assert_close

import anyloss
from anyloss import _native

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

# ------------------------------------------------------------------- float64 reference


def ref_dice_loss(inputs, targets, alpha=0.5, beta=0.5, smooth=1.0, axis=-1, from_logits=True):
    x = np.moveaxis(inputs, axis, -1)
    n = x.shape[-1]
    if not from_logits:
        p = x
    elif n == 1:
        p = 1.0 / (1.0 + np.exp(-x))
    else:
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        p = e / e.sum(axis=-1, keepdims=True)
    if targets.ndim == inputs.ndim:
        t = np.moveaxis(targets, axis, -1).astype(np.float64)
    elif n == 1:
        t = targets[..., None].astype(np.float64)
    else:
        t = (targets[..., None] == np.arange(n)).astype(np.float64)
    spatial = tuple(range(1, x.ndim - 1))
    tp, fp, fn = (np.sum(v, axis=spatial) for v in (p * t, p * (1 - t), (1 - p) * t))
    num, den = tp + smooth, tp + alpha * fp + beta * fn + smooth
    with np.errstate(invalid="ignore"):
        loss = np.where(den == 0, 0.0, 1 - num / den)
    return loss.mean(axis=-1)


# ----------------------------------------------------------------------------- cases


def make_dice(shape, axis=-1, probs=False, prob_inputs=False):
    def make(rng):
        ax = axis % len(shape)
        n = shape[ax]
        if prob_inputs:
            e = np.exp(rng.normal(size=shape))
            inputs = e / e.sum(axis=ax, keepdims=True)
        else:
            inputs = rng.normal(scale=2.0, size=shape)
        if probs:
            e = np.exp(rng.normal(scale=2.0, size=shape))
            targets = e / e.sum(axis=ax, keepdims=True)
        else:
            targets = rng.integers(0, 2 if n == 1 else n, size=shape[:ax] + shape[ax + 1 :]).astype(np.int64)
        return {"inputs": inputs, "targets": targets}

    return make


CASES = mx_.cases_of([
    ("dice-default", "dice_loss", make_dice((2, 4, 5, 3)), {}, ref_dice_loss),
    ("dice-axis1-probs-jaccard", "dice_loss", make_dice((2, 3, 4, 5), axis=1, probs=True),
     {"axis": 1, "alpha": 1.0, "beta": 1.0}, ref_dice_loss),
    ("dice-one-class", "dice_loss", make_dice((3, 6, 1)), {"smooth": 0.5}, ref_dice_loss),
    ("dice-2d-tversky", "dice_loss", make_dice((6, 5)), {"alpha": 0.3, "beta": 0.7, "smooth": 0.5},
     ref_dice_loss),
    ("dice-prob-inputs-smooth0", "dice_loss", make_dice((2, 6, 3), prob_inputs=True),
     {"from_logits": False, "smooth": 0.0}, ref_dice_loss),
])
IDS = [c.id for c in CASES]
JAX_CASES = CASES[:3]


# ------------------------------------------------------------ every library, autodiff


@pytest.mark.parametrize("lib, dtype, case", mx_.value_params(CASES))
def test_values_type_shape_dtype(lib, dtype, case):
    mx_.check_values(lib, dtype, case)


@pytest.mark.parametrize("case", CASES[:2], ids=IDS[:2])
@pytest.mark.parametrize("lib", [lib for lib in LIBRARIES if lib != "numpy"])
def test_equals_numpy_float32(lib, case):
    mx_.check_equals_numpy(lib, case)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_torch_devices_and_gradcheck(case):
    mx_.check_torch_devices(case)
    mx_.check_torch_gradcheck(case)


@pytest.mark.parametrize("case", CASES[:2], ids=IDS[:2])
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


# ------------------------------------------------------------------------------- peer


def _jax():
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


def _optax_dice(x, onehot, **kw):
    import optax

    return optax.losses.dice_loss(x, onehot, **kw)


@pytest.mark.parametrize(
    ("shape", "alpha", "beta", "smooth", "probs"),
    [
        ((2, 6, 7, 4), 0.5, 0.5, 1.0, False),
        ((2, 6, 7, 4), 1.0, 1.0, 1e-5, False),
        ((3, 8, 3), 0.3, 0.7, 0.0, True),
        ((3, 5, 5, 1), 0.5, 0.5, 1.0, False),
    ],
)
def test_equals_optax(shape, alpha, beta, smooth, probs):
    """Values and jax.grad against optax.losses.dice_loss (one-hot targets there)."""
    jax = _jax()
    import jax.numpy as jnp

    rng = np.random.default_rng(len(shape) + int(10 * alpha))
    n = shape[-1]
    x = jnp.asarray(rng.normal(scale=2.0, size=shape))
    labels = rng.integers(0, 2 if n == 1 else n, size=shape[:-1])
    labels[0] = 0  # an empty class in the first sample (every class but 0)
    if probs:
        e = np.exp(rng.normal(scale=2.0, size=shape))
        t = jnp.asarray(e / e.sum(axis=-1, keepdims=True))
        onehot = t
    else:
        t = jnp.asarray(labels)
        onehot = jnp.asarray(labels[..., None] if n == 1 else np.eye(n)[labels])
    kw = dict(alpha=alpha, beta=beta, smooth=smooth)
    ours = anyloss.dice_loss(x, t, **kw)
    # compiled: one XLA compilation instead of one per operation
    theirs = jax.jit(lambda z: _optax_dice(z, onehot, **kw))(x)
    assert ours.shape == theirs.shape == (shape[0],)
    assert_close(np.asarray(ours), np.asarray(theirs), "float64")
    g = jax.jit(jax.grad(lambda z: anyloss.dice_loss(z, t, **kw, reduction="sum")))(x)
    h = jax.jit(jax.grad(lambda z: _optax_dice(z, onehot, **kw).sum()))(x)
    assert_close(np.asarray(g), np.asarray(h), "float64")
    # reductions: over the samples
    assert_close(np.asarray(anyloss.dice_loss(x, t, **kw, reduction="mean")), np.asarray(theirs).mean(), "float64")


def test_probability_inputs_equal_optax_without_softmax():
    _jax()
    rng = np.random.default_rng(9)
    e = np.exp(rng.normal(size=(2, 5, 3)))
    p = e / e.sum(axis=-1, keepdims=True)
    labels = rng.integers(0, 3, size=(2, 5))
    ours = anyloss.dice_loss(to_lib("jax", p), to_lib("jax", labels), from_logits=False)
    theirs = _optax_dice(to_lib("jax", p), to_lib("jax", np.eye(3)[labels]), apply_softmax=False)
    assert_close(np.asarray(ours), np.asarray(theirs), "float64")


@pytest.mark.parametrize("lib", ["numpy", "torch", "jax", "mlx"])
def test_channels_first_equals_channels_last(lib):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)  # (N, C, H, W)
    y = rng.integers(0, 3, size=(2, 4, 5))
    first = anyloss.dice_loss(to_lib(lib, x), to_lib(lib, y), axis=1)
    last = anyloss.dice_loss(to_lib(lib, np.ascontiguousarray(np.moveaxis(x, 1, -1))), to_lib(lib, y))
    assert_close(to_numpy(first), to_numpy(last), "float32")


def test_float_masks_with_one_class():
    """One class: float 0/1 masks without the class axis are the targets' probabilities."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 6, 1))
    m = rng.integers(0, 2, size=(3, 6))
    want = ref_dice_loss(x, m)
    assert_close(anyloss.dice_loss(x, m.astype(np.float64)), want, "float64")
    assert_close(anyloss.dice_loss(x, m), want, "float64")
    assert_close(anyloss.dice_loss(x, m[..., None].astype(np.float32)), want, "float32")


# ------------------------------------------------------------------------ hard inputs

HARD = [
    pytest.param(lib, path, id=f"{lib}-{path}")
    for lib in ("numpy", "torch", "jax", "mlx")
    for path in ("fast", "portable")
    if not (lib == "jax" and path == "portable")  # op by op: the compiled formula is checked
]


def _path(path):
    return _native.portable() if path == "portable" else contextlib.nullcontext()


def _grad(lib, f, x):
    if lib == "torch":
        import torch

        z = torch.from_numpy(np.array(x)).requires_grad_(True)
        (g,) = torch.autograd.grad(f(z), z)
        return to_numpy(g)
    if lib == "jax":
        return np.asarray(_jax().grad(f)(to_lib("jax", x)))
    if lib == "mlx":
        import mlx.core as mx

        return np.array(mx.grad(f)(mx.array(x)))
    return None


@pytest.mark.parametrize("lib, path", HARD)
def test_empty_classes(lib, path):
    """A class absent from targets and predictions: finite with smooth > 0
    (optax's numbers), 0 rather than 0/0 with smooth = 0; finite gradients."""
    p = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], dtype=np.float32)  # class 2 predicted nowhere
    y = np.array([[0, 1]])  # and absent
    with _path(path):
        got0 = to_numpy(anyloss.dice_loss(to_lib(lib, p), to_lib(lib, y), from_logits=False, smooth=0.0))
        got1 = to_numpy(anyloss.dice_loss(to_lib(lib, p), to_lib(lib, y), from_logits=False))
        grad = _grad(lib, lambda z: anyloss.dice_loss(z, to_lib(lib, y), from_logits=False, smooth=0.0, reduction="sum"), p)
    np.testing.assert_array_equal(got0, [0.0])
    np.testing.assert_array_equal(got1, [0.0])
    if grad is not None:
        assert np.all(np.isfinite(grad)), grad
    # logits: the empty class's predictions are small but not 0
    x = np.array([[[4.0, -4.0, -4.0], [-4.0, 4.0, -4.0]]], dtype=np.float32)
    with _path(path):
        got = to_numpy(anyloss.dice_loss(to_lib(lib, x), to_lib(lib, y)))
    assert_close(got, ref_dice_loss(x.astype(np.float64), y), "float32", factor=20)


def mp_dice(row_logits, labels, alpha, beta, smooth):
    """One sample, channels-last logits (pixels, classes), in mpmath."""
    n = len(row_logits[0])
    probs = []
    for row in row_logits:
        e = [mp.exp(mp.mpf(float(v))) for v in row]
        s = mp.fsum(e)
        probs.append([v / s for v in e])
    losses = []
    for c in range(n):
        t = [1 if lab == c else 0 for lab in labels]
        tp = mp.fsum(p[c] * k for p, k in zip(probs, t))
        fp = mp.fsum(p[c] * (1 - k) for p, k in zip(probs, t))
        fn = mp.fsum((1 - p[c]) * k for p, k in zip(probs, t))
        losses.append(1 - (tp + smooth) / (tp + alpha * fp + beta * fn + smooth))
    return mp.fsum(losses) / n


def mp_dice_sigmoid(logits, labels, alpha, beta, smooth):
    """One sample, one class (the sigmoid), in mpmath."""
    p = [1 / (1 + mp.exp(-mp.mpf(float(v)))) for v in logits]
    q = [1 / (1 + mp.exp(mp.mpf(float(v)))) for v in logits]  # 1 - p without cancellation
    tp = mp.fsum(a * k for a, k in zip(p, labels))
    fp = mp.fsum(a * (1 - k) for a, k in zip(p, labels))
    fn = mp.fsum(b * k for b, k in zip(q, labels))
    return (alpha * fp + beta * fn) / (tp + alpha * fp + beta * fn + smooth)


@pytest.mark.parametrize("lib, path", HARD)
def test_confident_predictions_keep_their_loss(lib, path):
    """Saturated, right logits: the loss is tiny and right to about eps
    (absolutely: the sums are rounded, as optax's), one class or several; far
    saturated ones (softmax exactly one-hot) give 0 and a finite gradient."""
    dtype = "float64" if lib != "mlx" else "float32"
    ulps = 32 if lib == "mlx" else 8
    eps = float(np.finfo(dtype).eps)
    x = np.array([[[12.0, -12.0], [-12.0, 12.0], [12.0, -12.0]]], dtype=dtype)
    y = np.array([[0, 1, 0]])
    binary = np.array([[[12.0], [-12.0], [12.0]]], dtype=dtype)
    with mp.workdps(50):
        exact = float(mp_dice(x[0], y[0], 0.5, 0.5, 0.0))
        exact_binary = float(mp_dice_sigmoid(binary[0, :, 0], 1 - y[0], 0.5, 0.5, 0.0))
    with _path(path):
        got = to_numpy(anyloss.dice_loss(to_lib(lib, x), to_lib(lib, y), smooth=0.0))
        got_binary = to_numpy(anyloss.dice_loss(to_lib(lib, binary), to_lib(lib, 1 - y), smooth=0.0))
        far = to_numpy(anyloss.dice_loss(to_lib(lib, 100 * x), to_lib(lib, y), smooth=0.0))
        grad = _grad(lib, lambda z: anyloss.dice_loss(z, to_lib(lib, y), smooth=0.0, reduction="sum"), 100 * x)
    assert abs(float(got[0]) - exact) <= ulps * eps, (got, exact)
    assert abs(float(got_binary[0]) - exact_binary) <= ulps * eps, (got_binary, exact_binary)
    assert got[0] >= 0 and got_binary[0] >= 0
    np.testing.assert_array_equal(far, [0.0])
    if grad is not None:
        assert np.all(np.isfinite(grad)), grad


@pytest.mark.parametrize("lib", ["jax", "mlx", "torch"])
def test_unchecked_class_indices_give_nan(lib):
    """Under a trace the indices cannot be read: a sample with one out of range has loss NaN."""
    x = np.random.default_rng(0).normal(size=(3, 4, 3)).astype(np.float32)
    y = np.array([[0, 1, 2, 0], [0, 3, 1, 1], [-1, 0, 0, 0]])

    def fn(a, b):
        return anyloss.dice_loss(a, b)

    if lib == "jax":
        got = np.asarray(_jax().jit(fn)(to_lib(lib, x), to_lib(lib, y)))
    elif lib == "mlx":
        import mlx.core as mx

        got = np.array(mx.compile(fn)(mx.array(x), mx.array(y)))
    else:
        import torch

        got = to_numpy(torch.func.vmap(fn)(torch.from_numpy(x)[None], torch.from_numpy(y)[None])[0])
    assert np.isfinite(got[0]) and np.isnan(got[1:]).all(), got


# ------------------------------------------------------------------------- bad inputs

X = np.random.default_rng(3).normal(size=(2, 4, 3))
Y = np.random.default_rng(4).integers(0, 3, size=(2, 4))


@pytest.mark.parametrize("lib", ["numpy", "torch", "jax"])
def test_bad_arguments(lib):
    L = lambda a: to_lib(lib, a)  # noqa: E731
    d = anyloss.dice_loss
    with raises(ValueError, "dice_loss", "axis=0", "batch axis"):
        d(L(X), L(Y), axis=0)
    with raises(ValueError, "dice_loss", "axis=3"):
        d(L(X), L(Y), axis=3)
    with raises(ValueError, "dice_loss", "batch axis and a class axis", "(3,)"):
        d(L(X[0, 0]), L(Y[0, :1]))
    with raises(ValueError, "dice_loss", "targets", "(2, 3)", "(2, 4)", "(2, 4, 3)"):
        d(L(X), L(Y[:, :3]))
    with raises(TypeError, "dice_loss", "targets", "integer"):
        d(L(X), L(Y.astype(np.float64)))
    with raises(ValueError, "dice_loss", "targets", "to 3", "3 entries", "<= 2"):
        d(L(X), L(np.where(Y == 0, 3, Y)))
    with raises(ValueError, "dice_loss", "targets", "1 entry", "<= 1"):
        d(L(X[..., :1]), L(2 * np.ones((2, 4), dtype=np.int64)))
    with raises(ValueError, "dice_loss", "inputs", "[0, 1]", "from_logits=True"):
        d(L(X), L(Y), from_logits=False)
    with raises(ValueError, "dice_loss", "targets", "[0, 1]"):
        d(L(X), L(2 * np.eye(3)[Y]))
    with raises(ValueError, "dice_loss", "alpha", "-0.5"):
        d(L(X), L(Y), alpha=-0.5)
    with raises(ValueError, "dice_loss", "smooth", "-1"):
        d(L(X), L(Y), smooth=-1)
    with raises(ValueError, "dice_loss", "reduction", "'batchmean'"):
        d(L(X), L(Y), reduction="batchmean")


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_inputs_are_not_changed(lib):
    x, y, t = X.copy(), Y.copy(), np.eye(3)[Y]
    for arrays, kw in [((x, y), {}), ((x, t), {"axis": 2, "smooth": 0.0}), ((x.astype(np.float16), y), {"reduction": "mean"})]:
        before = [a.copy() for a in arrays]
        anyloss.dice_loss(*(to_lib(lib, a) for a in arrays), **kw)
        for a, b in zip(arrays, before):
            np.testing.assert_array_equal(a, b)

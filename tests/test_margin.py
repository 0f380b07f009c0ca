"""multi_margin_loss, soft_margin_loss, multilabel_soft_margin_loss and squared_hinge_loss.

Float64 references written from the definitions; PyTorch's own functions
(``F.multi_margin_loss``, ``F.soft_margin_loss``,
``F.multilabel_soft_margin_loss``) and ``F.relu(1 - y x) ** 2`` as peers on
random inputs, values and gradients, every reduction; every library,
autodiff and tracing through the shared matrix (``matrix_checks.py``); hard
inputs; bad arguments.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import matrix_checks as mx_
from backends import LIBRARIES, to_lib, to_numpy
from test_bad_input import raises
from test_libraries import _away, _signs, assert_close

import anyloss
from anyloss import _native

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

# ------------------------------------------------------------------ float64 references


def ref_multi_margin_loss(inputs, targets, p=1, margin=1.0, class_weights=None):
    x = np.reshape(inputs, (-1, inputs.shape[-1]))
    y = np.reshape(targets, (-1,))
    n = x.shape[1]
    loss = np.zeros(len(y))
    for k in range(len(y)):
        for i in range(n):
            if i != y[k]:
                loss[k] += max(0.0, margin - x[k, y[k]] + x[k, i]) ** p
        loss[k] /= n
        if class_weights is not None:
            loss[k] *= class_weights[y[k]]
    return np.reshape(loss, inputs.shape[:-1])


def ref_soft_margin_loss(inputs, targets):
    return np.logaddexp(0.0, -targets * inputs)


def ref_multilabel_soft_margin_loss(inputs, targets, class_weights=None):
    terms = targets * np.logaddexp(0.0, -inputs) + (1 - targets) * np.logaddexp(0.0, inputs)
    if class_weights is not None:
        terms = terms * class_weights
    return np.mean(terms, axis=-1)


def ref_squared_hinge_loss(inputs, targets):
    return np.maximum(0.0, 1 - targets * inputs) ** 2


# ----------------------------------------------------------------------------- cases


def make_multi_margin(shape, margin=1.0, weights=False):
    """Scores whose hinge arguments ``margin - x_y + x_i`` stay 0.1 away from the kink."""

    def make(rng):
        y = rng.integers(0, shape[-1], size=shape[:-1]).astype(np.int64)
        x = rng.normal(scale=1.5, size=shape)
        picked = np.take_along_axis(x, y[..., None], -1)
        gap = _away(margin - picked + x, [0.0], 0.1, 0.25)
        own = np.arange(shape[-1]) == y[..., None]
        x = np.where(own, x, gap - margin + picked)
        arrays = {"inputs": x, "targets": y}
        if weights:
            arrays["class_weights"] = rng.uniform(0.5, 2.0, size=shape[-1])
        return arrays

    return make


def make_signed(shape, int_targets=False):
    """Scores whose margins ``y x`` stay away from 1 (the squared hinge's kink is mild)."""

    def make(rng):
        y = _signs(rng, shape)
        x = _away(rng.normal(scale=2.0, size=shape), [1.0], 0.1, 0.25) * y
        return {"inputs": x, "targets": y.astype(np.int64) if int_targets else y}

    return make


def make_multilabel(shape, soft=False, weights=False):
    def make(rng):
        x = rng.normal(scale=2.0, size=shape)
        t = rng.uniform(0.05, 0.95, size=shape) if soft else rng.integers(0, 2, size=shape).astype(np.int64)
        arrays = {"inputs": x, "targets": t}
        if weights:
            arrays["class_weights"] = rng.uniform(0.5, 2.0, size=shape[-1])
        return arrays

    return make


S1, S2, S3 = (10,), (6, 5), (3, 4, 5)
CASES = mx_.cases_of([
    ("mm-default", "multi_margin_loss", make_multi_margin(S2), {}, ref_multi_margin_loss),
    ("mm-p2-margin0.5-weights", "multi_margin_loss", make_multi_margin(S2, 0.5, weights=True),
     {"p": 2, "margin": 0.5}, ref_multi_margin_loss),
    ("mm-3d-margin2", "multi_margin_loss", make_multi_margin(S3, 2.0), {"margin": 2}, ref_multi_margin_loss),
    ("sm-1d", "soft_margin_loss", make_signed(S1), {}, ref_soft_margin_loss, ("targets",)),
    ("sm-3d-int", "soft_margin_loss", make_signed(S3, int_targets=True), {}, ref_soft_margin_loss),
    ("mlsm-default", "multilabel_soft_margin_loss", make_multilabel(S2), {}, ref_multilabel_soft_margin_loss),
    ("mlsm-3d-soft-weights", "multilabel_soft_margin_loss", make_multilabel(S3, soft=True, weights=True), {},
     ref_multilabel_soft_margin_loss),
    ("sqh-1d", "squared_hinge_loss", make_signed(S1), {}, ref_squared_hinge_loss, ("targets",)),
    ("sqh-2d-int", "squared_hinge_loss", make_signed(S2, int_targets=True), {}, ref_squared_hinge_loss),
])
IDS = [c.id for c in CASES]
FIRSTS = mx_.first_of_each(CASES)
FIRST_IDS = [c.id for c in FIRSTS]
LOSSES = ("multi_margin_loss", "multilabel_soft_margin_loss", "soft_margin_loss", "squared_hinge_loss")
# JAX compiles each case: the first of each loss and those with class weights.
JAX_CASES = [c for c in CASES if c in FIRSTS or "weights" in c.id]


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

REDUCTIONS = ("none", "mean", "sum")


def _torch(a, grad=False):
    import torch

    t = torch.from_numpy(np.array(a, copy=True))
    return t.requires_grad_(True) if grad else t


def _same_values_and_grads(ours_fn, theirs_fn, x):
    """Every reduction: the same values; the same gradient wrt ``x`` of a weighted sum."""
    import torch

    for reduction in REDUCTIONS:
        a, b = _torch(x, True), _torch(x, True)
        ours, theirs = ours_fn(a, reduction), theirs_fn(b, reduction)
        assert ours.shape == theirs.shape, (reduction, ours.shape, theirs.shape)
        assert_close(to_numpy(ours), to_numpy(theirs), "float64")
        w = torch.from_numpy(np.random.default_rng(0).uniform(0.5, 1.5, size=tuple(ours.shape)))
        (g,) = torch.autograd.grad((ours * w).sum(), a)
        (h,) = torch.autograd.grad((theirs * w).sum(), b)
        assert_close(to_numpy(g), to_numpy(h), "float64")


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("margin", [1.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(9, 6), (6,)])
def test_multi_margin_equals_pytorch(p, margin, weighted, shape):
    import torch.nn.functional as F

    rng = np.random.default_rng(p + 10 * weighted + len(shape))
    x = rng.normal(scale=1.5, size=shape)
    y = _torch(rng.integers(0, shape[-1], size=shape[:-1]))
    w = _torch(rng.uniform(0.5, 2.0, size=shape[-1])) if weighted else None
    _same_values_and_grads(
        lambda a, r: anyloss.multi_margin_loss(a, y, p=p, margin=margin, class_weights=w, reduction=r),
        lambda a, r: F.multi_margin_loss(a, y, p=p, margin=margin, weight=w, reduction=r),
        x,
    )


@pytest.mark.parametrize("shape", [(8, 7), (30,)])
def test_soft_margin_equals_pytorch(shape):
    import torch.nn.functional as F

    rng = np.random.default_rng(len(shape))
    x = rng.normal(scale=4.0, size=shape)
    y = _torch(_signs(rng, shape))
    _same_values_and_grads(
        lambda a, r: anyloss.soft_margin_loss(a, y, reduction=r),
        lambda a, r: F.soft_margin_loss(a, y, reduction=r),
        x,
    )


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("soft", [False, True])
def test_multilabel_soft_margin_equals_pytorch(weighted, soft):
    import torch.nn.functional as F

    rng = np.random.default_rng(weighted + 2 * soft)
    x = rng.normal(scale=3.0, size=(9, 6))
    t = _torch(rng.uniform(0, 1, size=(9, 6)) if soft else rng.integers(0, 2, size=(9, 6)).astype(np.float64))
    w = _torch(rng.uniform(0.5, 2.0, size=6)) if weighted else None
    _same_values_and_grads(
        lambda a, r: anyloss.multilabel_soft_margin_loss(a, t, class_weights=w, reduction=r),
        lambda a, r: F.multilabel_soft_margin_loss(a, t, weight=w, reduction=r),
        x,
    )


def test_squared_hinge_equals_the_torch_expression():
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(4)
    x = rng.normal(scale=2.0, size=(8, 7))
    y = _torch(_signs(rng, (8, 7)))
    reduce = {"none": lambda v: v, "mean": torch.mean, "sum": torch.sum}
    _same_values_and_grads(
        lambda a, r: anyloss.squared_hinge_loss(a, y, reduction=r),
        lambda a, r: reduce[r](F.relu(1 - y * a) ** 2),
        x,
    )


# ------------------------------------------------------------------------ hard inputs

HARD = [
    pytest.param(lib, path, id=f"{lib}-{path}")
    for lib in ("numpy", "torch", "jax", "mlx")
    for path in ("fast", "portable")
    if not (lib == "jax" and path == "portable")  # op by op: the compiled formula is checked
]


def _path(path):
    return _native.portable() if path == "portable" else contextlib.nullcontext()


@pytest.mark.parametrize("lib, path", HARD)
def test_soft_margin_large_margins(lib, path):
    """Where PyTorch's log1p(exp(-y x)) overflows (inf) or rounds (0), the softplus is exact."""
    x = np.array([-200.0, 200.0, 80.0, -1e30, 1e-8], dtype=np.float32)
    y = np.ones(5, dtype=np.float32)
    with _path(path):
        got = to_numpy(anyloss.soft_margin_loss(to_lib(lib, x), to_lib(lib, y)))
    want = np.array([200.0, np.exp(-200.0), np.exp(-80.0), 1e30, np.log(2.0) - 5e-9])
    np.testing.assert_allclose(got, want.astype(np.float32), rtol=2e-6, atol=0)


@pytest.mark.parametrize("lib, path", HARD)
def test_multilabel_saturated_logits(lib, path):
    """A confident, right logit keeps its tiny loss; an infinite one has loss 0."""
    x = np.array([[30.0, -30.0, np.inf, -np.inf]], dtype=np.float32)
    t = np.array([[1.0, 0.0, 1.0, 0.0]], dtype=np.float32)
    with _path(path):
        got = to_numpy(anyloss.multilabel_soft_margin_loss(to_lib(lib, x), to_lib(lib, t)))
    np.testing.assert_allclose(got, [np.float32(2 * np.exp(-30.0) / 4)], rtol=1e-5)


@pytest.mark.parametrize("lib", ["torch", "jax", "mlx"])
def test_gradients_at_the_kinks_are_finite(lib):
    """At the kinks the hinges' gradients are finite (one-sided) values."""
    x = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    y = np.array([0, 2])
    fns = [
        (lambda a: anyloss.multi_margin_loss(a, to_lib(lib, y), reduction="sum")),
        (lambda a: anyloss.squared_hinge_loss(a, to_lib(lib, np.ones_like(x)), reduction="sum")),
    ]
    for fn in fns:
        if lib == "torch":
            import torch

            a = torch.from_numpy(x.copy()).requires_grad_(True)
            (g,) = torch.autograd.grad(fn(a), a)
            g = to_numpy(g)
        elif lib == "jax":
            import jax

            g = np.asarray(jax.grad(fn)(to_lib("jax", x)))
        else:
            import mlx.core as mx

            g = np.array(mx.grad(fn)(mx.array(x)))
        assert np.all(np.isfinite(g)), g


@pytest.mark.parametrize("lib", ["jax", "mlx", "torch"])
def test_unchecked_class_indices_give_nan(lib):
    """Under a trace (jax.jit, mx.compile, torch.func) the indices cannot be
    read: out of range gives NaN, never a number."""
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    y = np.array([0, 4, -1])
    w = np.ones(4, dtype=np.float32)

    def fn(a, b):
        return anyloss.multi_margin_loss(a, b, class_weights=to_lib(lib, w))

    if lib == "jax":
        import jax

        got = np.asarray(jax.jit(fn)(to_lib(lib, x), to_lib(lib, y)))
    elif lib == "mlx":
        import mlx.core as mx

        got = np.array(mx.compile(fn)(mx.array(x), mx.array(y)))
    else:
        import torch

        got = to_numpy(torch.func.vmap(fn)(torch.from_numpy(x)[None], torch.from_numpy(y)[None])[0])
    assert np.isfinite(got[0]) and np.isnan(got[1:]).all(), got


# ------------------------------------------------------------------------- bad inputs

X = np.random.default_rng(3).normal(size=(4, 3))
Y = np.array([0, 2, 1, 0])
PM = np.array([[1.0, -1.0, 1.0]] * 4)


@pytest.mark.parametrize("lib", ["numpy", "torch", "jax"])
def test_bad_arguments(lib):
    L = lambda a: to_lib(lib, a)  # noqa: E731
    mm = anyloss.multi_margin_loss
    with raises(ValueError, "multi_margin_loss", "p", "1 or 2", "3"):
        mm(L(X), L(Y), p=3)
    with raises(ValueError, "multi_margin_loss", "margin", "nan"):
        mm(L(X), L(Y), margin=float("nan"))
    with raises(ValueError, "multi_margin_loss", "targets", "from 0 to 3", "3 entries"):
        mm(L(X), L(np.array([0, 3, 1, 0])))
    with raises(TypeError, "multi_margin_loss", "targets", "integer"):
        mm(L(X), L(Y.astype(np.float64)))
    with raises(ValueError, "multi_margin_loss", "targets", "(4, 3)", "(4, 1)"):
        mm(L(X), L(Y[:, None]))
    with raises(ValueError, "multi_margin_loss", "class_weights", "(2,)", "(3,)"):
        mm(L(X), L(Y), class_weights=L(np.ones(2)))
    with raises(ValueError, "multi_margin_loss", "0-d"):
        mm(L(np.float64(1.0)), L(np.int64(0)))
    for fn in (anyloss.soft_margin_loss, anyloss.squared_hinge_loss):
        name = fn.__name__
        with raises(ValueError, name, "targets", "-1 or 1", "2 * targets - 1"):
            fn(L(X), L((PM + 1) / 2))  # 0/1 labels
        with raises(ValueError, name, "targets", "-1 or 1", "from -1 to 3"):
            fn(L(X), L(np.where(PM > 0, 3.0, -1.0)))
        with raises(ValueError, name, "(4, 3)", "(3,)", "no broadcasting"):
            fn(L(X), L(PM[0]))
        with raises(ValueError, name, "reduction", "'avg'"):
            fn(L(X), L(PM), reduction="avg")
    ml = anyloss.multilabel_soft_margin_loss
    with raises(ValueError, "multilabel_soft_margin_loss", "targets", "[0, 1]", "-1"):
        ml(L(X), L(PM))
    with raises(ValueError, "multilabel_soft_margin_loss", "(4, 3)", "(4, 2)", "no broadcasting"):
        ml(L(X), L((PM[:, :2] + 1) / 2))
    with raises(ValueError, "multilabel_soft_margin_loss", "class_weights", "(4,)", "(3,)"):
        ml(L(X), L((PM + 1) / 2), class_weights=L(np.ones(4)))
    with raises(TypeError, "multilabel_soft_margin_loss", "class_weights", "floating"):
        ml(L(X), L((PM + 1) / 2), class_weights=L(np.ones(3, dtype=np.int64)))


def test_arrays_of_two_libraries():
    with raises(TypeError, "multi_margin_loss", "one library", "class_weights"):
        anyloss.multi_margin_loss(X, Y, class_weights=to_lib("torch", np.ones(3)))


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_inputs_are_not_changed(lib):
    x, y, w, pm = X.copy(), Y.copy(), np.ones(3), PM.copy()
    calls = [(anyloss.multi_margin_loss, (x, y), {"p": 2, "class_weights": w}),
             (anyloss.soft_margin_loss, (x, pm), {}),
             (anyloss.multilabel_soft_margin_loss, (x, (pm + 1) / 2), {"class_weights": w}),
             (anyloss.squared_hinge_loss, (x.astype(np.float16), pm), {"reduction": "mean"})]
    for fn, arrays, kw in calls:
        before = [a.copy() for a in arrays]
        fn(*(to_lib(lib, a) for a in arrays), **{k: (to_lib(lib, v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()})
        for a, b in zip(arrays, before):
            np.testing.assert_array_equal(a, b)

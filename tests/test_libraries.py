"""Every loss on every array library: type, device, shape, dtype and values.

Each case below is one call of a loss with seeded random inputs, written down
with a float64 reference of its formula (from the math, independent of our
code).  The same cases drive the autodiff and jit tests in
``test_autodiff.py``: their inputs stay away from the kinks of the losses
(``|error| == delta`` and the like) so that finite differences are meaningful.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest

import anyloss
from backends import LIBRARIES, array_type, to_lib, to_numpy

REDUCTIONS = ("none", "mean", "sum")


# ------------------------------------------------------------------ float64 references


def _shift(x, axis):
    return x - np.max(x, axis=axis, keepdims=True)


def ref_cross_entropy(logits, targets, weights=None, axis=-1, label_smoothing=0.0):
    x = _shift(logits, axis)
    lse = np.log(np.sum(np.exp(x), axis=axis))
    if targets.ndim == logits.ndim:
        score = np.sum(targets * x, axis=axis)
    else:
        score = np.take_along_axis(x, np.expand_dims(targets, axis), axis).squeeze(axis)
    s = label_smoothing
    loss = lse - (1 - s) * score - s * np.mean(x, axis=axis)
    return loss if weights is None else loss * weights


def ref_binary_cross_entropy(inputs, targets, weights=None, with_logits=True):
    if with_logits:
        loss = np.maximum(inputs, 0) - inputs * targets + np.log1p(np.exp(-np.abs(inputs)))
    else:
        loss = -(
            targets * np.maximum(np.log(inputs), -100)
            + (1 - targets) * np.maximum(np.log(1 - inputs), -100)
        )
    return loss if weights is None else loss * weights


def ref_nll_loss(inputs, targets, axis=-1):
    return -np.take_along_axis(inputs, np.expand_dims(targets, axis), axis).squeeze(axis)


def ref_kl_div_loss(inputs, targets, axis=-1):
    return np.sum(np.exp(targets) * (targets - inputs), axis=axis)


def ref_hinge_loss(inputs, targets):
    return np.maximum(1 - inputs * targets, 0)


def ref_l1_loss(predictions, targets):
    return np.abs(predictions - targets)


def ref_mse_loss(predictions, targets):
    return (predictions - targets) ** 2


def ref_smooth_l1_loss(predictions, targets, beta=1.0):
    d = np.abs(predictions - targets)
    if beta == 0:
        return d
    return np.where(d < beta, 0.5 * d**2 / beta, d - 0.5 * beta)


def ref_huber_loss(inputs, targets, delta=1.0):
    a = np.abs(inputs - targets)
    return np.where(a <= delta, 0.5 * a**2, delta * (a - 0.5 * delta))


def ref_log_cosh_loss(inputs, targets):
    return np.log(np.cosh(inputs - targets))


def ref_gaussian_nll_loss(inputs, targets, vars, full=False, eps=1e-6):
    v = np.maximum(vars, eps)
    loss = 0.5 * (np.log(v) + (targets - inputs) ** 2 / v)
    return loss + 0.5 * math.log(2 * math.pi) if full else loss


def ref_cosine_similarity_loss(x1, x2, axis=1, eps=1e-8):
    n1 = np.sqrt(np.sum(x1**2, axis=axis))
    n2 = np.sqrt(np.sum(x2**2, axis=axis))
    return np.sum(x1 * x2, axis=axis) / np.maximum(n1 * n2, eps)


def ref_triplet_loss(anchors, positives, negatives, axis=-1, p=2, margin=1.0, eps=1e-6):
    def dist(u):
        return (np.sum(np.abs(anchors - u) ** p, axis=axis) + eps) ** (1.0 / p)

    return np.maximum(dist(positives) - dist(negatives) + margin, 0)


def ref_margin_ranking_loss(inputs1, inputs2, targets, margin=0.0):
    return np.maximum(0, -targets * (inputs1 - inputs2) + margin)


def reduce_ref(loss, reduction):
    if reduction == "mean":
        return np.asarray(np.mean(loss))
    if reduction == "sum":
        return np.asarray(np.sum(loss))
    return loss


# ----------------------------------------------------------------------- input makers


def _away(values, kinks, gap, step):
    """``values`` nudged by ``step`` (in their own direction) wherever they are
    within ``gap`` of one of ``kinks``."""
    values = np.array(values, dtype=np.float64)
    for _ in range(8):
        near = np.zeros(values.shape, dtype=bool)
        for k in kinks:
            near |= np.abs(values - k) < gap
        if not near.any():
            return values
        values = np.where(near, values + step * np.where(values >= 0, 1.0, -1.0), values)
    raise AssertionError("could not move the inputs away from the kinks")


def _softmax(x, axis):
    e = np.exp(_shift(x, axis))
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax(x, axis):
    return np.log(_softmax(x, axis))


def _signs(rng, shape):
    return rng.choice(np.array([-1.0, 1.0]), size=shape)


def make_cross_entropy(shape, axis, probs=False, weights=False, label_smoothing=0.0):
    def make(rng):
        logits = rng.normal(scale=2.0, size=shape)
        ax = axis % len(shape)
        if probs:
            targets = _softmax(rng.normal(size=shape), ax)
        else:
            out_shape = shape[:ax] + shape[ax + 1 :]
            targets = rng.integers(0, shape[ax], size=out_shape).astype(np.int64)
        arrays = {"logits": logits, "targets": targets}
        if weights:
            arrays["weights"] = rng.uniform(0.5, 2.0, size=shape[:ax] + shape[ax + 1 :])
        return arrays

    params = {"axis": axis}
    if label_smoothing:
        params["label_smoothing"] = label_smoothing
    return make, params


def make_bce(shape, with_logits=True, weights=False, int_targets=False):
    def make(rng):
        if with_logits:
            inputs = rng.normal(scale=2.0, size=shape)
        else:
            inputs = rng.uniform(0.05, 0.95, size=shape)
        if int_targets:
            targets = rng.integers(0, 2, size=shape).astype(np.int64)
        else:
            targets = rng.uniform(0.0, 1.0, size=shape)
        arrays = {"inputs": inputs, "targets": targets}
        if weights:
            arrays["weights"] = rng.uniform(0.5, 2.0, size=shape)
        return arrays

    return make, ({} if with_logits else {"with_logits": False})


def make_nll(shape, axis):
    def make(rng):
        ax = axis % len(shape)
        inputs = _log_softmax(rng.normal(size=shape), ax)
        targets = rng.integers(0, shape[ax], size=shape[:ax] + shape[ax + 1 :]).astype(np.int64)
        return {"inputs": inputs, "targets": targets}

    return make, {"axis": axis}


def make_kl(shape, axis):
    def make(rng):
        ax = axis % len(shape)
        return {
            "inputs": _log_softmax(rng.normal(size=shape), ax),
            "targets": _log_softmax(rng.normal(size=shape), ax),
        }

    return make, {"axis": axis}


def make_hinge(shape, int_targets=False):
    def make(rng):
        targets = _signs(rng, shape)
        # 1 - t*x away from 0: t*x away from 1.
        tx = _away(rng.normal(scale=2.0, size=shape), [1.0], 0.1, 0.25)
        inputs = tx * targets
        return {"inputs": inputs, "targets": targets.astype(np.int64) if int_targets else targets}

    return make, {}


def make_pair(shape, kinks=(0.0,), scale=2.0, names=("predictions", "targets")):
    """Two same-shape float arrays whose difference avoids ``±kinks``."""

    def make(rng):
        targets = rng.normal(size=shape)
        err = _away(rng.normal(scale=scale, size=shape), [s * k for k in kinks for s in (1, -1)], 0.1, 0.3)
        return {names[0]: targets + err, names[1]: targets}

    return make


def make_gaussian(shape, eps=1e-6, below_eps=False):
    def make(rng):
        inputs = rng.normal(size=shape)
        targets = inputs + rng.normal(size=shape)
        vars = rng.uniform(0.2, 3.0, size=shape)
        if below_eps:
            # Some variances under the floor, none near it.
            vars = np.where(rng.random(shape) < 0.3, eps * rng.uniform(0.1, 0.5, size=shape), vars)
        return {"inputs": inputs, "targets": targets, "vars": vars}

    return make


def make_cosine(shape, axis, tiny_rows=False):
    def make(rng):
        x1 = rng.normal(size=shape)
        x2 = rng.normal(size=shape)
        if tiny_rows:
            # Every other vector pair has a norm product far below eps.
            ax = axis % len(shape)
            idx = [slice(None)] * len(shape)
            idx[(ax + 1) % len(shape)] = slice(0, None, 2)
            x1[tuple(idx)] *= 1e-3
        return {"x1": x1, "x2": x2}

    return make


def make_triplet(shape, axis, p, margin, eps):
    def make(rng):
        ax = axis % len(shape)
        for _ in range(100):
            a = rng.normal(size=shape)
            pos = a + rng.normal(scale=0.7, size=shape)
            neg = a + rng.normal(scale=1.0, size=shape)
            dist = lambda u: (np.sum(np.abs(a - u) ** p, axis=ax) + eps) ** (1.0 / p)  # noqa: E731
            raw = dist(pos) - dist(neg) + margin  # the loss before the clamp at 0
            if np.all(np.abs(raw) > 0.1) and np.any(raw > 0) and np.any(raw < 0):
                return {"anchors": a, "positives": pos, "negatives": neg}
        raise AssertionError("no triplet away from the kink")

    return make


def make_ranking(shape, margin, int_targets=False):
    def make(rng):
        y = _signs(rng, shape)
        x2 = rng.normal(size=shape)
        # margin - y*(x1 - x2) away from 0.
        d = _away(rng.normal(scale=2.0, size=shape), [margin], 0.1, 0.3)
        x1 = x2 + y * d
        return {"inputs1": x1, "inputs2": x2, "targets": y.astype(np.int64) if int_targets else y}

    return make


# ---------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """One call of a loss: ``loss(**arrays, **params)``."""

    id: str
    loss: str
    make: Callable[[np.random.Generator], dict[str, np.ndarray]]
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    @property
    def func(self) -> Callable[..., Any]:
        return getattr(anyloss, self.loss)

    @property
    def reference(self) -> Callable[..., np.ndarray]:
        return globals()[f"ref_{self.loss}"]

    def arrays(self) -> dict[str, np.ndarray]:
        """The inputs in float64 (floating ones) or int64 (class indices, labels)."""
        return self.make(np.random.default_rng(self.seed))

    @property
    def default_reduction(self) -> str:
        return inspect.signature(self.func).parameters["reduction"].default

    def differentiable(self) -> list[str]:
        """The floating inputs: every one is a differentiable argument."""
        return [k for k, v in self.arrays().items() if v.dtype.kind == "f"]

    def expected(self, arrays: dict[str, np.ndarray], reduction: str) -> np.ndarray:
        as64 = {k: (v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in arrays.items()}
        return reduce_ref(self.reference(**as64, **self.params), reduction)


def _cases() -> list[Case]:
    c: list[Case] = []

    def add(id_, loss, made, params=None):
        if isinstance(made, tuple):
            made, p = made
            params = {**p, **(params or {})}
        c.append(Case(id_, loss, made, params or {}, seed=len(c)))

    # Few distinct shapes: JAX compiles each operation once per shape and dtype.
    S1, S2, S3 = (10,), (6, 5), (3, 4, 5)
    add("ce-index-2d", "cross_entropy", make_cross_entropy(S2, -1))
    add("ce-index-3d-axis1-smooth-weights", "cross_entropy",
        make_cross_entropy(S3, 1, weights=True, label_smoothing=0.1))
    add("ce-probs-axis0-smooth", "cross_entropy", make_cross_entropy(S2, 0, probs=True, label_smoothing=0.2))
    add("ce-probs-3d-weights", "cross_entropy", make_cross_entropy(S3, -1, probs=True, weights=True))
    add("bce-logits", "binary_cross_entropy", make_bce(S1))
    add("bce-logits-2d-weights-int", "binary_cross_entropy", make_bce(S2, weights=True, int_targets=True))
    add("bce-probs", "binary_cross_entropy", make_bce(S2, with_logits=False))
    add("bce-probs-weights", "binary_cross_entropy", make_bce(S3, with_logits=False, weights=True))
    add("nll-2d", "nll_loss", make_nll(S2, -1))
    add("nll-3d-axis1", "nll_loss", make_nll(S3, 1))
    add("kl-2d", "kl_div_loss", make_kl(S2, -1))
    add("kl-3d-axis1", "kl_div_loss", make_kl(S3, 1))
    add("hinge-1d", "hinge_loss", make_hinge(S1))
    add("hinge-2d-int", "hinge_loss", make_hinge(S2, int_targets=True))
    add("l1-1d", "l1_loss", make_pair(S1))
    add("l1-3d", "l1_loss", make_pair(S3))
    add("mse-1d", "mse_loss", make_pair(S1))
    add("mse-3d", "mse_loss", make_pair(S3))
    add("smooth_l1-default", "smooth_l1_loss", make_pair(S1, kinks=(0.0, 1.0)))
    add("smooth_l1-beta0.5", "smooth_l1_loss", make_pair(S2, kinks=(0.0, 0.5)), {"beta": 0.5})
    add("smooth_l1-beta2-int", "smooth_l1_loss", make_pair(S2, kinks=(0.0, 2.0)), {"beta": 2})
    add("smooth_l1-beta0", "smooth_l1_loss", make_pair(S1), {"beta": 0.0})
    names = ("inputs", "targets")
    add("huber-default", "huber_loss", make_pair(S1, kinks=(1.0,), names=names))
    add("huber-delta2-int", "huber_loss", make_pair(S2, kinks=(2.0,), names=names), {"delta": 2})
    add("huber-delta0.3", "huber_loss", make_pair(S3, kinks=(0.3,), names=names), {"delta": 0.3})
    add("log_cosh-1d", "log_cosh_loss", make_pair(S1, kinks=(), names=names))
    add("log_cosh-3d", "log_cosh_loss", make_pair(S3, kinks=(), scale=3.0, names=names))
    add("gaussian-default", "gaussian_nll_loss", make_gaussian(S1))
    add("gaussian-full", "gaussian_nll_loss", make_gaussian(S2), {"full": True})
    add("gaussian-eps0.5", "gaussian_nll_loss", make_gaussian(S2, eps=0.5, below_eps=True),
        {"eps": 0.5})
    add("cosine-default", "cosine_similarity_loss", make_cosine(S2, 1))
    add("cosine-3d-last", "cosine_similarity_loss", make_cosine(S3, -1), {"axis": -1})
    add("cosine-eps", "cosine_similarity_loss", make_cosine(S2, 1, tiny_rows=True), {"eps": 0.05})
    add("triplet-default", "triplet_loss", make_triplet(S2, -1, 2, 1.0, 1e-6))
    add("triplet-p1-axis0", "triplet_loss", make_triplet(S2, 0, 1, 0.5, 1e-6),
        {"axis": 0, "p": 1, "margin": 0.5})
    add("triplet-p3-eps", "triplet_loss", make_triplet(S3, -1, 3, 2, 1e-3),
        {"p": 3, "margin": 2, "eps": 1e-3})
    add("ranking-default", "margin_ranking_loss", make_ranking(S1, 0.0))
    add("ranking-margin-int", "margin_ranking_loss", make_ranking(S2, 0.5, int_targets=True),
        {"margin": 0.5})
    return c


CASES = _cases()
CASE_IDS = [c.id for c in CASES]
ALL_LOSSES = sorted(anyloss.__all__)


def test_cases_cover_every_loss():
    """MLX's 14 losses; each one beyond them has its cases in its family's test module."""
    import mlx.nn.losses as mlx_losses

    mlx_names = [name for name in ALL_LOSSES if hasattr(mlx_losses, name)]
    assert len(mlx_names) == 14 and sorted({c.loss for c in CASES}) == mlx_names


# ---------------------------------------------------------------------- library I/O

HALF = {
    "numpy": ("float16",),
    "array_api_strict": (),  # float32 and float64 only
    "torch": ("float16", "bfloat16"),
    "jax": ("float16", "bfloat16"),
    "mlx": ("float16", "bfloat16"),
    "dask": ("float16",),
}


def lib_array(lib: str, a: np.ndarray, dtype: str | None = None):
    """``a`` as an array of ``lib``; floating arrays in ``dtype``."""
    if a.dtype.kind != "f" or dtype is None:
        return to_lib(lib, a)
    if dtype != "bfloat16":
        return to_lib(lib, a.astype(dtype))
    x = to_lib(lib, a.astype(np.float32))
    if lib == "torch":
        import torch

        return x.to(torch.bfloat16)
    if lib == "jax":
        import jax.numpy as jnp

        return x.astype(jnp.bfloat16)
    if lib == "mlx":
        import mlx.core as mx

        return x.astype(mx.bfloat16)
    raise ValueError(lib)


def as_float64(x) -> np.ndarray:
    """Any library's result as a float64 NumPy array (bfloat16 included)."""
    if type(x).__module__.split(".")[0] == "torch":
        x = x.detach().float() if x.dtype.is_floating_point and x.itemsize < 4 else x
    return to_numpy(x).astype(np.float64)


def lib_inputs(lib: str, case: Case, dtype: str):
    """The case's inputs in ``lib`` and the values they hold, in float64."""
    arrays = case.arrays()
    inputs = {k: lib_array(lib, v, dtype) for k, v in arrays.items()}
    held = {k: (as_float64(x) if arrays[k].dtype.kind == "f" else arrays[k]) for k, x in inputs.items()}
    return inputs, held


TOL = {"float64": 1e-12, "float32": 2e-6, "float16": 1e-3, "bfloat16": 8e-3}


def assert_close(actual, expected, dtype: str, factor: float = 8.0):
    """Equal up to a few roundings of ``dtype``; the absolute part scales with
    the largest expected value, so terms that cancel are judged fairly."""
    expected = np.asarray(expected, dtype=np.float64)
    tol = factor * TOL[dtype]
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale)


def assert_same_device(lib: str, result, x) -> None:
    if lib == "torch":
        assert result.device == x.device
    elif lib == "jax":
        assert result.devices() == x.devices()
    elif lib in ("array_api_strict", "cupy"):
        assert result.device == x.device


def native_dtype(lib: str, dtype: str):
    """The dtype object of ``lib`` named ``dtype``."""
    return lib_array(lib, np.zeros(1), dtype).dtype


# ---------------------------------------------------------------------------- values

# Half precision on the first case of each loss (every loss, fewer shapes).
FIRST_OF_EACH = [c for i, c in enumerate(CASES) if c.loss not in {d.loss for d in CASES[:i]}]
PARAMS = [
    pytest.param(lib, dtype, case, id=f"{lib}-{dtype}-{case.id}")
    for lib in LIBRARIES
    for dtype in ("float32", "float64", *HALF[lib])
    for case in (CASES if dtype in ("float32", "float64") else FIRST_OF_EACH)
]

CHECKED: dict[str, int] = {}


@pytest.mark.parametrize("lib, dtype, case", PARAMS)
def test_values_type_shape_dtype(lib, dtype, case):
    inputs, held = lib_inputs(lib, case, dtype)
    for reduction in REDUCTIONS:
        result = case.func(**inputs, **case.params, reduction=reduction)
        expected = case.expected(held, reduction)
        assert isinstance(result, array_type(lib)), type(result)
        assert_same_device(lib, result, next(iter(inputs.values())))
        assert tuple(result.shape) == expected.shape
        assert result.dtype == native_dtype(lib, dtype)
        # MLX computes exp in float64 only to float32 accuracy (on the CPU).
        assert_close(as_float64(result), expected, "float32" if (lib, dtype) == ("mlx", "float64") else dtype)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("lib", [lib for lib in LIBRARIES if lib != "numpy"])
def test_equals_numpy_float32(lib, case):
    """Each library's float32 result is NumPy's, to float32 rounding."""
    arrays = case.arrays()
    np_in = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in arrays.items()}
    lib_in = {k: to_lib(lib, v) for k, v in np_in.items()}
    for reduction in REDUCTIONS:
        want = case.func(**np_in, **case.params, reduction=reduction)
        got = case.func(**lib_in, **case.params, reduction=reduction)
        assert want.dtype == np.float32 and isinstance(want, np.ndarray)
        assert_close(as_float64(got), want, "float32", factor=4.0)


@pytest.mark.parametrize("lib", LIBRARIES)
def test_integer_inputs_give_default_float(lib):
    """With no floating input the result has the library's default floating dtype."""
    x = to_lib(lib, np.array([3, -1, 2]))
    y = to_lib(lib, np.array([1, 1, -1]))
    default = {
        "numpy": "float64",
        "array_api_strict": "float64",
        "torch": "float32",
        "jax": "float64",  # the suite runs JAX with x64 enabled
        "mlx": "float32",
        "dask": "float64",
    }[lib]
    for loss, want in [
        (anyloss.hinge_loss(x, y), [0.0, 2.0, 3.0]),
        (anyloss.l1_loss(x, y, reduction="none"), [2.0, 2.0, 3.0]),
        (anyloss.mse_loss(x, y), 17.0 / 3.0),
        (anyloss.margin_ranking_loss(x, y, y, margin=1), [0.0, 3.0, 4.0]),
    ]:
        assert isinstance(loss, array_type(lib))
        assert loss.dtype == native_dtype(lib, default)
        assert_close(as_float64(loss), want, default)


# ------------------------------------------------------------------ mixed libraries

LIB_NAMES = {
    "numpy": "numpy",
    "array_api_strict": "array_api_strict",
    "torch": "torch",
    "jax": "jax",
    "mlx": "mlx",
    "dask": "dask",
}


@pytest.mark.parametrize("first", LIBRARIES)
@pytest.mark.parametrize("second", LIBRARIES)
def test_two_libraries_raise_type_error(first, second):
    if first == second:
        return
    x = to_lib(first, np.ones((2, 3), dtype=np.float32))
    y = to_lib(second, np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(TypeError) as err:
        anyloss.mse_loss(x, y)
    message = str(err.value)
    assert "mse_loss" in message
    assert f"predictions is a {LIB_NAMES[first]} array" in message
    assert f"targets is a {LIB_NAMES[second]} array" in message


@pytest.mark.parametrize("case", CASES[::2], ids=CASE_IDS[::2])
def test_every_loss_names_both_libraries(case):
    """One argument from another library, wherever it sits in the call."""
    arrays = case.arrays()
    names = list(arrays)
    for i, odd in enumerate(names):
        libs = ("torch", "numpy") if i % 2 else ("jax", "mlx")
        inputs = {k: to_lib(libs[0] if k != odd else libs[1], v) for k, v in arrays.items()}
        with pytest.raises(TypeError, match="one library") as err:
            case.func(**inputs, **case.params)
        message = str(err.value)
        assert case.loss in message
        assert f"{odd} is a {libs[1]} array" in message
        assert f"is a {libs[0]} array" in message


# ------------------------------------------------------------------ Python scalars


@pytest.mark.parametrize("lib", LIBRARIES)
def test_python_scalar_parameters(lib):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    y = rng.normal(size=(4, 3)).astype(np.float32)
    s = np.where(rng.random((4, 3)) < 0.5, -1.0, 1.0).astype(np.float32)
    v = rng.uniform(0.0, 2.0, size=(4, 3)).astype(np.float32)
    X, Y, S, V = (to_lib(lib, a) for a in (x, y, s, v))
    calls = [
        (anyloss.margin_ranking_loss(X, Y, S, margin=0.5), ref_margin_ranking_loss(x, y, s, margin=0.5)),
        (anyloss.margin_ranking_loss(X, Y, S, margin=1), ref_margin_ranking_loss(x, y, s, margin=1)),
        (anyloss.huber_loss(X, Y, delta=2), ref_huber_loss(x, y, delta=2)),
        (anyloss.huber_loss(X, Y, delta=0.25), ref_huber_loss(x, y, delta=0.25)),
        (anyloss.smooth_l1_loss(X, Y, beta=2, reduction="none"), ref_smooth_l1_loss(x, y, beta=2)),
        (anyloss.smooth_l1_loss(X, Y, beta=0, reduction="none"), ref_smooth_l1_loss(x, y, beta=0)),
        (anyloss.gaussian_nll_loss(X, Y, V, eps=1e-6, reduction="none"), ref_gaussian_nll_loss(x, y, v, eps=1e-6)),
        (anyloss.gaussian_nll_loss(X, Y, V, eps=1, reduction="none"), ref_gaussian_nll_loss(x, y, v, eps=1)),
        (anyloss.cosine_similarity_loss(X, Y, eps=1e-6), ref_cosine_similarity_loss(x, y, eps=1e-6)),
        (anyloss.cosine_similarity_loss(X, Y, axis=0, eps=0), ref_cosine_similarity_loss(x, y, axis=0, eps=0)),
        (anyloss.triplet_loss(X, Y, S, p=1, margin=2, eps=0), ref_triplet_loss(x, y, s, p=1, margin=2, eps=0)),
        (anyloss.triplet_loss(X, Y, S, p=1.5, margin=0.5, eps=1e-6),
         ref_triplet_loss(x, y, s, p=1.5, margin=0.5, eps=1e-6)),
        (anyloss.cross_entropy(X, to_lib(lib, np.array([0, 2, 1, 0])), label_smoothing=0.1),
         ref_cross_entropy(x, np.array([0, 2, 1, 0]), label_smoothing=0.1)),
        (anyloss.cross_entropy(X, to_lib(lib, np.array([0, 2, 1, 0])), label_smoothing=0),
         ref_cross_entropy(x, np.array([0, 2, 1, 0]))),
        (anyloss.binary_cross_entropy(X, to_lib(lib, (v / 2).astype(np.float32)), with_logits=True,
                                      reduction="none"),
         ref_binary_cross_entropy(x.astype(np.float64), v / 2)),
    ]
    for result, want in calls:
        assert isinstance(result, array_type(lib))
        assert result.dtype == native_dtype(lib, "float32")
        assert_close(as_float64(result), want, "float32")


@pytest.mark.parametrize("lib", LIBRARIES)
def test_numpy_scalar_parameters(lib):
    """NumPy scalars count as Python numbers for scalar parameters."""
    x = np.array([0.0, 1.0, 3.0], dtype=np.float32)
    y = np.array([0.5, -1.0, 0.0], dtype=np.float32)
    got = anyloss.huber_loss(to_lib(lib, x), to_lib(lib, y), delta=np.float32(1.5))
    assert_close(as_float64(got), ref_huber_loss(x, y, delta=1.5), "float32")
    got = anyloss.margin_ranking_loss(to_lib(lib, x), to_lib(lib, y), to_lib(lib, np.ones(3)), margin=np.int64(1))
    assert_close(as_float64(got), ref_margin_ranking_loss(x, y, 1.0, margin=1.0), "float32")


# --------------------------------------------------------------------------- devices


def _torch_devices():
    import torch

    devices = ["cpu", "meta"]
    if torch.cuda.is_available():
        devices.append("cuda")
    return devices


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_torch_result_on_input_device(case):
    """Results stay on the input's device; on the meta device (shapes only, no
    values) every loss still runs, which also shows no value is read."""
    import torch

    arrays = case.arrays()
    for device in _torch_devices():
        inputs = {k: torch.from_numpy(v.copy()).to(device) for k, v in arrays.items()}
        for reduction in REDUCTIONS:
            result = case.func(**inputs, **case.params, reduction=reduction)
            assert result.device == inputs[next(iter(inputs))].device
            assert tuple(result.shape) == case.expected(arrays, reduction).shape
            if device != "meta":
                assert_close(as_float64(result), case.expected(arrays, reduction), "float64")

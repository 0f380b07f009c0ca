"""Property-based search over every loss, dtype, axis and extreme value.

For each loss, hypothesis draws shapes, an axis, a dtype (NumPy float16,
float32 and float64; PyTorch bfloat16) and values over the whole range of the
dtype, with the extremes it favours: 0, the largest finite values, the
smallest normal and subnormal numbers, exact probabilities 0 and 1, and (for
the 0 * log 0 cases) -inf log-probabilities.  The properties:

1. the result has the dtype of the inputs and the shape of the reduction;
2. wherever the exact loss is finite and representable, the result is finite;
3. it agrees with the exact loss (``tests/mp_reference.py``, mpmath) within a
   few rounding errors of the values it is computed from; and
4. losses that cannot be negative are not negative.

Differences that overflow the dtype (``x - y`` with x near the largest value
and y near minus it) are left out: values are drawn from half the range, and
less for the embedding distances, which add several such differences.  So are
means and sums whose sum of absolute values exceeds half the largest value of
the compute dtype: like NumPy, PyTorch and MLX, anyloss sums in that dtype,
so a float32 mean of values near 1e38 overflows although the mean does not.

The search is derandomized (the same examples on every run) so that CI is
deterministic.
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mp_reference
from test_hard_cases import bfloat16_round, result_dtype_name, result_to_float64, to_library

import anyloss

# Extreme inputs make NumPy warn about overflow in intermediate (unused) values.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

SETTINGS = settings(
    derandomize=True,
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

K = 16  # rounding errors allowed per value the loss is computed from

DTYPES = ("float16", "float32", "float64", "bfloat16")
EPS = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-23, "float64": 2.0**-52}
TINY = {"float16": 2.0**-24, "bfloat16": 2.0**-133, "float32": 2.0**-149, "float64": 2.0**-1074}
LARGEST = {
    "float16": 65504.0,
    "bfloat16": float(np.finfo(np.float32).max),
    "float32": float(np.finfo(np.float32).max),
    "float64": float(np.finfo(np.float64).max),
}
WIDTH = {"float16": 16, "bfloat16": 32, "float32": 32, "float64": 64}


# ------------------------------------------------------------------------ strategies


@st.composite
def arrays(draw, dtype, shape, low=None, high=None, fraction=0.5, special=()):
    """Values of ``dtype`` over ``[low, high]`` (default: +-fraction of the range).

    ``special`` values (for example ``-inf``) are mixed in now and then.
    """
    bound = LARGEST[dtype] * fraction
    low = -bound if low is None else low
    high = bound if high is None else high
    if WIDTH[dtype] < 64:  # the bounds must be values of the width
        as_width = np.float16 if WIDTH[dtype] == 16 else np.float32
        low, high = float(as_width(low)), float(as_width(high))
    elements = st.floats(
        min_value=low, max_value=high, width=WIDTH[dtype], allow_nan=False, allow_infinity=False
    )
    if special:
        elements = st.one_of(elements, elements, elements, st.sampled_from(special))
    size = int(np.prod(shape))
    values = draw(st.lists(elements, min_size=size, max_size=size))
    a = np.array(values, dtype=np.float64).reshape(shape)
    return rounded(a, dtype)


def rounded(a, dtype):
    if dtype == "bfloat16":
        return bfloat16_round(a)
    return np.asarray(a).astype(dtype)


shapes = st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple)
dtypes = st.sampled_from(DTYPES)
reductions = st.sampled_from(("none", "mean", "sum"))


def lib_of(dtype):
    return "torch" if dtype == "bfloat16" else "numpy"


# ---------------------------------------------------------------------- the checking


def check(name, dtype, arrays_, params, mag, nonnegative=False):
    """Run anyloss.<name> and check the four properties.

    ``mag`` (per element of the unreduced loss, NumPy array of floats) bounds
    the size of the values the element is computed from; the tolerance is
    ``K * (eps * |exact| + eps_compute * mag)`` per element, summed or
    averaged with the reduction.
    """
    lib = lib_of(dtype)
    inputs = {k: to_library(lib, v, dtype) for k, v in arrays_.items()}
    result = getattr(anyloss, name)(**inputs, **params)
    assert result_dtype_name(result) == dtype, f"{name}: dtype {result.dtype}, expected {dtype}"
    got = result_to_float64(result)

    reduction = params.get("reduction", "none")
    exact = getattr(mp_reference, name)(**arrays_, **params)
    unreduced = getattr(mp_reference, name)(**arrays_, **{**params, "reduction": "none"})
    eps_out = EPS[dtype]
    # Half precision is computed in float32.
    eps_c = 2.0**-23 if dtype in ("float16", "bfloat16") else EPS[dtype]
    mag = np.broadcast_to(np.asarray(mag, dtype=np.float64), unreduced.shape)
    with mp.workdps(mp_reference.DPS):
        abs_unreduced = np.vectorize(lambda v: float(abs(v)), otypes=[float])(unreduced)
        spread = K * (eps_c * mag + eps_c * abs_unreduced) + K * TINY[dtype]
        if reduction == "none":
            tol = spread + K * eps_out * abs_unreduced
            exact_arr = unreduced
        else:
            n = max(unreduced.size, 1)
            if float(np.sum(abs_unreduced)) > LARGEST[dtype] / 2:
                return  # the sum overflows the compute dtype (see the module docstring)
            total = float(np.sum(spread)) + K * eps_c * n * float(np.sum(abs_unreduced))
            if reduction == "mean":
                total /= n
            tol = np.array(total + K * eps_out * float(abs(exact)))
            exact_arr = np.array(exact, dtype=object)
        assert got.shape == exact_arr.shape, f"{name}: shape {got.shape}, expected {exact_arr.shape}"
        for idx in np.ndindex(got.shape):
            g, e = got[idx], exact_arr[idx]
            where = f"{name} {dtype} {params} at {idx}: got {g!r}, exact {mp.nstr(e, 10)}"
            if abs(e) > LARGEST[dtype] * (1 - 4 * eps_out):
                continue  # at or beyond the edge of the range: inf and the largest value both fine
            assert math.isfinite(g), f"non-finite result where the loss is finite: {where}"
            assert abs(mp.mpf(g) - e) <= tol[idx], f"error beyond {tol[idx]:.3g}: {where}\ninputs {arrays_}"
            if nonnegative:
                assert g >= 0, f"negative loss: {where}"


# ---------------------------------------------------------------- elementwise losses


@st.composite
def pair(draw, fraction=0.5):
    dtype, shape = draw(dtypes), draw(shapes)
    return dtype, draw(arrays(dtype, shape, fraction=fraction)), draw(arrays(dtype, shape, fraction=fraction))


@SETTINGS
@given(pair(), reductions)
def test_l1_loss(data, reduction):
    dtype, x, y = data
    check("l1_loss", dtype, {"predictions": x, "targets": y}, {"reduction": reduction}, 0.0, nonnegative=True)


@SETTINGS
@given(pair(), reductions)
def test_mse_loss(data, reduction):
    dtype, x, y = data
    check("mse_loss", dtype, {"predictions": x, "targets": y}, {"reduction": reduction}, 0.0, nonnegative=True)


@SETTINGS
@given(pair(), st.sampled_from([0.0, 1e-3, 1.0, 10.0, 1e30]), reductions)
def test_smooth_l1_loss(data, beta, reduction):
    dtype, x, y = data
    check("smooth_l1_loss", dtype, {"predictions": x, "targets": y}, {"beta": beta, "reduction": reduction},
          0.0, nonnegative=True)


@SETTINGS
@given(pair(), st.sampled_from([1e-3, 1.0, 10.0, 1e30]), reductions)
def test_huber_loss(data, delta, reduction):
    dtype, x, y = data
    check("huber_loss", dtype, {"inputs": x, "targets": y}, {"delta": delta, "reduction": reduction},
          0.0, nonnegative=True)


@SETTINGS
@given(pair(), reductions)
def test_log_cosh_loss(data, reduction):
    dtype, x, y = data
    check("log_cosh_loss", dtype, {"inputs": x, "targets": y}, {"reduction": reduction}, 0.0, nonnegative=True)


@SETTINGS
@given(st.data(), st.booleans(), st.sampled_from([1e-6, 1e-2, 1.0]), reductions)
def test_gaussian_nll_loss(data, full, eps, reduction):
    dtype, x, y = data.draw(pair())
    v = data.draw(arrays(dtype, x.shape, low=0.0, fraction=0.5))
    xf, yf = x.astype(np.float64), y.astype(np.float64)
    vf = np.maximum(v.astype(np.float64), eps)
    with np.errstate(over="ignore"):
        mag = np.abs(np.log(vf)) + (xf - yf) ** 2 / vf
    check("gaussian_nll_loss", dtype, {"inputs": x, "targets": y, "vars": v},
          {"full": full, "eps": eps, "reduction": reduction}, mag)


@SETTINGS
@given(st.data(), reductions)
def test_hinge_loss(data, reduction):
    dtype, shape = data.draw(dtypes), data.draw(shapes)
    x = data.draw(arrays(dtype, shape))
    y = np.where(data.draw(arrays("float64", shape, -1.0, 1.0)) >= 0, 1, -1)
    mag = 1 + np.abs(x.astype(np.float64))
    check("hinge_loss", dtype, {"inputs": x, "targets": y}, {"reduction": reduction}, mag, nonnegative=True)


@SETTINGS
@given(st.data(), st.sampled_from([0.0, 0.5, -2.0, 1e10]), reductions)
def test_margin_ranking_loss(data, margin, reduction):
    dtype, x1, x2 = data.draw(pair(fraction=0.25))
    y = np.where(data.draw(arrays("float64", x1.shape, -1.0, 1.0)) >= 0, 1, -1)
    mag = abs(margin) + np.abs(x1.astype(np.float64)) + np.abs(x2.astype(np.float64))
    check("margin_ranking_loss", dtype, {"inputs1": x1, "inputs2": x2, "targets": y},
          {"margin": margin, "reduction": reduction}, mag, nonnegative=True)


@SETTINGS
@given(st.data(), st.booleans(), st.booleans(), reductions)
def test_binary_cross_entropy(data, with_logits, weighted, reduction):
    dtype, shape = data.draw(dtypes), data.draw(shapes)
    if with_logits:
        x = data.draw(arrays(dtype, shape, special=(-math.inf, math.inf)))
    else:
        x = data.draw(arrays(dtype, shape, 0.0, 1.0))
    t = data.draw(arrays(dtype, shape, 0.0, 1.0))
    # An infinite logit has a finite loss only with the matching target.
    t = np.where(np.isposinf(x), 1, np.where(np.isneginf(x), 0, t)).astype(t.dtype)
    arrays_ = {"inputs": x, "targets": t}
    if weighted:
        arrays_["weights"] = data.draw(arrays(dtype, shape, 0.0, 4.0))
    xf = np.where(np.isfinite(x), x.astype(np.float64), 0.0)
    mag = np.abs(xf) + 1 if with_logits else np.full(shape, 200.0)
    if weighted:
        mag = mag * arrays_["weights"].astype(np.float64)
    check("binary_cross_entropy", dtype, arrays_, {"with_logits": with_logits, "reduction": reduction},
          mag, nonnegative=True)


# -------------------------------------------------------------------- class-axis losses


@st.composite
def class_setup(draw, min_ndim=2):
    dtype = draw(dtypes)
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=min_ndim - 1, max_size=3))) + (draw(st.integers(1, 4)),)
    shape = tuple(draw(st.permutations(shape)))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    return dtype, shape, axis


@SETTINGS
@given(st.data(), st.booleans(), st.sampled_from([0.0, 0.1, 0.9]), st.booleans(), reductions)
def test_cross_entropy(data, probabilities, smoothing, weighted, reduction):
    dtype, shape, axis = data.draw(class_setup())
    x = data.draw(arrays(dtype, shape, fraction=0.25))
    classes = shape[axis]
    if probabilities:
        t = data.draw(arrays(dtype, shape, 0.0, 1.0))
        if smoothing == 0.0:  # 0 * log 0: a -inf logit where the target is 0
            drop = data.draw(arrays("float64", shape, 0.0, 1.0)) < 0.3
            keep_one = np.moveaxis(np.zeros(shape, bool), axis, -1)
            keep_one[..., 0] = True
            drop &= ~np.moveaxis(keep_one, -1, axis)
            x = np.where(drop & (t == 0), -np.inf, x).astype(x.dtype)
    else:
        lines = np.moveaxis(np.zeros(shape), axis, -1).shape[:-1]
        t = np.asarray(data.draw(arrays("float64", lines, 0.0, classes - 1e-9))).astype(np.int64)
    arrays_ = {"logits": x, "targets": t}
    loss_shape = np.moveaxis(np.zeros(shape), axis, -1).shape[:-1]
    if weighted:
        arrays_["weights"] = data.draw(arrays(dtype, loss_shape, 0.0, 4.0))
    xf = x.astype(np.float64)
    finite = np.where(np.isfinite(xf), xf, np.nan)
    z = np.abs(np.nan_to_num(finite - np.nanmax(finite, axis=axis, keepdims=True), nan=0.0))
    if probabilities:
        mag = np.sum(np.abs(t.astype(np.float64)) * z, axis=axis) + np.max(z, axis=axis)
    else:
        mag = 2 * np.max(z, axis=axis)
    mag = mag + math.log(classes) + 1
    if weighted:
        mag = mag * arrays_["weights"].astype(np.float64)
    check("cross_entropy", dtype, arrays_,
          {"axis": axis, "label_smoothing": smoothing, "reduction": reduction}, mag,
          nonnegative=not probabilities)


@SETTINGS
@given(st.data(), reductions)
def test_nll_loss(data, reduction):
    dtype, shape, axis = data.draw(class_setup(min_ndim=1))
    x = data.draw(arrays(dtype, shape, high=0.0))  # log-probabilities
    lines = np.moveaxis(np.zeros(shape), axis, -1).shape[:-1]
    t = np.asarray(data.draw(arrays("float64", lines, 0.0, shape[axis] - 1e-9))).astype(np.int64)
    check("nll_loss", dtype, {"inputs": x, "targets": t}, {"axis": axis, "reduction": reduction}, 0.0)


@SETTINGS
@given(st.data(), reductions)
def test_kl_div_loss(data, reduction):
    dtype, shape, axis = data.draw(class_setup(min_ndim=1))
    # Log-probabilities: <= 0, the targets sometimes -inf (a class of probability 0).
    t = data.draw(arrays(dtype, shape, low=-80.0 if dtype == "float16" else -700.0, high=0.0,
                         special=(-math.inf,)))
    x = data.draw(arrays(dtype, shape, low=-1e4 if dtype == "float16" else -1e30, high=0.0))
    tf, xf = t.astype(np.float64), x.astype(np.float64)
    # exp(t) may be subnormal: its absolute error is then about the smallest normal number.
    smallest_normal = 2.0**-1022 if dtype == "float64" else 2.0**-126
    with np.errstate(invalid="ignore", over="ignore"):
        terms = np.where(np.isneginf(tf), 0.0, (np.exp(tf) + smallest_normal) * (np.abs(tf) + np.abs(xf) + 1))
    check("kl_div_loss", dtype, {"inputs": x, "targets": t}, {"axis": axis, "reduction": reduction},
          np.sum(terms, axis=axis))


# --------------------------------------------------------------------- embedding losses


@SETTINGS
@given(st.data(), st.sampled_from([0.0, 1e-8, 1e-3]), reductions)
def test_cosine_similarity_loss(data, eps, reduction):
    dtype, shape, axis = data.draw(class_setup())
    zero_rows = data.draw(st.booleans())
    x1 = data.draw(arrays(dtype, shape, fraction=0.25))
    x2 = data.draw(arrays(dtype, shape, fraction=0.25))
    if zero_rows:  # zero vectors: the denominator is eps
        x1 = np.zeros(shape, dtype=x2.dtype)
    n = shape[axis]
    check("cosine_similarity_loss", dtype, {"x1": x1, "x2": x2}, {"axis": axis, "eps": eps, "reduction": reduction},
          np.full(np.moveaxis(np.zeros(shape), axis, -1).shape[:-1], 4.0 * n))
    result = result_to_float64(anyloss.cosine_similarity_loss(
        to_library(lib_of(dtype), x1, dtype), to_library(lib_of(dtype), x2, dtype), axis=axis, eps=eps))
    assert np.all(np.abs(result) <= 1 + 4 * n * EPS[dtype]), f"|cosine| > 1: {result}"


@SETTINGS
@given(st.data(), st.sampled_from([1, 2, 3]), st.sampled_from([0.0, 1.0, 1e10]),
       st.sampled_from([0.0, 1e-6]), reductions)
def test_triplet_loss(data, p, margin, eps, reduction):
    dtype, shape, axis = data.draw(class_setup())
    n = shape[axis]
    a, pos, neg = (data.draw(arrays(dtype, shape, fraction=1 / (4 * n))) for _ in range(3))
    af, pf, nf = (v.astype(np.float64) for v in (a, pos, neg))
    with np.errstate(over="ignore"):
        dp = (np.sum(np.abs(af - pf) ** p, axis=axis) + eps) ** (1 / p)
        dn = (np.sum(np.abs(af - nf) ** p, axis=axis) + eps) ** (1 / p)
    mag = (dp + dn + abs(margin)) * n
    check("triplet_loss", dtype, {"anchors": a, "positives": pos, "negatives": neg},
          {"axis": axis, "p": p, "margin": margin, "eps": eps, "reduction": reduction}, mag, nonnegative=True)

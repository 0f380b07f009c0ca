"""The NumPy fast paths of the elementwise and row losses against the portable
code (``anyloss._native.portable()``), and log_cosh's polynomials against
mpmath.

Each test computes a loss with the fast path and with the portable code on
the same seeded inputs and asserts that they agree to a few units in the
last place (means and sums: to the error of adding the terms in another
order).  The special inputs are the ones where a formula needs a guard:
infinities, nan, zero, tiny and huge values, ties at a branch or a hinge.
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest

import mp_reference

import anyloss
from anyloss import _native
from anyloss._native import numpy as native

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

REDUCTIONS = ("none", "mean", "sum")
DTYPES = (np.float32, np.float64)
# elementwise: one block, several blocks with a remainder, and enough for threads
FLAT_SHAPES = ((7,), (3, 5, 11), (200_003,), (native.PARALLEL_MIN + 5,))
EPS = {np.float32: float(np.finfo(np.float32).eps), np.float64: float(np.finfo(np.float64).eps)}


def both(name, *args, **kwargs):
    fn = getattr(anyloss, name)
    fast = fn(*args, **kwargs)
    with _native.portable():
        slow = fn(*args, **kwargs)
    assert type(fast) is type(slow) is np.ndarray
    assert fast.dtype == slow.dtype and fast.shape == slow.shape
    return fast, slow


def close(fast, slow, dtype, reduction, ulps=4, atol=0.0):
    """Equal to ``ulps`` units of ``dtype``'s epsilon, relative; a mean or a
    sum to ten times that (its terms added in another order)."""
    rtol = ulps * EPS[dtype] * (10 if reduction != "none" else 1)
    np.testing.assert_allclose(fast, slow, rtol=rtol, atol=atol)


def assert_fast_path_used(name, *args):
    """The native function computes the call (does not hand it back)."""
    assert getattr(native, name)(np, *args) is not NotImplemented


def draw(seed, shape, dtype, count, scale=2.0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(shape) * scale).astype(dtype) for _ in range(count)]


def signs(seed, shape, dtype):
    rng = np.random.default_rng(seed)
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(dtype)


# ------------------------------------------------------------ elementwise: random


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", FLAT_SHAPES)
def test_elementwise_losses_match_portable(shape, reduction, dtype):
    x, y, v = draw(1, shape, dtype, 3)
    t = signs(2, shape, dtype)
    v = np.square(v) * np.abs(v)  # variances of all sizes, some below eps
    copies = [a.copy() for a in (x, y, v, t)]
    calls = [
        ("log_cosh_loss", (x, y), {}),
        ("log_cosh_loss", (x * 40, y), {}),  # mostly the large branch
        ("log_cosh_loss", (x * 1e-3, y * 1e-3), {}),  # the small branch
        ("hinge_loss", (x, t), {}),
        ("margin_ranking_loss", (x, y, t), {"margin": 0.0}),
        ("margin_ranking_loss", (x, y, t), {"margin": 0.75}),
        ("gaussian_nll_loss", (x, y, v), {"eps": 1e-6}),
        ("gaussian_nll_loss", (x, y, v), {"eps": 0.5, "full": True}),
        ("smooth_l1_loss", (x, y), {"beta": 1.0}),
        ("smooth_l1_loss", (x, y), {"beta": 0.3}),
        ("mse_loss", (x, y), {}),
        ("l1_loss", (x, y), {}),
    ]
    for name, args, kwargs in calls:
        fast, slow = both(name, *args, reduction=reduction, **kwargs)
        close(fast, slow, dtype, reduction)
    for a, copy in zip((x, y, v, t), copies):
        np.testing.assert_array_equal(a, copy)  # inputs untouched


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_half_precision_inputs_return_their_dtype(reduction):
    x, y, v = draw(3, (1000,), np.float16, 3)
    v = np.abs(v)
    t = signs(4, (1000,), np.float16)
    for name, args in [
        ("log_cosh_loss", (x, y)),
        ("hinge_loss", (x, t)),
        ("margin_ranking_loss", (x, y, t)),
        ("gaussian_nll_loss", (x, y, v)),
        ("smooth_l1_loss", (x, y)),
    ]:
        fast, slow = both(name, *args, reduction=reduction)
        assert fast.dtype == np.float16
        np.testing.assert_allclose(fast.astype(np.float32), slow.astype(np.float32), rtol=1e-3)


# ----------------------------------------------------------------- log_cosh


def test_log_cosh_matches_mpmath_across_the_range():
    """The polynomials (Q for |a| <= 1, R for log1p(exp(-2|a|))) against
    mpmath: within 2 ulps (relative to the value, plus one subnormal) from
    subnormal errors up to 60, the branch point 1 and its neighbours included."""
    rng = np.random.default_rng(5)
    for dtype in DTYPES:
        info = np.finfo(dtype)
        one = dtype(1.0)
        a = np.concatenate(
            [
                np.logspace(math.log10(float(info.smallest_subnormal)), math.log10(60.0), 300),
                rng.uniform(0.0, 1.0, 300),
                rng.uniform(1.0, 12.0, 200),
                [np.nextafter(one, dtype(0)), one, np.nextafter(one, dtype(2)), 0.5, 2.0],
            ]
        ).astype(dtype)
        a = np.concatenate([a, -a])
        got = anyloss.log_cosh_loss(a, np.zeros_like(a))
        expected = mp_reference.log_cosh_loss(a, np.zeros_like(a))
        for g, e, v in zip(got, expected, a):
            err = abs(mp.mpf(float(g)) - e)
            bound = 2 * EPS[dtype] * abs(e) + float(info.smallest_subnormal)
            assert err <= bound, (dtype, v, g, e)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_log_cosh_special_values(reduction, dtype):
    info = np.finfo(dtype)
    one = dtype(1.0)
    special = np.array(
        [
            0.0, -0.0, float(info.smallest_subnormal), float(info.tiny), 1e-20, 1e-4,
            np.nextafter(one, dtype(0)), 1.0, np.nextafter(one, dtype(2)), -1.0,
            30.0, 89.0, 1e30, float(info.max), -float(info.max), np.inf, -np.inf, np.nan,
        ],
        dtype=dtype,
    )
    x = np.tile(special, 3)
    y = np.concatenate([np.zeros_like(special), -special, np.full_like(special, 0.5)])
    fast, slow = both("log_cosh_loss", x, y, reduction=reduction)
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(slow))
    finite = np.isfinite(slow)
    np.testing.assert_array_equal(fast[~finite], slow[~finite])  # inf and nan alike
    close(fast[finite], slow[finite], dtype, reduction, atol=float(info.smallest_subnormal))
    if reduction == "none":
        assert fast[0] == 0 and fast[2] == 0 and fast[15] == np.inf and np.isnan(fast[17])
        # ties at the branch point
        v = special[6:9].astype(np.float64)
        np.testing.assert_allclose(fast[6:9], np.log(np.cosh(v)), rtol=2 * EPS[dtype])
    else:
        assert np.isnan(fast)


# ----------------------------------------------------------------- gaussian


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("full", [False, True])
def test_gaussian_nll_special_values(full, reduction, dtype):
    info = np.finfo(dtype)
    tiny, big = float(info.tiny), float(info.max)
    v = np.array([0.0, tiny, 1e-7, 1e-6, 2e-6, 1.0, 4.0, 1e30, big, np.inf, 1.0, 1.0, 1e-9], dtype)
    x = np.array([0.0, 1.0, 1e-3, -1.0, 2.0, 3.0, -2.0, 1e20, 1.0, 5.0, 1e25, np.inf, 0.0], dtype)
    y = np.array([0.0, 0.0, 0.0, 1.0, -2.0, 1.0, 2.0, -1e20, 0.0, 5.0, -1e25, 0.0, 1e-3], dtype)
    for eps in (1e-6, 1e-3, 1e-30):
        fast, slow = both("gaussian_nll_loss", x, y, v, full=full, eps=eps, reduction=reduction)
        if reduction == "none":
            np.testing.assert_array_equal(fast[11], slow[11])  # infinite residual
            close(fast[:11], slow[:11], dtype, reduction)
            close(fast[12:], slow[12:], dtype, reduction)
        else:
            assert fast == slow == np.inf
        keep = np.arange(v.size) != 11
        fast, slow = both("gaussian_nll_loss", x[keep], y[keep], v[keep], full=full, eps=eps, reduction=reduction)
        close(fast, slow, dtype, reduction)


# ------------------------------------------------------------ hinge, ranking


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_hinge_and_margin_ranking_special_values(reduction, dtype):
    big = float(np.finfo(dtype).max)
    x = np.array([1.0, -1.0, 0.5, np.inf, -np.inf, np.nan, big, -big, 0.0, 2.0], dtype)
    t = np.array([1.0, -1.0, 1.0, 1.0, 1.0, 1.0, -1.0, 1.0, -1.0, 0.5], dtype)
    x2 = np.array([0.0, 0.0, 0.5, 1.0, 1.0, 0.0, -big, big, 0.0, 1.0], dtype)
    for name, args, kwargs in [
        ("hinge_loss", (x, t), {}),
        ("margin_ranking_loss", (x, x2, t), {"margin": 0.0}),
        ("margin_ranking_loss", (x, x2, t), {"margin": -0.5}),
        ("margin_ranking_loss", (x, x2, t), {"margin": 1.0}),
    ]:
        fast, slow = both(name, *args, reduction=reduction, **kwargs)
        np.testing.assert_array_equal(fast, slow)  # the same operations, in the same order
        keep = ~np.isnan(x)
        fast, slow = both(name, *(a[keep] for a in args), reduction=reduction, **kwargs)
        np.testing.assert_array_equal(np.isfinite(fast), np.isfinite(slow))
        finite = np.isfinite(slow)
        close(fast[finite], slow[finite], dtype, reduction)


def test_hinge_ties_are_exact_zeros():
    x = np.array([1.0, -1.0, 0.25, 4.0], np.float32)
    t = np.array([1.0, -1.0, 4.0, 0.25], np.float32)
    np.testing.assert_array_equal(anyloss.hinge_loss(x, t), [0.0, 0.0, 0.0, 0.0])
    assert anyloss.hinge_loss(x, t, reduction="sum") == 0.0


# ------------------------------------------------------------- smooth_l1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("beta", [1.0, 0.5, 1e-30, 1e30])
def test_smooth_l1_special_values(beta, reduction, dtype):
    big = float(np.finfo(dtype).max)
    b = dtype(min(beta, big))
    x = np.array([0.0, b, np.nextafter(b, dtype(0)), np.nextafter(b, dtype(np.inf)), 3.0, -3.0, big, -big,
                  np.inf, -np.inf, 1e-20, 0.25], dtype)
    y = np.zeros_like(x)
    y[7] = big  # |x - y| overflows to inf
    fast, slow = both("smooth_l1_loss", x, y, beta=beta, reduction=reduction)
    np.testing.assert_array_equal(fast, slow)  # each term's own operations
    with_nan = np.append(x, np.nan)
    fast, slow = both("smooth_l1_loss", with_nan, np.zeros_like(with_nan), beta=beta, reduction=reduction)
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(slow))


# ------------------------------------------------------------------ kl_div


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "shape,axis", [((40, 33), -1), ((9, 1024), 1), ((3, 70_000), 1), ((4, 5, 6), 1), ((6, 5, 4), 0), ((300, 400), 0)]
)
def test_kl_div_matches_portable(shape, axis, reduction, dtype):
    rng = np.random.default_rng(6)
    c = shape[axis]
    x = (rng.standard_normal(shape) - math.log(c)).astype(dtype)
    t = (rng.standard_normal(shape) - math.log(c)).astype(dtype)
    assert_fast_path_used("kl_div_loss", x, t, axis % x.ndim, reduction, x.dtype)
    fast, slow = both("kl_div_loss", x, t, axis=axis, reduction=reduction)
    close(fast, slow, dtype, "mean")  # sums along the axis


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [-1, 0])
def test_kl_div_zero_probabilities_and_infinities(axis, dtype):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((20, 300)) - 5).astype(dtype)
    t = (rng.standard_normal((20, 300)) - 5).astype(dtype)
    t[:, ::7] = -np.inf  # p = 0: no contribution, whatever the prediction
    x[:, ::14] = -np.inf  # ... even a prediction of -inf
    x[3, 1] = -np.inf  # p > 0 with a prediction of -inf: +inf
    t[5, 2] = np.nan
    t[6, :] = -np.inf  # a row of zeros only
    x[8, 3] = np.inf  # p > 0, x = +inf: -inf
    for reduction in REDUCTIONS:
        fast, slow = both("kl_div_loss", x, t, axis=axis, reduction=reduction)
        np.testing.assert_array_equal(np.isnan(fast), np.isnan(slow))
        np.testing.assert_array_equal(np.isinf(fast), np.isinf(slow))
        finite = np.isfinite(slow)
        np.testing.assert_array_equal(fast[~finite], slow[~finite])
        close(fast[finite], slow[finite], dtype, "mean")
    fast = anyloss.kl_div_loss(x, t, axis=axis)
    if axis == -1:
        assert fast[6] == 0 and fast[3] == np.inf and np.isnan(fast[5]) and fast[8] == -np.inf
        clean = [r for r in range(20) if r not in (3, 5, 8)]
        assert np.all(np.isfinite(fast[clean]))


# ----------------------------------------------------------------- triplet


def triplet_tol(dtype, *arrays):
    """A loss is a difference of two distances, each right to a few ulps of
    itself: bound the error by ulps of the larger distance."""
    a, p, n = (v.astype(np.float64) for v in arrays)
    scale = np.maximum(np.linalg.norm(a - p, axis=-1), np.linalg.norm(a - n, axis=-1)) + 1.0
    return 8 * EPS[dtype] * float(np.max(scale))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("p", [2, 1, 3, 0.5])
@pytest.mark.parametrize("shape", [(50, 33), (7, 1024), (2, 70_000), (300, 3, 40)])
def test_triplet_matches_portable(shape, p, reduction, dtype):
    a, pos, neg = draw(8, shape, dtype, 3, scale=1.0)
    pos[0] = a[0]  # a zero distance
    neg[1] = a[1]
    assert_fast_path_used("triplet_loss", a, pos, neg, a.ndim - 1, float(p), 1.0, 1e-6, reduction, a.dtype)
    for eps, margin in ((1e-6, 1.0), (0.0, 0.5)):
        fast, slow = both("triplet_loss", a, pos, neg, p=p, eps=eps, margin=margin, reduction=reduction)
        n = 1 if reduction != "sum" else a.size // a.shape[-1]
        np.testing.assert_allclose(fast, slow, rtol=0, atol=n * triplet_tol(dtype, a, pos, neg))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["huge", "tiny", "zero", "inf", "nan", "subnormal"])
def test_triplet_rows_that_need_the_scaled_form(case, dtype):
    """Rows whose unscaled sum of squares overflows, underflows or is not a
    number go through the portable scaled computation (block by block)."""
    info = np.finfo(dtype)
    a, pos, neg = draw(9, (70, 40), dtype, 3, scale=1.0)
    value = {"huge": float(info.max) / 4, "tiny": float(info.tiny) * 8, "zero": 0.0, "inf": np.inf,
             "nan": np.nan, "subnormal": float(info.smallest_subnormal) * 3}[case]
    a[5] = value
    pos[5] = -value if case not in ("inf", "nan") else 0.0
    neg[5] = value / 2 if case != "zero" else 0.0
    a[6], pos[6], neg[6] = 0.0, 0.0, 0.0  # all-zero differences
    for p in (2, 3):
        for eps in (1e-6, 0.0):
            fast, slow = both("triplet_loss", a, pos, neg, p=p, eps=eps, reduction="none")
            np.testing.assert_array_equal(np.isnan(fast), np.isnan(slow))
            finite = np.isfinite(slow)
            np.testing.assert_array_equal(fast[~finite], slow[~finite])
            rows = np.arange(70) != 5
            tol = triplet_tol(dtype, a[rows], pos[rows], neg[rows])
            np.testing.assert_allclose(fast[finite], slow[finite], rtol=0, atol=tol)
            np.testing.assert_allclose(fast[5], slow[5], rtol=4 * EPS[dtype])


def test_triplet_matches_mpmath():
    a, pos, neg = draw(10, (6, 17), np.float64, 3)
    got = anyloss.triplet_loss(a, pos, neg, margin=2.0)
    expected = mp_reference.triplet_loss(a, pos, neg, margin=2.0)
    np.testing.assert_allclose(got, np.array([float(e) for e in expected]), rtol=1e-14, atol=1e-14)


# --------------------------------------------------- arrays left to the portable code


def test_unusual_arrays_are_handed_back():
    x, y, v = draw(11, (40, 30), np.float32, 3)
    t = signs(12, (40, 30), np.float32)
    strided = x[:, ::2]
    assert native.log_cosh_loss(np, strided, y[:, ::2], "mean", np.float32) is NotImplemented
    assert native.hinge_loss(np, strided, t[:, ::2], "mean", np.float32) is NotImplemented
    assert native.gaussian_nll_loss(np, x, y, v.astype(np.float64), False, 1e-6, "mean", np.float32) is NotImplemented
    assert native.margin_ranking_loss(np, x[:0], y[:0], t[:0], 0.0, "mean", np.float32) is NotImplemented
    assert native.kl_div_loss(np, x.astype(np.float16), y.astype(np.float16), 1, "none", np.float16) is NotImplemented
    assert native.triplet_loss(np, x, y, v, 0, 2.0, 1.0, 1e-6, "none", np.float32) is NotImplemented
    # ... and the losses still agree with the portable code on them
    for name, args in [("log_cosh_loss", (strided, y[:, ::2])), ("hinge_loss", (strided, t[:, ::2]))]:
        fast, slow = both(name, *args, reduction="mean")
        np.testing.assert_array_equal(fast, slow)
    fast, slow = both("triplet_loss", x, y, v, axis=0)
    np.testing.assert_array_equal(fast, slow)

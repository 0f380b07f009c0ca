"""The NumPy fast path (``anyloss._native.numpy``) against the portable code.

Every call here is made twice through the public API: by the fast path and
inside ``_native.portable()`` (``_formulas.evaluate`` on array-api-compat's
NumPy).  The blocked, threaded path is forced onto small arrays with a small
block (``THRESHOLD`` and ``BLOCK`` patched) and three threads, so the shapes
leave partial blocks and every thread gets work.  Blocked sums are reordered,
so reduced results agree to a few ulps of the sum of magnitudes; unreduced
ones to a few ulps (the plain forms of cosine and triplet are not the scaled
formulas bit for bit).  NaN, inf and 0 must be the same as the portable path's.
"""

from __future__ import annotations

import concurrent.futures
import math
import warnings

import array_api_compat.numpy as compat_np
import numpy as np
import pytest

import anyloss
from anyloss import _formulas, _native
from anyloss._native import numpy as fast

ULPS = 8
REDUCTIONS = ("none", "mean", "sum")
DTYPES = ("float16", "float32", "float64")


@pytest.fixture
def blocked(monkeypatch):
    """Every non-empty call blocked, 64 elements per block, three threads."""
    monkeypatch.setattr(fast, "THRESHOLD", 1)
    monkeypatch.setattr(fast, "THREADED", 1)
    monkeypatch.setattr(fast, "BLOCK", 64)
    monkeypatch.setenv("ANYLOSS_NUM_THREADS", "3")


@pytest.fixture
def direct(monkeypatch):
    monkeypatch.setattr(fast, "THRESHOLD", 1 << 62)


# ------------------------------------------------------------------------ inputs


def _log_softmax(z: np.ndarray, axis: int) -> np.ndarray:
    z = z - z.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def _drop(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    axis %= len(shape)
    return shape[:axis] + shape[axis + 1 :]


def _layout(a: np.ndarray, layout: str) -> np.ndarray:
    """The same values in another memory layout."""
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "strided":  # every other element of a larger array
        wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype) if a.ndim else a.copy()
        if not a.ndim:
            return wide
        wide[..., ::2] = a
        return wide[..., ::2]
    return np.ascontiguousarray(a)


def make_call(name, shape, axis, dtype, rng, variant=""):
    """``(args, kwargs)`` of a valid call of ``anyloss.<name>`` (float64 data
    cast to ``dtype``; class indices int64)."""
    dt = np.dtype(dtype)

    def normal(s=shape, scale=1.0):
        return (rng.standard_normal(s) * scale).astype(dt)

    ax = axis
    if name == "cross_entropy":
        logits = normal(scale=3.0)
        kwargs = {"axis": ax}
        if "probabilities" in variant:
            targets = np.exp(_log_softmax(rng.standard_normal(shape), ax)).astype(dt)
        else:
            targets = rng.integers(0, shape[ax], _drop(shape, ax))
        if "weights" in variant:
            kwargs["weights"] = rng.uniform(0.5, 2.0, _drop(shape, ax)).astype(dt)
        if "smoothing" in variant:
            kwargs["label_smoothing"] = 0.1
        return (logits, targets), kwargs
    if name == "nll_loss":
        x = _log_softmax(rng.standard_normal(shape), ax).astype(dt)
        return (x, rng.integers(0, shape[ax], _drop(shape, ax))), {"axis": ax}
    if name == "kl_div_loss":
        x = _log_softmax(rng.standard_normal(shape), ax).astype(dt)
        t = _log_softmax(rng.standard_normal(shape), ax).astype(dt)
        return (x, t), {"axis": ax}
    if name == "cosine_similarity_loss":
        return (normal(), normal()), {"axis": ax}
    if name == "triplet_loss":
        p = {"p1": 1, "p3": 3}.get(variant, 2)
        return (normal(), normal(), normal()), {"axis": ax, "p": p}
    if name == "binary_cross_entropy":
        x = normal(scale=3.0)
        kwargs = {}
        if "probabilities" in variant:
            x = (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(dt)
            kwargs["with_logits"] = False
        if "weights" in variant:
            kwargs["weights"] = rng.uniform(0.5, 2.0, shape).astype(dt)
        return (x, rng.uniform(0.0, 1.0, shape).astype(dt)), kwargs
    if name in ("hinge_loss",):
        return (normal(), np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(dt)), {}
    if name == "margin_ranking_loss":
        signs = np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(dt)
        return (normal(), normal(), signs), {"margin": 0.1}
    if name == "gaussian_nll_loss":
        return (normal(), normal(), rng.uniform(0.1, 2.0, shape).astype(dt)), {}
    if name == "huber_loss":
        return (normal(), normal()), {"delta": 1.0}
    if name == "smooth_l1_loss":
        return (normal(), normal()), {"beta": 0.5}
    return (normal(), normal()), {}


ROW_CASES = [
    ("cross_entropy", ""),
    ("cross_entropy", "weights"),
    ("cross_entropy", "smoothing"),
    ("cross_entropy", "probabilities"),
    ("nll_loss", ""),
    ("kl_div_loss", ""),
    ("cosine_similarity_loss", ""),
    ("triplet_loss", ""),
    ("triplet_loss", "p1"),
    ("triplet_loss", "p3"),
]
ELEMENTWISE_CASES = [
    ("binary_cross_entropy", ""),
    ("binary_cross_entropy", "weights"),
    ("binary_cross_entropy", "probabilities"),
    ("hinge_loss", ""),
    ("huber_loss", ""),
    ("l1_loss", ""),
    ("log_cosh_loss", ""),
    ("margin_ranking_loss", ""),
    ("mse_loss", ""),
    ("smooth_l1_loss", ""),
    ("gaussian_nll_loss", ""),
]


ROW_NAMES = {name for name, _ in ROW_CASES}


def test_every_loss_has_its_kind():
    """The blocked losses are named, each as rows or elements; nll_loss runs directly."""
    assert fast.ROWS | fast.ELEMENTWISE | {"nll_loss"} >= {n for n, _ in ROW_CASES + ELEMENTWISE_CASES}
    assert not fast.ROWS & fast.ELEMENTWISE
    assert fast.ROWS == ROW_NAMES - {"nll_loss"}


def test_unknown_losses_run_directly(blocked, monkeypatch):
    """A loss the fast path does not know is never cut into blocks."""

    def row_sums(xp, x, y, axis):
        return xp.sum(x * y, axis=axis)

    monkeypatch.setitem(_formulas.FORMULAS, "row_sums", row_sums)
    x, y = np.random.default_rng(20).standard_normal((2, 50, 30))
    f64 = np.dtype(np.float64)
    for axis in (0, 1):
        for reduction in REDUCTIONS:
            want = _formulas.evaluate(compat_np, "row_sums", (axis,), reduction, f64, f64, False, x, y)
            got = fast.run(compat_np, "row_sums", (axis,), reduction, f64, f64, False, x, y)
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-13)


def _ids(cases):
    return [f"{n}-{v}" if v else n for n, v in cases]


# ------------------------------------------------------------------- comparison


def _portable(name, args, kwargs):
    with _native.portable():
        return getattr(anyloss, name)(*args, **kwargs)


def assert_matches(got, want, scale):
    """``got`` is ``want`` to ``ULPS`` ulps of ``|want| + scale``, with the
    same type, dtype, shape, and the same NaN, infinities and zeros."""
    assert type(got) is np.ndarray and type(want) is np.ndarray
    assert got.dtype == want.dtype and got.shape == want.shape
    g, w = got.astype(np.float64), want.astype(np.float64)
    np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
    np.testing.assert_array_equal(np.where(np.isinf(w), w, 0), np.where(np.isinf(g), g, 0))
    finite = np.isfinite(w)
    info = np.finfo(want.dtype)
    tol = ULPS * float(info.eps) * (np.abs(w) + scale) + ULPS * float(info.smallest_subnormal)
    with np.errstate(invalid="ignore"):  # inf - inf where want is not finite
        bad = finite & ~(np.abs(g - w) <= tol)
    assert not bad.any(), f"got {g[bad][:5]}, want {w[bad][:5]} (tolerance {tol[bad][:5]})"


def compare(name, args, kwargs, reduction):
    """The fast path's call against the portable one."""
    kwargs = dict(kwargs, reduction=reduction)
    want = _portable(name, args, kwargs)
    got = getattr(anyloss, name)(*args, **kwargs)
    magnitudes = np.abs(_portable(name, args, dict(kwargs, reduction="none")).astype(np.float64))
    magnitudes = magnitudes[np.isfinite(magnitudes)]
    if reduction == "sum":
        scale = float(magnitudes.sum())
    elif reduction == "mean":
        scale = float(magnitudes.mean()) if magnitudes.size else 0.0
    else:
        scale = float(magnitudes.max()) if magnitudes.size else 0.0
    assert_matches(got, want, scale)
    return got


# ------------------------------------------------------------ blocked = portable


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "shape, axis",
    [((37, 13), -1), ((37, 13), 0), ((5, 11, 7), 1), ((3, 5, 29), -1)],
    ids=["rows", "axis0", "middle", "3d"],
)
@pytest.mark.parametrize("name, variant", ROW_CASES, ids=_ids(ROW_CASES))
def test_rows_blocked(blocked, name, variant, shape, axis, reduction, dtype):
    args, kwargs = make_call(name, shape, axis, dtype, np.random.default_rng(1), variant)
    compare(name, args, kwargs, reduction)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(1001,), (37, 13), (3, 4, 17)], ids=["1d", "2d", "3d"])
@pytest.mark.parametrize("name, variant", ELEMENTWISE_CASES, ids=_ids(ELEMENTWISE_CASES))
def test_elementwise_blocked(blocked, name, variant, shape, reduction, dtype):
    args, kwargs = make_call(name, shape, 0, dtype, np.random.default_rng(2), variant)
    compare(name, args, kwargs, reduction)


@pytest.mark.parametrize("layout", ["fortran", "strided"])
@pytest.mark.parametrize("reduction", ["none", "sum"])
@pytest.mark.parametrize("name, variant", ROW_CASES + ELEMENTWISE_CASES, ids=_ids(ROW_CASES + ELEMENTWISE_CASES))
def test_layouts_blocked(blocked, name, variant, layout, reduction):
    """Arrays that cannot be reshaped without a copy are cut along an axis of their own."""
    for shape, axis in (((41, 9), -1), ((9, 41), 0), ((6, 7, 11), 1)):
        args, kwargs = make_call(name, shape, axis, "float32", np.random.default_rng(3), variant)
        args = tuple(_layout(a, layout) for a in args)
        kwargs = {k: _layout(v, layout) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        compare(name, args, kwargs, reduction)


@pytest.mark.parametrize("threads", ["1", "2", "7"])
def test_thread_counts(blocked, monkeypatch, threads):
    monkeypatch.setenv("ANYLOSS_NUM_THREADS", threads)
    for name, variant in (("cross_entropy", "weights"), ("mse_loss", "")):
        args, kwargs = make_call(name, (50, 9), -1, "float32", np.random.default_rng(4), variant)
        for reduction in REDUCTIONS:
            compare(name, args, kwargs, reduction)


def test_blocked_is_deterministic(blocked):
    """Per-block sums are combined in block order, whatever thread made them."""
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((2, 5000)).astype(np.float32)
    first = anyloss.mse_loss(x, y, reduction="sum")
    for _ in range(20):
        assert anyloss.mse_loss(x, y, reduction="sum").tobytes() == first.tobytes()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape, axis", [((0,), 0), ((0, 7), -1), ((7, 0, 3), 0)])
def test_empty(monkeypatch, shape, axis, reduction):
    """Empty arrays (a mean over nothing is NaN, as np.mean's)."""
    monkeypatch.setattr(fast, "THRESHOLD", 0)
    monkeypatch.setattr(fast, "BLOCK", 4)
    rng = np.random.default_rng(6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for name, variant in ROW_CASES + ELEMENTWISE_CASES:
            if name in ROW_NAMES and len(shape) == 1:
                continue
            args, kwargs = make_call(name, shape, axis, "float32", rng, variant)
            compare(name, args, kwargs, reduction)


def test_large_call_default_settings():
    """One call above the real threshold, with the real block size."""
    rng = np.random.default_rng(7)
    n = fast.THRESHOLD + 12345
    x, y = rng.standard_normal((2, n)).astype(np.float32)
    for reduction in REDUCTIONS:
        compare("log_cosh_loss", (x, y), {}, reduction)
    logits = rng.standard_normal((fast.THRESHOLD // 500 + 3, 500)).astype(np.float32)
    targets = rng.integers(0, 500, logits.shape[0])
    for reduction in REDUCTIONS:
        compare("cross_entropy", (logits, targets), {}, reduction)


# ------------------------------------------------------------- special values


def _spoil(a: np.ndarray, rng, values) -> np.ndarray:
    """``a`` with a few entries replaced by ``values``, spread over the blocks."""
    a = a.copy()
    flat = a.reshape(-1)
    where = rng.choice(flat.size, size=min(flat.size, 3 * len(values)), replace=False)
    for i, w in enumerate(where):
        flat[w] = values[i % len(values)]
    return a


SPECIAL = [math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name, variant", ROW_CASES + ELEMENTWISE_CASES, ids=_ids(ROW_CASES + ELEMENTWISE_CASES))
def test_special_values(blocked, name, variant, dtype, reduction):
    """NaN and infinities in some blocks: each argument in turn."""
    rng = np.random.default_rng(8)
    args, kwargs = make_call(name, (40, 12), -1, dtype, rng, variant)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for i, a in enumerate(args):
            if a.dtype.kind != "f":
                continue
            if name == "binary_cross_entropy" and "probabilities" in variant and i == 0:
                continue  # probabilities are checked to lie in [0, 1]
            if name == "gaussian_nll_loss" and i == 2:
                values = [math.nan, math.inf]  # variances are checked to be >= 0
            elif name in ("nll_loss", "kl_div_loss"):
                values = [math.nan, -math.inf]  # log-probabilities are at most 0
            else:
                values = SPECIAL
            spoiled = list(args)
            spoiled[i] = _spoil(a, rng, values)
            compare(name, tuple(spoiled), kwargs, reduction)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # -inf - -inf, in the formula too
def test_zero_probability_classes(blocked):
    """kl_div and cross entropy with probability targets: t = 0 (log t = -inf) in
    some rows only, so the plain form holds in some blocks and not in others."""
    rng = np.random.default_rng(9)
    x = _log_softmax(rng.standard_normal((60, 10)), -1)
    t = _log_softmax(rng.standard_normal((60, 10)), -1)
    t[::7, 3] = -np.inf
    x[::11, 3] = -np.inf
    t = _log_softmax(t, -1)
    for reduction in REDUCTIONS:
        compare("kl_div_loss", (x, t), {}, reduction)
        compare("cross_entropy", (rng.standard_normal((60, 10)), np.exp(t)), {}, reduction)


def test_extreme_vectors(blocked):
    """Rows where the plain cosine and triplet forms do not hold: zero, tiny
    and huge vectors (the scaled formulas run for those blocks)."""
    rng = np.random.default_rng(10)
    a, b, c = rng.standard_normal((3, 40, 16)).astype(np.float32)
    a[3] = 0.0
    a[17] *= np.float32(1e-30)
    b[25] *= np.float32(1e30)
    c[33] = a[33]
    for reduction in REDUCTIONS:
        compare("cosine_similarity_loss", (a, b), {"eps": 0.0}, reduction)
        compare("cosine_similarity_loss", (a, b), {}, reduction)
        compare("triplet_loss", (a, b, c), {}, reduction)
        compare("triplet_loss", (a, b, c), {"eps": 0.0}, reduction)


def test_plain_forms_keep_numpy_quiet(direct):
    """The plain forms' own 0 * inf and overflowing squares raise nothing
    under errstate(all='raise') where the formula raises nothing."""
    x = np.log(np.array([[0.5, 0.5], [0.9, 0.1]]))
    t = np.array([[-np.inf, 0.0], [np.log(0.5), np.log(0.5)]])
    big = np.array([[1e30, 2e30]], np.float32)
    with np.errstate(all="raise"):
        with _native.portable():
            kl, cos = anyloss.kl_div_loss(x, t), anyloss.cosine_similarity_loss(big, big)
        np.testing.assert_array_equal(anyloss.kl_div_loss(x, t), kl)
        np.testing.assert_array_equal(anyloss.cosine_similarity_loss(big, big), cos)
        bce = anyloss.binary_cross_entropy(np.array([np.inf, 1.0]), np.array([1.0, 1.0]), reduction="none")
    np.testing.assert_array_equal(bce, [0.0, np.log1p(np.exp(-1.0))])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bce_plain_is_the_formula(dtype):
    """``bce_logits_plain`` is ``binary_cross_entropy`` bit for bit wherever it is not NaN."""
    dt = np.dtype(dtype)
    info = np.finfo(dt)
    logits = [0.0, -0.0, 1e-30, -1e-30, 1e-8, 0.5, -0.5, 20.0, -20.0, 90.0, -90.0, 800.0, -800.0,
              float(info.max), -float(info.max), math.inf, -math.inf, math.nan]
    targets = [0.0, 1.0, 0.5, 1e-7, 1.0 - float(info.eps), 0.25, math.nan]
    x, t = (a.astype(dt).ravel() for a in np.meshgrid(logits, targets))
    with np.errstate(all="ignore"):
        plain = _formulas.bce_logits_plain(fast.lean, x, t)
        formula = _formulas.binary_cross_entropy(compat_np, x, t, None, True)
    shown = ~np.isnan(plain)
    np.testing.assert_array_equal(plain[shown], formula[shown])
    # NaN only from 0 * inf or a NaN input: where the formula runs instead
    assert np.all(np.isnan(x[~shown]) | np.isnan(t[~shown]) | np.isinf(x[~shown]))


@pytest.mark.parametrize("log_input", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_poisson_plain_is_the_formula(dtype, log_input):
    """``poisson_nll_plain`` is ``poisson_nll_loss`` (without ``full``) bit for
    bit wherever it is not NaN, and NaN only where the formula is NaN too or
    its 0 log 0 rule acts; the direct path gives the formula's values there."""
    dt = np.dtype(dtype)
    info = np.finfo(dt)
    inputs = [0.0, -0.0, 1e-30, 1e-7, 0.5, -0.5, 3.0, -20.0, 88.0, -100.0, 800.0,
              float(info.max), -float(info.max), -1e-8, math.inf, -math.inf, math.nan]
    targets = [0.0, 1.0, 0.5, 7.0, 1e30, math.nan]
    x, t = (a.astype(dt).ravel() for a in np.meshgrid(inputs, targets))
    with np.errstate(all="ignore"):
        plain = _formulas.poisson_nll_plain(fast.lean, x, t, log_input, 1e-8)
        formula = _formulas.poisson_nll_loss(compat_np, x, t, log_input, False, 1e-8)
    shown = ~np.isnan(plain)
    np.testing.assert_array_equal(plain[shown], formula[shown])
    assert np.all(np.isnan(formula[~shown]) | (t[~shown] == 0))
    assert np.isfinite(formula[~shown]).any()  # the rule acted somewhere
    keep = t >= 0  # (the front door's check)
    with np.errstate(all="ignore"):  # the formula's own warnings on inf and NaN, on both paths
        for reduction in REDUCTIONS:
            compare("poisson_nll_loss", (x[keep], t[keep]), {"log_input": log_input}, reduction)


def test_cosine_embedding_plain_holds_or_gives_way(direct):
    """cosine_embedding_loss by its plain form where every squared norm is
    exact, and by the formula on zero, tiny and huge vectors."""
    rng = np.random.default_rng(15)
    a, b = rng.standard_normal((2, 12, 16)).astype(np.float32)
    y = np.where(rng.random(12) < 0.5, -1.0, 1.0).astype(np.float32)
    for kwargs in ({}, {"margin": 0.3}):
        for reduction in REDUCTIONS:
            compare("cosine_embedding_loss", (a, b, y), kwargs, reduction)
    a[3] = 0.0
    a[5] *= np.float32(1e-30)
    b[8] *= np.float32(1e30)
    for reduction in REDUCTIONS:
        compare("cosine_embedding_loss", (a, b, y), {}, reduction)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("beta", [0.0, 1e-30, 0.5, 1.0, 3.0, 1e30])
def test_smooth_l1_plain_is_the_formula(dtype, beta):
    """``smooth_l1_plain``: bit for bit below beta, to an ulp above, NaN where the formula is."""
    dt = np.dtype(dtype)
    rng = np.random.default_rng(21)
    scale = np.logspace(-35, 35, 71)
    x = np.concatenate([rng.standard_normal(710) * np.repeat(scale, 10), [math.inf, -math.inf, math.nan, 0.0]])
    x, y = x.astype(dt), rng.permutation(x).astype(dt)
    with np.errstate(all="ignore"):
        plain = _formulas.smooth_l1_plain(fast.lean, x, y, beta)
        formula = _formulas.smooth_l1_loss(compat_np, x, y, beta)
        below = np.abs(x - y) < beta
    np.testing.assert_array_equal(np.isnan(plain), np.isnan(formula))
    np.testing.assert_array_equal(plain[below], formula[below])
    np.testing.assert_allclose(plain[~below], formula[~below], rtol=2 * float(np.finfo(dt).eps), atol=0)


# ------------------------------------------------------- the direct path (lean)


CALLS = ROW_CASES + ELEMENTWISE_CASES


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, variant", CALLS, ids=_ids(CALLS))
def test_lean_namespace_is_numpy(monkeypatch, name, variant, dtype):
    """``evaluate`` on the lean namespace gives array-api-compat's NumPy results bit for bit."""
    seen = []
    monkeypatch.setattr(fast, "run", lambda xp, *a: seen.append(a) or _formulas.evaluate(xp, *a))
    args, kwargs = make_call(name, (9, 6), -1, dtype, np.random.default_rng(11), variant)
    for reduction in REDUCTIONS:
        getattr(anyloss, name)(*args, **kwargs, reduction=reduction)
    assert len(seen) == len(REDUCTIONS)
    for call in seen:
        want = _formulas.evaluate(compat_np, *call)
        got = _formulas.evaluate(fast.lean, *call)
        assert type(got) is type(want) and got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name, variant", CALLS, ids=_ids(CALLS))
def test_direct(direct, name, variant, reduction, dtype):
    """The whole direct path (lean namespace, plain forms where they hold)."""
    args, kwargs = make_call(name, (9, 6), -1, dtype, np.random.default_rng(12), variant)
    compare(name, args, kwargs, reduction)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int32", "bool"])
def test_lean_functions(dtype):
    rng = np.random.default_rng(13)
    x = (rng.standard_normal((3, 4, 5)) * 4).astype(dtype)
    lean = fast.lean
    for axis in (None, 0, 1, -1, 2):
        for keepdims in (False, True):
            for ours, theirs in ((lean.sum, np.sum), (lean.max, np.max)):
                got, want = ours(x, axis=axis, keepdims=keepdims), theirs(x, axis=axis, keepdims=keepdims)
                assert type(got) is type(want) and np.asarray(got).dtype == np.asarray(want).dtype
                np.testing.assert_array_equal(got, want)
    for y in (x, x[:, ::2], x[:0]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            got, want = lean.mean(y), np.mean(y)
        assert type(got) is type(want) and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    for axis in (0, 1, 3, -1, -4):
        np.testing.assert_array_equal(lean.expand_dims(x, axis=axis), np.expand_dims(x, axis=axis))
    one = x[:, :1]
    np.testing.assert_array_equal(lean.squeeze(one, axis=1), np.squeeze(one, axis=1))
    np.testing.assert_array_equal(lean.squeeze(one, axis=-2), np.squeeze(one, axis=-2))
    with pytest.raises(ValueError):
        lean.squeeze(x, axis=1)
    assert lean.astype(x, np.float64).dtype == np.float64
    assert lean.isdtype(x.dtype, "real floating") == compat_np.isdtype(x.dtype, "real floating")
    assert lean.isdtype(x.dtype, ("integral", "bool")) == compat_np.isdtype(x.dtype, ("integral", "bool"))
    assert lean.exp is np.exp and lean.float32 is np.float32
    for y in (x, x[:, ::2], np.asfortranarray(x)):
        for like, theirs, fill in ((lean.zeros_like, np.zeros_like, ()), (lean.ones_like, np.ones_like, ()),
                                   (lean.full_like, np.full_like, (-math.inf,)), (lean.full_like, np.full_like, (2,))):
            for to in (None, np.float32) if y.dtype.kind == "f" or fill != (-math.inf,) else (np.float32,):
                got, want = like(y, *fill, dtype=to), theirs(y, *fill, dtype=to)
                assert type(got) is np.ndarray and got.dtype == want.dtype
                np.testing.assert_array_equal(got, want)


def test_lean_take_along_axis():
    rng = np.random.default_rng(14)
    x = rng.standard_normal((4, 5, 6))
    for axis in (0, 1, 2, -1):
        n = x.shape[axis]
        shape = list(x.shape)
        shape[axis] = 1
        for low in (0, -n):
            idx = rng.integers(low, n, shape)
            np.testing.assert_array_equal(
                fast.lean.take_along_axis(x, idx, axis=axis), np.take_along_axis(x, idx, axis=axis)
            )
    with pytest.raises(IndexError):
        fast.lean.take_along_axis(x, np.full((4, 5, 1), 6), axis=-1)


# --------------------------------------------------------------- class indices


@pytest.mark.parametrize(
    "targets",
    [
        np.array([0, 1, 5]),
        np.array([0, -1, 2]),
        np.array([0, 2, 3], np.uint8),
        np.array([0, -1, 1], np.int8),
        np.array([-100, 0, 1], np.int8),
        np.array([0, 200, 1], np.int16),
    ],
    ids=["too-large", "negative", "uint8", "int8", "int8-far", "int16"],
)
@pytest.mark.parametrize("classes", [3, 150])
@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_class_index_range(direct, name, targets, classes):
    """The fast path checks the range itself, with the front door's error."""
    x = _log_softmax(np.random.default_rng(15).standard_normal((3, classes)), -1)
    assert _native.checks_class_indices(compat_np, targets)
    in_range = targets.min() >= 0 and targets.max() < classes
    if in_range:
        compare(name, (x, targets), {}, "none")
        return
    with pytest.raises(ValueError) as ours:
        getattr(anyloss, name)(x, targets)
    with pytest.raises(ValueError) as portable, _native.portable():
        getattr(anyloss, name)(x, targets)
    assert str(ours.value) == str(portable.value)


def test_subclass_takes_the_portable_path(blocked):
    class Tagged(np.ndarray):
        pass

    rng = np.random.default_rng(16)
    x = rng.standard_normal((30, 5)).view(Tagged)
    y = rng.standard_normal((30, 5))
    want = _portable("mse_loss", (np.asarray(x), y), {})
    np.testing.assert_array_equal(anyloss.mse_loss(x, y), want)


# ---------------------------------------------------------------------- threads


def test_errstate_reaches_the_threads(blocked):
    """NumPy's floating-point settings of the caller hold in every block."""
    x = np.full(1000, 3e38, np.float32)
    y = -x
    with np.errstate(over="raise"):
        with pytest.raises(FloatingPointError), _native.portable():
            anyloss.mse_loss(x, y)
        with pytest.raises(FloatingPointError):
            anyloss.mse_loss(x, y)
    with np.errstate(over="ignore"):
        assert np.isinf(anyloss.mse_loss(x, y))


def test_no_threads_inside_a_pool_thread(blocked, monkeypatch):
    """A call from inside a pool thread runs directly, never waiting on the pool."""
    rng = np.random.default_rng(17)
    x, y = rng.standard_normal((2, 3000))
    want = _portable("huber_loss", (x, y), {})
    plans = []
    original = fast._plan
    monkeypatch.setattr(fast, "_plan", lambda *a: plans.append(a) or original(*a))
    pool = fast._executor(2)
    got = pool.submit(anyloss.huber_loss, x, y).result(timeout=60)
    assert plans == []
    assert_matches(got, want, 0.0)
    anyloss.huber_loss(x, y)
    assert len(plans) == 1


def test_concurrent_callers(blocked):
    """Callers on several threads share the pool; each gets its own answer."""
    rng = np.random.default_rng(18)
    inputs = [rng.standard_normal((2, 2000 + 37 * i)) for i in range(8)]
    wants = [_portable("l1_loss", (x, y), {"reduction": "sum"}) for x, y in inputs]
    with concurrent.futures.ThreadPoolExecutor(4) as callers:
        gots = list(callers.map(lambda xy: anyloss.l1_loss(*xy, reduction="sum"), inputs))
    for got, want in zip(gots, wants):
        assert_matches(got, want, float(want))


def test_threads_setting(monkeypatch):
    monkeypatch.setenv("ANYLOSS_NUM_THREADS", "3")
    assert fast.threads() == 3
    monkeypatch.setenv("ANYLOSS_NUM_THREADS", "0")
    assert fast.threads() == 1
    monkeypatch.setenv("ANYLOSS_NUM_THREADS", "many")
    assert fast.threads() >= 1
    monkeypatch.delenv("ANYLOSS_NUM_THREADS")
    assert fast.threads() >= 1


def test_an_error_in_a_block_is_raised(blocked, monkeypatch):
    calls = []

    def failing(*a):
        calls.append(a)
        if len(calls) == 3:
            raise MemoryError("block 3")
        return _formulas.evaluate(fast.lean, *a[:6], *a[6])

    monkeypatch.setattr(fast, "_evaluate", failing)
    x, y = np.random.default_rng(19).standard_normal((2, 2000))
    with pytest.raises(MemoryError, match="block 3"):
        anyloss.mse_loss(x, y)


# ---------------------------------------------------------- training options


@pytest.mark.parametrize("rows", (8, 1 << 15))  # direct, and past the blocks' threshold
@pytest.mark.parametrize("reduction", ("none", "mean", "sum"))
def test_training_options_match_portable(rows, reduction):
    """Class weights, ignore_index, z-loss, soft-capping and pos_weight run
    directly (no block cuts a per-class array or a mean over kept rows)."""
    rng = np.random.default_rng(rows)
    x = rng.standard_normal((rows, 5)) * 2
    y = rng.integers(0, 5, rows)
    y[::3] = 2
    w = rng.uniform(0.2, 2.0, 5)
    calls = [
        lambda: anyloss.cross_entropy(x, y, reduction=reduction, class_weights=w, ignore_index=2,
                                      label_smoothing=0.1, z_loss=1e-3, logit_softcap=4.0),
        lambda: anyloss.cross_entropy(x, y, reduction=reduction, ignore_index=2),
        lambda: anyloss.nll_loss(x - 9.0, y, reduction=reduction, class_weights=w, ignore_index=2),
        lambda: anyloss.binary_cross_entropy(x, rng.random(x.shape) * 0 + 0.25, reduction=reduction,
                                             pos_weight=w),
    ]
    for call in calls:
        got = call()
        with _native.portable():
            want = call()
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    with pytest.raises(ValueError, match=r"besides ignore_index=-100"):
        anyloss.cross_entropy(x, np.where(y == 2, -100, 7), ignore_index=-100)

"""The numba kernels of the NumPy fast paths against the portable code."""

import numpy as np
import pytest

import anyloss
from anyloss._native import _numba
from anyloss._native import numpy as native_numpy


def _portable(f, *args, **kwargs):
    with anyloss._native.portable():
        return f(*args, **kwargs)


def test_numba_kernels_are_in_use():
    assert native_numpy._nb is _numba


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("eps", [1e-8, 0.0, 1e-3])
def test_numba_cosine_matches_portable(dtype, reduction, eps):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((50, 33)).astype(dtype)
    b = rng.standard_normal((50, 33)).astype(dtype)
    b[0] = a[0]  # parallel
    b[1] = -2 * a[1]  # antiparallel
    a[2] *= 1e-3  # small norms: below eps=1e-3 for some rows
    b[2] *= 1e-3
    got = anyloss.cosine_similarity_loss(a, b, axis=1, eps=eps, reduction=reduction)
    want = _portable(anyloss.cosine_similarity_loss, a, b, axis=1, eps=eps, reduction=reduction)
    assert got.dtype == want.dtype == dtype and got.shape == want.shape
    # exact cosines of the scaled vectors in float64 (independent reference)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    na, nb = np.linalg.norm(a64, axis=1), np.linalg.norm(b64, axis=1)
    ref = np.sum(a64 * b64, axis=1) / np.maximum(na * nb, eps)
    ref = ref if reduction == "none" else (ref.mean() if reduction == "mean" else ref.sum())
    tol = 8 * float(np.finfo(dtype).eps) * (1 if reduction != "sum" else 50)
    np.testing.assert_allclose(got, ref, rtol=0, atol=tol)
    np.testing.assert_allclose(got, want, rtol=0, atol=2 * tol)
    if reduction == "none":
        assert got[0] == pytest.approx(1.0, abs=tol) and got[1] == pytest.approx(-1.0, abs=tol)


def test_numba_cosine_kernel_direct():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((7, 5))
    b = rng.standard_normal((7, 5))
    out = _numba.cosine(a, b, 1e-8)
    ref = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    np.testing.assert_allclose(out, ref, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "special", [0.0, -0.0, np.inf, -np.inf, np.nan, "huge", "tiny", 40.0, -40.0]
)
def test_numba_cosine_special_rows_match_portable(dtype, special):
    rng = np.random.default_rng(5)
    a = rng.standard_normal((6, 8)).astype(dtype)
    b = rng.standard_normal((6, 8)).astype(dtype)
    info = np.finfo(dtype)
    if special == "huge":
        a[3] *= info.max / 8
    elif special == "tiny":
        b[3] *= info.smallest_subnormal * 4
    elif special in (0.0, -0.0):
        a[3] = special  # a zero vector: similarity 0
    else:
        a[3, 2] = special
    got = anyloss.cosine_similarity_loss(a, b, axis=1)
    want = _portable(anyloss.cosine_similarity_loss, a, b, axis=1)
    # where the kernel declines, the NumPy kernels run; either way the portable value
    np.testing.assert_allclose(got, want, rtol=8 * info.eps, atol=8 * info.eps, equal_nan=True)
    if special in (0.0, -0.0):
        assert got[3] == 0
    # rows whose float64 squared norms are zero, not finite, or (float64
    # inputs) out of range make the kernel decline; float32 extremes fit
    declined = _numba.cosine(a, b, 1e-8) is None
    ordinary = (40.0, -40.0) + (("huge", "tiny") if dtype == np.float32 else ())
    assert declined == (special not in ordinary)


def test_numba_cosine_non_contiguous_falls_back():
    rng = np.random.default_rng(6)
    a = rng.standard_normal((8, 6))[:, ::2]
    b = rng.standard_normal((8, 6))[:, ::2]
    got = anyloss.cosine_similarity_loss(a, b, axis=1)
    want = _portable(anyloss.cosine_similarity_loss, a, b, axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=1e-15)

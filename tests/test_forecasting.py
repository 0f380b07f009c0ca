"""poisson_nll_loss, mape_loss and msle_loss: float64 references written from
PyTorch's and Keras's definitions, torch.nn.functional.poisson_nll_loss and
Keras's documented examples as peers, every library, autodiff and
compilers, hard inputs with mpmath references, bad inputs."""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest

import anyloss
from backends import LIBRARIES, to_numpy
from matrix_checks import (
    Spec,
    check_fast_equals_portable,
    check_jax_grad_and_jit,
    check_library,
    check_mlx_grad_and_compile,
    check_torch_compile,
    check_torch_gradcheck,
    first_of_each,
    ids,
    library_params,
    run_everywhere,
)
from test_libraries import assert_close

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

KERAS_EPSILON = 1e-7  # keras.backend.epsilon()


# ------------------------------------------------------------------ float64 references


def ref_poisson_nll_loss(inputs, targets, log_input=True, full=False, eps=1e-8):
    """exp(x) - t x, or x - t log(x + eps); full: + t log t - t + log(2 pi t) / 2 where t > 1."""
    t = targets.astype(np.float64)
    loss = np.exp(inputs) - t * inputs if log_input else inputs - t * np.log(inputs + eps)
    if full:
        safe = np.where(t > 1, t, 1.0)
        loss = loss + np.where(t > 1, safe * np.log(safe) - safe + 0.5 * np.log(2 * np.pi * safe), 0.0)
    return loss


def ref_mape_loss(predictions, targets):
    """Keras: 100 |(t - p) / max(|t|, eps)|."""
    return 100.0 * np.abs((targets - predictions) / np.maximum(np.abs(targets), KERAS_EPSILON))


def ref_msle_loss(predictions, targets):
    """Keras: (log(max(p, eps) + 1) - log(max(t, eps) + 1))^2."""
    first = np.log(np.maximum(predictions, KERAS_EPSILON) + 1.0)
    second = np.log(np.maximum(targets, KERAS_EPSILON) + 1.0)
    return (first - second) ** 2


# ----------------------------------------------------------------------------- specs


def make_poisson(shape, log_input):
    def make(rng):
        log_rate = rng.normal(size=shape)
        counts = rng.poisson(np.exp(log_rate + 0.5)).astype(np.int64)
        return {"inputs": log_rate if log_input else np.exp(log_rate), "targets": counts}

    return make


def make_relative(shape, low, high, gap=0.05):
    """Predictions and targets in [low, high), apart by at least ``gap``
    (the kink at p = t), away from 0 (MAPE's kink of |t|)."""

    def make(rng):
        t = rng.uniform(low, high, size=shape)
        p = rng.uniform(low, high, size=shape)
        p = np.where(np.abs(p - t) < gap, t + 2 * gap, p)
        t = np.where(np.abs(t) < gap, gap + 0.1, t)
        return {"predictions": p, "targets": t}

    return make


SPECS = [
    Spec("poisson-log", "poisson_nll_loss", make_poisson((10,), True), ref_poisson_nll_loss, seed=1),
    Spec("poisson-log-full", "poisson_nll_loss", make_poisson((6, 5), True), ref_poisson_nll_loss,
         {"full": True}, seed=2),
    Spec("poisson-rates-full-eps", "poisson_nll_loss", make_poisson((3, 4, 5), False), ref_poisson_nll_loss,
         {"log_input": False, "full": True, "eps": 0.01}, seed=3),
    Spec("mape-1d", "mape_loss", make_relative((10,), -3.0, 3.0), ref_mape_loss, seed=4),
    Spec("mape-3d", "mape_loss", make_relative((3, 4, 5), 0.5, 100.0), ref_mape_loss, seed=5),
    Spec("msle-1d", "msle_loss", make_relative((10,), 0.0, 5.0), ref_msle_loss, seed=6),
    Spec("msle-2d-negatives", "msle_loss", make_relative((6, 5), -2.0, 50.0), ref_msle_loss, seed=7),
]
FIRSTS = first_of_each(SPECS)


@pytest.mark.parametrize("lib, dtype, spec", library_params(SPECS))
def test_every_library(lib, dtype, spec):
    check_library(spec, lib, dtype)


@pytest.mark.parametrize("spec", SPECS, ids=ids(SPECS))
def test_torch_gradcheck(spec):
    check_torch_gradcheck(spec)


@pytest.mark.parametrize("spec", SPECS, ids=ids(SPECS))
def test_jax_grad_and_jit(spec):
    check_jax_grad_and_jit(spec)


@pytest.mark.parametrize("spec", SPECS, ids=ids(SPECS))
def test_mlx_grad_and_compile(spec):
    check_mlx_grad_and_compile(spec)


@pytest.mark.parametrize("spec", FIRSTS, ids=ids(FIRSTS))
def test_torch_compile(spec):
    check_torch_compile(spec)


_BATCH = {
    "poisson_nll_loss": make_poisson((256,), True),
    "mape_loss": make_relative((256,), -3.0, 3.0),
    "msle_loss": make_relative((256,), 0.0, 5.0),
}


@pytest.mark.parametrize("lib", LIBRARIES)
@pytest.mark.parametrize("spec", FIRSTS, ids=ids(FIRSTS))
def test_fast_path_equals_portable_at_batch_size(lib, spec):
    check_fast_equals_portable(spec, lib, _BATCH[spec.loss](np.random.default_rng(8)))


@pytest.mark.parametrize("spec", FIRSTS, ids=ids(FIRSTS))
def test_numpy_large_array(spec):
    """Above the NumPy fast path's block size (2^17 elements)."""
    make = {"poisson_nll_loss": make_poisson, "mape_loss": make_relative, "msle_loss": make_relative}
    args = {"poisson_nll_loss": (True,), "mape_loss": (-3.0, 3.0), "msle_loss": (0.0, 5.0)}[spec.loss]
    arrays = make[spec.loss]((300_000,), *args)(np.random.default_rng(9))
    for reduction in ("none", "mean", "sum"):
        assert_close(spec.call(arrays, reduction), spec.expected(arrays, reduction), "float64")


# ----------------------------------------------------------------------------- peers


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("log_input, full, eps", [(True, False, 1e-8), (True, True, 1e-8), (False, False, 1e-8),
                                                  (False, True, 0.1)])
def test_poisson_equals_torch(dtype, log_input, full, eps):
    """F.poisson_nll_loss's values and gradients (for both arguments)."""
    import torch
    import torch.nn.functional as F

    arrays = make_poisson((50,), log_input)(np.random.default_rng(30))
    # Counts as floats, apart from 1 (where Stirling's term starts) for the targets' gradient.
    arrays["targets"] = np.where(arrays["targets"] == 1, 1.5, arrays["targets"]).astype(np.float64)
    ours_in = {k: torch.from_numpy(v.astype(dtype)).requires_grad_() for k, v in arrays.items()}
    peer_in = {k: torch.from_numpy(v.astype(dtype)).requires_grad_() for k, v in arrays.items()}
    for reduction in ("none", "mean", "sum"):
        ours = anyloss.poisson_nll_loss(**ours_in, log_input=log_input, full=full, eps=eps, reduction=reduction)
        peer = F.poisson_nll_loss(peer_in["inputs"], peer_in["targets"], log_input=log_input, full=full, eps=eps,
                                  reduction=reduction)
        assert ours.dtype == peer.dtype
        assert_close(to_numpy(ours), to_numpy(peer), dtype)
    weights = torch.from_numpy(np.random.default_rng(31).uniform(0.5, 1.5, 50).astype(dtype))
    (anyloss.poisson_nll_loss(**ours_in, log_input=log_input, full=full, eps=eps) * weights).sum().backward()
    (F.poisson_nll_loss(peer_in["inputs"], peer_in["targets"], log_input=log_input, full=full, eps=eps,
                        reduction="none") * weights).sum().backward()
    for k in arrays:
        ours_grad, peer_grad = to_numpy(ours_in[k].grad), to_numpy(peer_in[k].grad)
        # PyTorch's gradient of t log t at a count of 0 is nan (masked after the log); ours is finite.
        finite = np.isfinite(peer_grad)
        assert np.isfinite(ours_grad).all() and finite.sum() >= 30
        assert_close(ours_grad[finite], peer_grad[finite], dtype)


def test_keras_documented_examples():
    """The numbers of Keras's own examples (sum_over_batch_size: the mean)."""
    t = np.array([[2.0, 1.0], [2.0, 3.0]], dtype=np.float32)
    p = np.array([[1.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    assert float(anyloss.mape_loss(p, t)) == pytest.approx(50.0, rel=1e-6)
    t = np.array([[0.0, 1.0], [0.0, 0.0]], dtype=np.float32)
    p = np.array([[1.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    assert float(anyloss.msle_loss(p, t)) == pytest.approx(0.24022643, rel=1e-6)


# ----------------------------------------------------------------------- hard inputs


def test_poisson_zero_rate_and_zero_count_is_zero():
    """A rate of 0 with a count of 0 has loss 0 (0 log 0 = 0; PyTorch: nan):
    a log-rate of -inf, or a rate of 0 with eps = 0.  Gradients stay finite."""
    import torch

    x, t = np.array([-np.inf, 1.0]), np.array([0.0, 2.0])
    for (lib, path), got in run_everywhere(anyloss.poisson_nll_loss, {"inputs": x, "targets": t},
                                           "float32").items():
        np.testing.assert_allclose(got, [0.0, math.e - 2.0], rtol=1e-6, err_msg=f"{lib} {path}")
    rates = np.array([0.0, 0.0, 2.0])
    counts = np.array([0.0, 3.0, 0.0])
    for (lib, path), got in run_everywhere(anyloss.poisson_nll_loss, {"inputs": rates, "targets": counts},
                                           "float32", log_input=False, eps=0.0).items():
        np.testing.assert_array_equal(got, [0.0, np.inf, 2.0], err_msg=f"{lib} {path}")
    xt = torch.tensor([-np.inf, 1.0], dtype=torch.float64, requires_grad=True)
    anyloss.poisson_nll_loss(xt, torch.tensor([0.0, 2.0], dtype=torch.float64), reduction="sum").backward()
    np.testing.assert_allclose(xt.grad.numpy(), [0.0, math.e - 2.0])


def test_poisson_stirling_term_only_above_one():
    """full=True adds nothing where the count is 0 or 1, Stirling's term above."""
    x = np.zeros(4)
    t = np.array([0.0, 1.0, 2.0, 1e6])
    with mp.workdps(40):
        stirling = [0.0, 0.0] + [float(mp.mpf(v) * mp.log(v) - v + mp.log(2 * mp.pi * v) / 2) for v in (2.0, 1e6)]
    want = np.exp(x) - t * x + np.array(stirling)
    for (lib, path), got in run_everywhere(anyloss.poisson_nll_loss, {"inputs": x, "targets": t}, "float64",
                                           full=True).items():
        np.testing.assert_allclose(got, want, rtol=1e-14, err_msg=f"{lib} {path}")


def test_mape_zero_target():
    """|t| is floored at 1e-7: a zero target gives 1e9 |p| percent, finite."""
    for (lib, path), got in run_everywhere(anyloss.mape_loss, {"predictions": np.array([0.5, -2.0]),
                                                               "targets": np.array([0.0, 0.0])},
                                           "float32", reduction="none").items():
        np.testing.assert_allclose(got, [5e8, 2e9], rtol=1e-6, err_msg=f"{lib} {path}")


def _mp_msle(p, t):
    with mp.workdps(60):
        a, b = max(mp.mpf(float(p)), mp.mpf(KERAS_EPSILON)), max(mp.mpf(float(t)), mp.mpf(KERAS_EPSILON))
        return float((mp.log1p(a) - mp.log1p(b)) ** 2)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_msle_close_values_keep_their_loss(dtype):
    """Close large values: the difference of two log1p's cancels (about 1e-6
    relative error in float32 for 1000 against 1000.06, all of it for float16);
    one log1p of the ratio keeps the loss to a few ulps.  Huge against tiny
    and negative (floored) values are finite.  PyTorch's fast path gives way
    to that difference (the differences page): its square root, the
    difference of the logs, is right to two ulps of the logs."""
    eps = float(np.finfo(dtype).eps)
    p = np.array([1000.0, 1000.0, 3e38 if dtype != "float16" else 6e4, -5.0, 1e-9]).astype(dtype)
    t = np.array([1000.0 * (1 + 64 * eps), 1000.0 * (1 - 32 * eps), 1e-7, 2.0, 0.0]).astype(dtype)
    want = np.array([_mp_msle(a, b) for a, b in zip(p, t)])
    logs = np.log1p(np.maximum(np.maximum(p, t).astype(np.float64), KERAS_EPSILON))
    for (lib, path), got in run_everywhere(anyloss.msle_loss, {"predictions": p.astype(np.float64),
                                                               "targets": t.astype(np.float64)},
                                           dtype, reduction="none").items():
        what = f"{lib} {path} {dtype}"
        if (lib, path) == ("torch", "fast"):
            error = np.abs(np.sqrt(got) - np.sqrt(want))
            np.testing.assert_array_less(error, 2 * eps * logs + 1e-300, err_msg=what)
            continue
        ulps = 32 if lib == "mlx" else 8
        np.testing.assert_allclose(got, want, rtol=ulps * eps, atol=0, err_msg=what)


# ----------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "func, kwargs, error, words",
    [
        ("poisson_nll_loss", dict(inputs=np.zeros(3), targets=np.array([1.0, -2.0, 0.0])), ValueError,
         ["targets", "counts", "-2"]),
        ("poisson_nll_loss", dict(inputs=np.array([-0.5, 1.0, 0.0]), targets=np.ones(3), log_input=False),
         ValueError, ["inputs", "rates", "-0.5", "log_input=True"]),
        ("poisson_nll_loss", dict(inputs=np.zeros(3), targets=np.ones(3), eps=-1.0), ValueError, ["eps"]),
        ("poisson_nll_loss", dict(inputs=np.zeros(3), targets=np.ones((3, 1))), ValueError,
         ["targets", "(3, 1)", "(3,)", "no broadcasting"]),
        ("poisson_nll_loss", dict(inputs=np.zeros(3), targets=np.ones(3), reduction=None), ValueError, ["None"]),
        ("mape_loss", dict(predictions=np.zeros(3), targets=np.ones(4)), ValueError, ["(4,)", "(3,)"]),
        ("mape_loss", dict(predictions=[1.0], targets=np.ones(1)), TypeError, ["predictions", "list"]),
        ("msle_loss", dict(predictions=np.zeros(3), targets=np.ones(3), reduction="avg"), ValueError, ["'avg'"]),
        ("msle_loss", dict(predictions=np.zeros(3, dtype=complex), targets=np.ones(3)), TypeError, ["complex"]),
    ],
)
def test_bad_inputs(func, kwargs, error, words):
    with pytest.raises(error) as info:
        getattr(anyloss, func)(**kwargs)
    message = str(info.value)
    assert func in message
    for w in words:
        assert w in message, message


def test_inputs_are_not_changed():
    for spec in FIRSTS:
        arrays = spec.arrays()
        copies = {k: v.copy() for k, v in arrays.items()}
        spec.call(arrays, "mean")
        for k in arrays:
            np.testing.assert_array_equal(arrays[k], copies[k])

"""js_div_loss: a float64 reference written from the definition, the usual
hand-written PyTorch expression (two kl_div against the log-mixture) as the
peer for values and gradients, every library, autodiff and compilers, hard
inputs with mpmath references, bad inputs."""

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
    ids,
    library_params,
    run_everywhere,
)
from test_libraries import assert_close

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
LOG2 = math.log(2.0)


# ------------------------------------------------------------------ float64 references


def ref_js_div_loss(inputs, targets, axis=-1):
    """(KL(P || M) + KL(Q || M)) / 2 with M = (P + Q) / 2, 0 log 0 = 0."""
    p, q = np.exp(inputs), np.exp(targets)
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log(p / m), 0.0)
        kl_q = np.where(q > 0, q * np.log(q / m), 0.0)
    return 0.5 * np.sum(kl_p + kl_q, axis=axis)


def mp_js(x, t):
    """One distribution pair (1-d), with 60 digits, from the exact input values."""
    with mp.workdps(60):
        total = mp.mpf(0)
        for a, b in zip(x, t):
            p = mp.exp(mp.mpf(float(a))) if a != -np.inf else mp.mpf(0)
            q = mp.exp(mp.mpf(float(b))) if b != -np.inf else mp.mpf(0)
            m = (p + q) / 2
            total += (p * mp.log(p / m) if p else 0) + (q * mp.log(q / m) if q else 0)
        return float(total / 2)


# ----------------------------------------------------------------------------- specs


def _log_softmax(z, axis):
    z = z - np.max(z, axis=axis, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


def make_js(shape, axis, sharpness=1.0):
    def make(rng):
        # mixed with the uniform distribution: no log-probability within 1e-3 of 0
        # (gradcheck steps past 0 would look like probabilities)
        peaked = np.exp(_log_softmax(sharpness * rng.normal(size=shape), axis))
        return {"inputs": np.log(0.99 * peaked + 0.01 / shape[axis]),
                "targets": _log_softmax(rng.normal(size=shape), axis)}

    return make


SPECS = [
    Spec("js-2d", "js_div_loss", make_js((6, 5), -1), ref_js_div_loss, seed=1),
    Spec("js-3d-axis1", "js_div_loss", make_js((3, 4, 5), 1), ref_js_div_loss, {"axis": 1}, seed=2),
    Spec("js-peaked", "js_div_loss", make_js((4, 8), -1, sharpness=6.0), ref_js_div_loss, seed=3),
]


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


def test_torch_compile():
    check_torch_compile(SPECS[0])


@pytest.mark.parametrize("lib", LIBRARIES)
def test_fast_path_equals_portable_at_batch_size(lib):
    """64 x 10 distributions (a batch of class probabilities)."""
    check_fast_equals_portable(SPECS[0], lib, make_js((64, 10), -1)(np.random.default_rng(7)))


def test_numpy_large_array():
    arrays = make_js((4096, 64), -1)(np.random.default_rng(8))
    for reduction in ("none", "mean"):
        assert_close(anyloss.js_div_loss(**arrays, reduction=reduction), SPECS[0].expected(arrays, reduction),
                     "float64")


# ----------------------------------------------------------------------------- peers


def _torch_js(x, t):
    """The usual hand-written Jensen-Shannon divergence: two kl_div against log m."""
    import torch
    import torch.nn.functional as F

    log_m = torch.logaddexp(x, t) - LOG2
    kl_p = F.kl_div(log_m, x, reduction="none", log_target=True).sum(-1)
    kl_q = F.kl_div(log_m, t, reduction="none", log_target=True).sum(-1)
    return 0.5 * (kl_p + kl_q)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_equals_the_torch_expression_values_and_gradients(dtype):
    import torch

    arrays = make_js((32, 12), -1, sharpness=2.0)(np.random.default_rng(30))
    ours_in = {k: torch.from_numpy(v.astype(dtype)).requires_grad_() for k, v in arrays.items()}
    peer_in = {k: torch.from_numpy(v.astype(dtype)).requires_grad_() for k, v in arrays.items()}
    ours = anyloss.js_div_loss(**ours_in)
    peer = _torch_js(peer_in["inputs"], peer_in["targets"])
    assert_close(to_numpy(ours), to_numpy(peer), dtype)
    weights = torch.from_numpy(np.random.default_rng(31).uniform(0.5, 1.5, 32).astype(dtype))
    (ours * weights).sum().backward()
    (peer * weights).sum().backward()
    for k in arrays:
        assert_close(to_numpy(ours_in[k].grad), to_numpy(peer_in[k].grad), dtype)


# ----------------------------------------------------------------------- hard inputs


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_equal_inputs_give_exactly_zero(dtype):
    arrays = make_js((5, 7), -1, sharpness=3.0)(np.random.default_rng(40))
    x = arrays["inputs"]
    x[0, 2] = -np.inf  # a class absent from both
    for (lib, path), got in run_everywhere(anyloss.js_div_loss, {"inputs": x, "targets": x.copy()},
                                           dtype).items():
        np.testing.assert_array_equal(got, 0.0, err_msg=f"{lib} {path}")


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_disjoint_supports_give_log_2(dtype):
    x = np.log(np.array([[0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]))
    t = np.log(np.array([[0.0, 0.0, 0.25, 0.75], [0.0, 0.0, 0.0, 1.0]]))
    for (lib, path), got in run_everywhere(anyloss.js_div_loss, {"inputs": x, "targets": t}, dtype).items():
        np.testing.assert_allclose(got, LOG2, rtol=4 * np.finfo(dtype).eps, err_msg=f"{lib} {path}")


def test_zero_probability_classes_give_finite_values_and_gradients():
    """A class absent from one distribution (-inf) or from both: the value
    is the exact divergence, and torch and jax gradients are finite."""
    import jax
    import torch

    x = np.log(np.array([[0.5, 0.5, 0.0], [0.2, 0.8, 0.0], [1.0, 0.0, 0.0]]))
    t = np.log(np.array([[0.25, 0.25, 0.5], [0.6, 0.4, 0.0], [0.5, 0.5, 0.0]]))
    want = [mp_js(a, b) for a, b in zip(x, t)]
    for (lib, path), got in run_everywhere(anyloss.js_div_loss, {"inputs": x, "targets": t}, "float64").items():
        np.testing.assert_allclose(got, want, rtol=1e-14, err_msg=f"{lib} {path}")
    xt, tt = torch.from_numpy(x.copy()).requires_grad_(), torch.from_numpy(t.copy()).requires_grad_()
    anyloss.js_div_loss(xt, tt, reduction="sum").backward()
    assert torch.isfinite(xt.grad).all() and torch.isfinite(tt.grad).all()
    grads = jax.grad(lambda a, b: anyloss.js_div_loss(a, b, reduction="sum"), argnums=(0, 1))(x, t)
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)
    for g, tg in zip(grads, (xt.grad, tt.grad)):
        np.testing.assert_allclose(np.asarray(g), tg.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("gap", [1e-3, 1e-1, 3.0, 30.0])
def test_close_and_far_distributions_to_a_few_ulps(dtype, gap):
    """Distributions apart by ``gap`` in log space: the divergence (about
    gap^2 / 8 for small gaps) to a few ulps, where the log-mixture form loses
    about eps / gap of it (1e-4 relative for gap 1e-3 in float32)."""
    rng = np.random.default_rng(41)
    base = _log_softmax(rng.normal(size=(3, 6)), -1)
    other = _log_softmax(base + gap * rng.normal(size=(3, 6)), -1)
    x, t = base.astype(dtype).astype(np.float64), other.astype(dtype).astype(np.float64)
    want = np.array([mp_js(a, b) for a, b in zip(x, t)])
    eps = float(np.finfo(dtype).eps)
    for (lib, path), got in run_everywhere(anyloss.js_div_loss, {"inputs": x, "targets": t}, dtype).items():
        ulps = 64 if lib == "mlx" else 16
        np.testing.assert_allclose(got, want, rtol=ulps * eps, err_msg=f"{lib} {path}")


def test_bounded_by_log_2():
    arrays = make_js((200, 16), -1, sharpness=30.0)(np.random.default_rng(42))
    got = anyloss.js_div_loss(**{k: v.astype(np.float32) for k, v in arrays.items()})
    assert np.all(got >= 0) and np.all(got <= np.float32(LOG2))


# ----------------------------------------------------------------------- bad inputs

_LP = np.log(np.full((4, 3), 1 / 3))


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(inputs=np.full((4, 3), 1 / 3), targets=_LP), ValueError,
         ["inputs", "log-probabilities", "0.333", "log(probabilities)"]),
        (dict(inputs=_LP, targets=np.full((4, 3), 1 / 3)), ValueError, ["targets", "log-probabilities"]),
        (dict(inputs=_LP, targets=_LP[:, :2]), ValueError, ["(4, 2)", "(4, 3)"]),
        (dict(inputs=_LP, targets=_LP, axis=2), ValueError, ["axis=2"]),
        (dict(inputs=_LP, targets=_LP, axis=1.0), TypeError, ["axis", "float"]),
        (dict(inputs=_LP, targets=_LP, reduction="batchmean"), ValueError, ["'batchmean'"]),
    ],
)
def test_bad_inputs(kwargs, error, words):
    with pytest.raises(error) as info:
        anyloss.js_div_loss(**kwargs)
    message = str(info.value)
    assert "js_div_loss" in message
    for w in words:
        assert w in message, message


def test_inputs_are_not_changed():
    arrays = SPECS[0].arrays()
    copies = {k: v.copy() for k, v in arrays.items()}
    anyloss.js_div_loss(**arrays)
    for k in arrays:
        np.testing.assert_array_equal(arrays[k], copies[k])

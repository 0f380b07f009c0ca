"""l1_loss, mse_loss, smooth_l1_loss, huber_loss, log_cosh_loss and
gaussian_nll_loss: random calls against tests/reference.py and mlx.nn.losses,
and the errors MLX raises."""

from __future__ import annotations

import inspect

import mlx.nn.losses as mlx_losses
import numpy as np
import pytest

import reference
from checks import assert_invalid_reduction, assert_shape_mismatch

import anyloss

LIBS = ("numpy", "array_api_strict")
LOSSES = ("l1_loss", "mse_loss", "smooth_l1_loss", "huber_loss", "log_cosh_loss", "gaussian_nll_loss")


def _pair(r, lib, dtype, scales=(0.1, 1.0, 3.0)):
    """Predictions and targets of one random shape (0-d included)."""
    shape = r.shape(0, 4)
    # float16 keeps to scales whose sums stay far below its largest value (65504).
    scale = r.pick(scales[:2] if dtype == np.float16 else scales)
    x = r.normal(shape, dtype, scale)
    y = r.normal(shape, r.other_float(dtype, lib), scale)
    if r.maybe(0.2):  # some predictions exactly on target
        hit = r.g.random(shape) < 0.3
        x = np.where(hit, y.astype(x.dtype), x)
    return shape, x, y


def _spread(x, y) -> np.ndarray:
    """|x| + |y| per element: the size of the rounding error of x - y, in eps."""
    return np.abs(x.astype(np.float64)) + np.abs(y.astype(np.float64))


def _l1_loss_case(r, lib, dtype):
    _, x, y = _pair(r, lib, dtype)
    kwargs = {"predictions": x, "targets": y}
    r.reduction(kwargs)
    return kwargs, float(np.max(_spread(x, y), initial=0.0)) + 1


def _mse_loss_case(r, lib, dtype):
    _, x, y = _pair(r, lib, dtype)
    kwargs = {"predictions": x, "targets": y}
    r.reduction(kwargs)
    return kwargs, 3 * float(np.max(_spread(x, y), initial=0.0)) ** 2 + 1


def _smooth_l1_loss_case(r, lib, dtype):
    _, x, y = _pair(r, lib, dtype)
    beta = r.pick((1.0, 1.0, 0.0, 0.05, 0.5, 2.5))
    kwargs = {"predictions": x, "targets": y}
    r.param(kwargs, "beta", beta, 1.0)
    r.reduction(kwargs)
    return kwargs, float(np.max(_spread(x, y), initial=0.0)) + beta + 1


def _huber_loss_case(r, lib, dtype):
    _, x, y = _pair(r, lib, dtype)
    delta = r.pick((1.0, 1.0, 0.05, 0.5, 2.5))
    kwargs = {"inputs": x, "targets": y}
    r.param(kwargs, "delta", delta, 1.0)
    r.reduction(kwargs)
    return kwargs, (float(np.max(_spread(x, y), initial=0.0)) + 1) * (delta + 1)


def _log_cosh_loss_case(r, lib, dtype):
    _, x, y = _pair(r, lib, dtype, scales=(0.01, 1.0, 8.0))
    kwargs = {"inputs": x, "targets": y}
    r.reduction(kwargs)
    return kwargs, float(np.max(_spread(x, y), initial=0.0)) + 1


def _gaussian_nll_loss_case(r, lib, dtype):
    shape, x, y = _pair(r, lib, dtype, scales=(0.3, 1.0, 3.0))
    half = dtype == np.float16
    # float16 results must stay finite: there the floor is at least 0.1.
    eps = r.pick((0.1, 0.5) if half else (1e-6, 1e-6, 1e-3, 0.5))
    v = np.exp(r.g.uniform(-1.5, 1.5, size=shape))
    if r.maybe(0.5):  # some variances below the floor, exact zeros included
        low = r.g.random(shape) < 0.3
        v = np.where(low, r.g.choice([0.0, 0.5 * eps, 0.99 * eps], size=shape), v)
    vars_ = np.asarray(v).astype(r.other_float(dtype, lib))
    kwargs = {"inputs": x, "targets": y, "vars": vars_}
    r.param(kwargs, "full", r.maybe(), False)
    r.param(kwargs, "eps", eps, 1e-6)
    r.reduction(kwargs)
    # x - y of exactly representable inputs is rounded once: the error of each
    # element is relative to its own terms.
    vv = np.maximum(vars_.astype(np.float64), eps)
    diff = x.astype(np.float64) - y.astype(np.float64)
    return kwargs, np.abs(np.log(vv)) + 3 * diff**2 / vv + 2


CASES = {
    "l1_loss": _l1_loss_case,
    "mse_loss": _mse_loss_case,
    "smooth_l1_loss": _smooth_l1_loss_case,
    "huber_loss": _huber_loss_case,
    "log_cosh_loss": _log_cosh_loss_case,
    "gaussian_nll_loss": _gaussian_nll_loss_case,
}


@pytest.mark.parametrize("name", LOSSES)
def test_random_calls_match_reference_and_mlx(name, random_calls):
    random_calls(name, CASES[name])


def test_every_parameter_is_drawn(rand):
    """The random cases above reach each parameter value they are meant to cover."""
    seen = set()
    for _ in range(300):
        kwargs, _ = _smooth_l1_loss_case(rand, "numpy", np.dtype("float64"))
        seen.add(("beta", kwargs.get("beta", 1.0)))
        seen.add(("0-d", kwargs["predictions"].ndim == 0))
        kwargs, _ = _gaussian_nll_loss_case(rand, "numpy", np.dtype("float64"))
        seen.add(("full", kwargs.get("full", False)))
        seen.add(("below floor", bool(np.any(kwargs["vars"] < kwargs.get("eps", 1e-6)))))
        seen.add(("reduction", kwargs.get("reduction")))
    assert ("beta", 0.0) in seen and ("beta", 1.0) in seen
    for key in ("0-d", "full", "below floor"):
        assert (key, True) in seen and (key, False) in seen, key
    assert {("reduction", x) for x in ("none", "mean", "sum", None)} <= seen


@pytest.mark.parametrize("name", LOSSES)
def test_signature_matches_mlx(name):
    def params(f):
        return [(p.name, p.default) for p in inspect.signature(f).parameters.values()]

    expected = params(getattr(mlx_losses, name))
    assert params(getattr(anyloss, name)) == expected
    assert params(getattr(reference, name)) == expected


# ---------------------------------------------------------------------- errors


def _f(*shape):
    return np.ones(shape, dtype=np.float32)


# (loss, arguments with mismatched shapes, shapes the message must show, whether MLX raises too)
SHAPE_MISMATCHES = [
    ("l1_loss", dict(predictions=_f(3, 4), targets=_f(4)), [(3, 4), (4,)], True),
    ("l1_loss", dict(predictions=_f(2), targets=_f(3)), [(2,), (3,)], True),
    ("mse_loss", dict(predictions=_f(3, 4), targets=_f(3, 1)), [(3, 4), (3, 1)], True),
    ("smooth_l1_loss", dict(predictions=_f(5), targets=_f(1, 5)), [(5,), (1, 5)], True),
    ("huber_loss", dict(inputs=_f(3, 4), targets=_f(4)), [(3, 4), (4,)], False),
    ("log_cosh_loss", dict(inputs=_f(3, 4), targets=_f()), [(3, 4), ()], False),
    ("gaussian_nll_loss", dict(inputs=_f(3, 4), targets=_f(4), vars=_f(3, 4)), [(3, 4), (4,)], True),
    ("gaussian_nll_loss", dict(inputs=_f(3, 4), targets=_f(3, 4), vars=_f(3)), [(3, 4), (3,)], True),
]


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize(
    "name, kwargs, shapes, mlx_raises",
    SHAPE_MISMATCHES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(SHAPE_MISMATCHES)],
)
def test_shape_mismatch_is_a_value_error_showing_the_shapes(lib, name, kwargs, shapes, mlx_raises):
    assert_shape_mismatch(lib, name, kwargs, shapes, mlx_raises)


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("reduction", ["avg", "Mean", "", None])
def test_invalid_reduction_is_a_value_error(lib, name, reduction):
    n_arrays = 3 if name == "gaussian_nll_loss" else 2
    assert_invalid_reduction(lib, name, [np.full((2, 3), 0.5, dtype=np.float32)] * n_arrays, reduction)

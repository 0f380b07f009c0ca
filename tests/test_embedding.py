"""cosine_similarity_loss, triplet_loss and margin_ranking_loss: random calls
against tests/reference.py and mlx.nn.losses, MLX's documented example, and the
errors MLX raises."""

from __future__ import annotations

import inspect

import mlx.nn.losses as mlx_losses
import numpy as np
import pytest

import reference
from backends import to_lib, to_numpy
from checks import assert_invalid_reduction, assert_shape_mismatch

import anyloss

LIBS = ("numpy", "array_api_strict")
LOSSES = ("cosine_similarity_loss", "triplet_loss", "margin_ranking_loss")


def _absmax(a) -> float:
    return float(np.max(np.abs(a.astype(np.float64)), initial=0.0))


def _cosine_similarity_loss_case(r, lib, dtype):
    shape = r.shape(1, 4)
    if len(shape) >= 2 and r.maybe(0.3):
        axis = 1  # the default
    else:
        axis = r.axis(len(shape))
    x1 = r.normal(shape, dtype)
    x2 = r.normal(shape, r.other_float(dtype, lib), r.pick((0.5, 1.0, 4.0)))
    if r.maybe(0.3):  # short vectors, whose norm product falls below a larger eps
        x1 = (x1.astype(np.float64) * 0.02).astype(x1.dtype)
    if r.maybe(0.15):  # some vectors parallel or opposite
        x2 = (x1.astype(np.float64) * r.pick((2.0, -0.5))).astype(x2.dtype)
    eps = r.pick((1e-8, 1e-8, 1e-3, 0.05, 0.5))
    kwargs = {"x1": x1, "x2": x2}
    r.param(kwargs, "axis", axis, 1)
    r.param(kwargs, "eps", eps, 1e-8)
    r.reduction(kwargs)
    return kwargs, shape[axis] + 2


def _triplet_loss_case(r, lib, dtype):
    shape = r.shape(1, 4)
    axis = r.axis(len(shape))
    scale = r.pick((0.3, 1.0, 3.0))
    a = r.normal(shape, dtype, scale)
    pos = r.normal(shape, r.other_float(dtype, lib), scale)
    neg = r.normal(shape, r.other_float(dtype, lib), scale)
    if r.maybe(0.2):  # positives near their anchors: a loss of about 0 or margin
        pos = (a.astype(np.float64) + r.g.normal(scale=0.01 * scale, size=shape)).astype(pos.dtype)
    kwargs = {"anchors": a, "positives": pos, "negatives": neg}
    r.param(kwargs, "axis", axis, -1)
    r.param(kwargs, "p", r.pick((1, 2, 2, 3)), 2)
    margin = r.pick((1.0, 1.0, 0.0, 0.5, 2.0))
    r.param(kwargs, "margin", margin, 1.0)
    r.param(kwargs, "eps", r.pick((1e-6, 1e-6, 0.0, 1e-3)), 1e-6)
    r.reduction(kwargs)
    classes = shape[axis]
    return kwargs, (classes + 1) * (_absmax(a) + _absmax(pos) + _absmax(neg) + 1) + margin


def _margin_ranking_loss_case(r, lib, dtype):
    shape = r.shape(0, 4)
    scale = r.pick((0.3, 1.0, 4.0))
    x1 = r.normal(shape, dtype, scale)
    x2 = r.normal(shape, r.other_float(dtype, lib), scale)
    kind = r.pick(("int8", "int32", "int64", "float"))
    y = r.signs(shape, r.other_float(dtype, lib) if kind == "float" else kind)
    margin = r.pick((0.0, 0.0, 0.5, 1.0, -0.25))
    kwargs = {"inputs1": x1, "inputs2": x2, "targets": y}
    r.param(kwargs, "margin", margin, 0.0)
    r.reduction(kwargs)
    return kwargs, _absmax(x1) + _absmax(x2) + abs(margin) + 1


CASES = {
    "cosine_similarity_loss": _cosine_similarity_loss_case,
    "triplet_loss": _triplet_loss_case,
    "margin_ranking_loss": _margin_ranking_loss_case,
}


@pytest.mark.parametrize("name", LOSSES)
def test_random_calls_match_reference_and_mlx(name, random_calls):
    random_calls(name, CASES[name])


def test_every_parameter_is_drawn(rand):
    """The random cases above reach each parameter value they are meant to cover."""
    seen = set()
    for _ in range(300):
        kwargs, _ = _triplet_loss_case(rand, "numpy", np.dtype("float64"))
        seen.add(("p", kwargs.get("p", 2)))
        seen.add(("eps", kwargs.get("eps", 1e-6)))
        seen.add(("axis", kwargs.get("axis", -1) >= 0))
        kwargs, _ = _cosine_similarity_loss_case(rand, "numpy", np.dtype("float64"))
        x1, x2 = kwargs["x1"], kwargs["x2"]
        ax = kwargs.get("axis", 1)
        norms = np.linalg.norm(x1, axis=ax) * np.linalg.norm(x2, axis=ax)
        seen.add(("below eps", bool(np.any(norms < kwargs.get("eps", 1e-8)))))
        seen.add(("default axis", "axis" not in kwargs))
        kwargs, _ = _margin_ranking_loss_case(rand, "numpy", np.dtype("float64"))
        seen.add(("margin", kwargs.get("margin", 0.0) != 0))
    assert {("p", 1), ("p", 2), ("p", 3), ("eps", 0.0), ("eps", 1e-6)} <= seen
    for key in ("axis", "below eps", "default axis", "margin"):
        assert (key, True) in seen and (key, False) in seen, key


@pytest.mark.parametrize("name", LOSSES)
def test_signature_matches_mlx(name):
    def params(f):
        return [(p.name, p.default) for p in inspect.signature(f).parameters.values()]

    expected = params(getattr(mlx_losses, name))
    assert params(getattr(anyloss, name)) == expected
    assert params(getattr(reference, name)) == expected


# -------------------------------------------------------- MLX's documented example


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mlx_doc_example(lib, dtype):
    targets = to_lib(lib, np.array([1, 1, -1], dtype=np.int32))
    inputs1 = to_lib(lib, np.array([-0.573409, -0.765166, -0.0638], dtype=dtype))
    inputs2 = to_lib(lib, np.array([0.75596, 0.225763, 0.256995], dtype=dtype))
    out = anyloss.margin_ranking_loss(inputs1, inputs2, targets)
    assert out.shape == (3,)
    np.testing.assert_allclose(to_numpy(out), [1.32937, 0.990929, 0.0], rtol=2e-6, atol=0)


# ---------------------------------------------------------------------- errors


def _f(*shape):
    return np.ones(shape, dtype=np.float32)


# (loss, arguments with mismatched shapes, shapes the message must show, whether MLX raises too)
SHAPE_MISMATCHES = [
    ("cosine_similarity_loss", dict(x1=_f(3, 4), x2=_f(1, 4)), [(3, 4), (1, 4)], False),
    ("triplet_loss", dict(anchors=_f(3, 4), positives=_f(4), negatives=_f(3, 4)), [(3, 4), (4,)], False),
    ("triplet_loss", dict(anchors=_f(3, 4), positives=_f(3, 4), negatives=_f(3, 1)), [(3, 4), (3, 1)], False),
    ("margin_ranking_loss", dict(inputs1=_f(3), inputs2=_f(4), targets=_f(3)), [(3,), (4,)], True),
    ("margin_ranking_loss", dict(inputs1=_f(3), inputs2=_f(3), targets=_f(1)), [(3,), (1,)], True),
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
    n_arrays = 2 if name == "cosine_similarity_loss" else 3
    assert_invalid_reduction(lib, name, [np.full((2, 3), 0.5, dtype=np.float32)] * n_arrays, reduction)

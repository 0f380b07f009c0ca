"""cross_entropy, binary_cross_entropy, nll_loss, kl_div_loss and hinge_loss:
random calls against tests/reference.py and mlx.nn.losses, MLX's documented
examples, and the errors MLX raises."""

from __future__ import annotations

import inspect

import mlx.core as mx
import mlx.nn.losses as mlx_losses
import numpy as np
import pytest

import reference
from backends import to_lib, to_numpy
from checks import assert_invalid_reduction, assert_shape_mismatch

import anyloss

LIBS = ("numpy", "array_api_strict")
INDEX_DTYPES = ("int32", "int64", "int16", "uint8")
LOSSES = ("cross_entropy", "binary_cross_entropy", "nll_loss", "kl_div_loss", "hinge_loss")


def _drop(shape, axis):
    return shape[:axis] + shape[axis + 1 :]


def _absmax(a) -> float:
    return float(np.max(np.abs(a.astype(np.float64)), initial=0.0))


# ------------------------------------------------------------------ random cases


def _cross_entropy_case(r, lib, dtype):
    shape = r.shape(1, 4)
    axis = r.axis(len(shape))
    ax = axis % len(shape)
    classes = shape[ax]
    logits = r.normal(shape, dtype, r.pick((0.5, 2.0, 6.0)))
    if r.maybe():
        targets = r.integers(0, classes, _drop(shape, ax), r.pick(INDEX_DTYPES))
    else:
        kind = r.pick(("soft", "sharp", "onehot", "sparse"))
        if kind == "onehot":
            picked = r.g.integers(0, classes, size=_drop(shape, ax))
            p = np.moveaxis(np.eye(classes)[picked], -1, ax)
        else:
            p = r.g.random(shape) ** (8 if kind == "sharp" else 1)
            if kind == "sparse":  # some exact zeros, at least one nonzero entry per row
                p = p * (r.g.random(shape) < 0.5)
                p = p + (p.sum(axis=ax, keepdims=True) == 0)
        targets = (p / p.sum(axis=ax, keepdims=True)).astype(r.other_float(dtype, lib))
    kwargs = {"logits": logits, "targets": targets}
    wmax = 1.0
    if r.maybe(0.4):
        kwargs["weights"] = r.uniform(_drop(shape, ax), r.other_float(dtype, lib), 0.0, 2.0)
        wmax = max(1.0, _absmax(kwargs["weights"]))
    r.param(kwargs, "axis", axis, -1)
    r.param(kwargs, "label_smoothing", r.pick((0.0, 0.0, 0.1, 0.5, 0.95)), 0.0)
    r.reduction(kwargs)
    return kwargs, (classes + 2) * (2 * _absmax(logits) + 1) * wmax


def _binary_cross_entropy_case(r, lib, dtype):
    shape = r.shape(0, 4)
    with_logits = r.maybe(0.6)
    if with_logits:
        inputs = r.normal(shape, dtype, r.pick((0.5, 3.0, 10.0)))
    else:
        p = r.g.random(shape)
        edge = r.g.random(shape) < 0.2  # exact 0 and 1 and values next to them
        p = np.where(edge, r.g.choice([0.0, 1.0, 1e-6, 1 - 1e-6, 1e-3, 0.999], size=shape), p)
        inputs = np.asarray(p).astype(dtype)
    kind = r.pick(("labels", "float labels", "probabilities"))
    if kind == "labels":
        targets = r.integers(0, 2, shape, r.pick(("int32", "int64")))
    elif kind == "float labels":
        targets = r.integers(0, 2, shape, r.other_float(dtype, lib))
    else:
        targets = r.uniform(shape, r.other_float(dtype, lib))
    kwargs = {"inputs": inputs, "targets": targets}
    wmax = 1.0
    if r.maybe(0.4):
        kwargs["weights"] = r.uniform(shape, r.other_float(dtype, lib), 0.0, 2.0)
        wmax = max(1.0, _absmax(kwargs["weights"]))
    r.param(kwargs, "with_logits", with_logits, True)
    r.reduction(kwargs)
    if with_logits:
        mag = _absmax(inputs) + 1
    else:
        x = inputs.astype(np.float64)
        with np.errstate(divide="ignore"):
            logs = np.maximum(np.log(x), -100) ** 2 + np.maximum(np.log1p(-x), -100) ** 2
        mag = float(np.sqrt(np.max(logs, initial=0.0))) * 2 + 1
    return kwargs, mag * wmax


def _nll_loss_case(r, lib, dtype):
    shape = r.shape(1, 4)
    axis = r.axis(len(shape))
    ax = axis % len(shape)
    inputs = r.log_probs(shape, ax, dtype, r.pick((0.5, 2.0, 5.0)))
    targets = r.integers(0, shape[ax], _drop(shape, ax), r.pick(INDEX_DTYPES))
    kwargs = {"inputs": inputs, "targets": targets}
    r.param(kwargs, "axis", axis, -1)
    r.reduction(kwargs)
    return kwargs, _absmax(inputs) + 1


def _kl_div_loss_case(r, lib, dtype):
    shape = r.shape(1, 4)
    axis = r.axis(len(shape))
    ax = axis % len(shape)
    inputs = r.log_probs(shape, ax, dtype, r.pick((0.5, 2.0)))
    targets = r.log_probs(shape, ax, r.other_float(dtype, lib), r.pick((0.5, 2.0)))
    kwargs = {"inputs": inputs, "targets": targets}
    r.param(kwargs, "axis", axis, -1)
    r.reduction(kwargs)
    return kwargs, shape[ax] * (_absmax(inputs) + _absmax(targets) + 1)


def _hinge_loss_case(r, lib, dtype):
    shape = r.shape(0, 4)
    inputs = r.normal(shape, dtype, r.pick((0.3, 1.0, 4.0)))
    targets_dtype = r.pick(("int8", "int32", "int64", "float"))
    targets = r.signs(shape, r.other_float(dtype, lib) if targets_dtype == "float" else targets_dtype)
    kwargs = {"inputs": inputs, "targets": targets}
    r.reduction(kwargs)
    return kwargs, _absmax(inputs) + 1


CASES = {
    "cross_entropy": _cross_entropy_case,
    "binary_cross_entropy": _binary_cross_entropy_case,
    "nll_loss": _nll_loss_case,
    "kl_div_loss": _kl_div_loss_case,
    "hinge_loss": _hinge_loss_case,
}


@pytest.mark.parametrize("name", LOSSES)
def test_random_calls_match_reference_and_mlx(name, random_calls):
    random_calls(name, CASES[name])


def test_every_parameter_is_drawn(rand):
    """The random cases above reach each branch they are meant to cover."""
    seen = set()
    r = rand
    for _ in range(400):
        kwargs, _ = _cross_entropy_case(r, "numpy", np.dtype("float32"))
        seen.add(("ce-probs", kwargs["targets"].ndim == kwargs["logits"].ndim))
        seen.add(("ce-weights", "weights" in kwargs))
        seen.add(("ce-smoothing", kwargs.get("label_smoothing", 0.0) > 0))
        seen.add(("ce-axis-positive", kwargs.get("axis", -1) >= 0))
        seen.add(("ce-axis-not-last", kwargs.get("axis", -1) not in (-1, kwargs["logits"].ndim - 1)))
        seen.add(("ce-reduction", kwargs.get("reduction")))
        kwargs, _ = _binary_cross_entropy_case(r, "numpy", np.dtype("float32"))
        seen.add(("bce-logits", kwargs.get("with_logits", True)))
    for key in ("ce-probs", "ce-weights", "ce-smoothing", "ce-axis-positive", "ce-axis-not-last", "bce-logits"):
        assert (key, True) in seen and (key, False) in seen, key
    assert {("ce-reduction", x) for x in ("none", "mean", "sum", None)} <= seen


# --------------------------------------------------------------- signatures


@pytest.mark.parametrize("name", LOSSES)
def test_signature_matches_mlx(name):
    def params(f):  # MLX's positional signature; additions are keyword-only
        return [(p.name, p.default) for p in inspect.signature(f).parameters.values()
                if p.kind is not inspect.Parameter.KEYWORD_ONLY]

    expected = params(getattr(mlx_losses, name))
    assert params(getattr(anyloss, name)) == expected
    assert params(getattr(reference, name)) == expected


# -------------------------------------------------------- MLX's documented examples


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mlx_doc_examples(lib, dtype):
    def arr(values, dt=dtype):
        return to_lib(lib, np.array(values, dtype=dt))

    logits = arr([[2.0, -1.0], [-1.0, 2.0]])
    out = anyloss.cross_entropy(logits, arr([0, 1], "int32"))
    assert out.shape == (2,)
    np.testing.assert_allclose(to_numpy(out), [0.0485873, 0.0485873], rtol=2e-6)
    out = anyloss.cross_entropy(logits, arr([[0.9, 0.1], [0.1, 0.9]]))
    np.testing.assert_allclose(to_numpy(out), [0.348587, 0.348587], rtol=2e-6)

    targets = arr([0, 0, 1, 1], "int32")
    out = anyloss.binary_cross_entropy(arr([0.105361, 0.223144, 1.20397, 0.916291]), targets, reduction="mean")
    assert out.shape == ()
    np.testing.assert_allclose(to_numpy(out), 0.539245, rtol=2e-6)
    out = anyloss.binary_cross_entropy(arr([0.1, 0.1, 0.4, 0.4]), targets, with_logits=False, reduction="mean")
    np.testing.assert_allclose(to_numpy(out), 0.510826, rtol=2e-6)
    # The same value with the default reduction ('mean').
    out = anyloss.binary_cross_entropy(arr([0.1, 0.1, 0.4, 0.4]), targets, with_logits=False)
    np.testing.assert_allclose(to_numpy(out), 0.510826, rtol=2e-6)


# ---------------------------------------------------------------------- errors


def _f(*shape):
    return np.ones(shape, dtype=np.float32)


def _i(*shape):
    return np.zeros(shape, dtype=np.int32)


# (loss, arguments with mismatched shapes, shapes the message must show, whether MLX raises too)
SHAPE_MISMATCHES = [
    ("cross_entropy", dict(logits=_f(3, 4), targets=_i(4)), [(3, 4), (4,)], True),
    ("cross_entropy", dict(logits=_f(3, 4), targets=_i(3), axis=0), [(3, 4), (3,)], True),
    ("cross_entropy", dict(logits=_f(3, 4), targets=_f(4, 3)), [(3, 4), (4, 3)], True),
    ("cross_entropy", dict(logits=_f(3, 4), targets=_i(3), weights=_f(4)), [(4,), (3,)], True),
    ("binary_cross_entropy", dict(inputs=_f(3, 4), targets=_f(4)), [(3, 4), (4,)], True),
    ("binary_cross_entropy", dict(inputs=_f(3, 4), targets=_f(3, 4), weights=_f(3)), [(3,), (3, 4)], True),
    ("nll_loss", dict(inputs=_f(3, 4), targets=_i(4)), [(3, 4), (4,)], False),
    ("kl_div_loss", dict(inputs=_f(3, 4), targets=_f(4)), [(3, 4), (4,)], False),
    ("hinge_loss", dict(inputs=_f(3, 4), targets=_f(1, 4)), [(3, 4), (1, 4)], False),
]


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize(
    "name, kwargs, shapes, mlx_raises",
    SHAPE_MISMATCHES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(SHAPE_MISMATCHES)],
)
def test_shape_mismatch_is_a_value_error_showing_the_shapes(lib, name, kwargs, shapes, mlx_raises):
    assert_shape_mismatch(lib, name, kwargs, shapes, mlx_raises)


def _valid_args(name, lib):
    return [to_lib(lib, a) for a in _valid_numpy_args(name)]


def _valid_numpy_args(name):
    x = np.full((2, 3), 0.5, dtype=np.float32)
    labels = np.array([0, 2], dtype=np.int32)
    return {
        "cross_entropy": [x, labels],
        "binary_cross_entropy": [x, x],
        "nll_loss": [x, labels],
        "kl_div_loss": [x, x],
        "hinge_loss": [x, x],
    }[name]


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("reduction", ["avg", "Mean", "", None])
def test_invalid_reduction_is_a_value_error(lib, name, reduction):
    assert_invalid_reduction(lib, name, _valid_numpy_args(name), reduction)


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("smoothing", [-0.1, -1e-9, 1.0, 1.5, 10])
def test_label_smoothing_outside_0_1_is_a_value_error(lib, smoothing):
    logits, labels = _valid_args("cross_entropy", lib)
    with pytest.raises(ValueError):
        mlx_losses.cross_entropy(mx.array(to_numpy(logits)), mx.array(to_numpy(labels)), label_smoothing=smoothing)
    with pytest.raises(ValueError) as info:
        anyloss.cross_entropy(logits, labels, label_smoothing=smoothing)
    message = str(info.value)
    assert "label_smoothing" in message and repr(smoothing) in message
    assert "[0, 1)" in message, message


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("smoothing", [0.0, 1e-9, 0.5, 0.999])
def test_label_smoothing_inside_0_1_is_accepted(lib, smoothing):
    logits, labels = _valid_args("cross_entropy", lib)
    out = to_numpy(anyloss.cross_entropy(logits, labels, label_smoothing=smoothing))
    # All logits equal: the loss is log(3) whatever the smoothing.
    np.testing.assert_allclose(out, [np.log(3)] * 2, rtol=1e-6)

"""Mistakes users make, and what anyloss says about them.

Each test is one mistake.  It asserts the error type (``ValueError`` for a bad
value or shape, ``TypeError`` for a bad type or dtype) and words of the
message: the function, the argument, what was given and what was expected.
An ``IndexError``, ``ZeroDivisionError`` or an error from inside an array
library fails these tests, as does a silent result.

Also here: no loss changes its inputs, and the checks that need array values
(class index range, probabilities in [0, 1], negative variances) never run
inside a trace or force a lazy library to compute.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from backends import to_lib

import anyloss

rng = np.random.default_rng(1234)


def raises(error: type[Exception], *words: str):
    """``pytest.raises(error)`` whose message contains every one of ``words``."""
    return pytest.raises(error, match="(?s)" + "".join(f"(?=.*{re.escape(w)})" for w in words))


def f64(*shape):
    return rng.normal(size=shape)


def probs(*shape):
    return rng.uniform(0.05, 0.95, size=shape)


def labels(n, classes=3):
    return rng.integers(0, classes, size=n)


# Valid arguments for every loss, in the order of its signature: (name, builder of kwargs).
def valid_calls(n=4, d=3):
    p = probs(n, d)
    log_p = np.log(p / p.sum(axis=1, keepdims=True))
    return {
        "binary_cross_entropy": dict(inputs=f64(n), targets=rng.integers(0, 2, n).astype(float)),
        "cosine_similarity_loss": dict(x1=f64(n, d), x2=f64(n, d)),
        "cross_entropy": dict(logits=f64(n, d), targets=labels(n, d)),
        "gaussian_nll_loss": dict(inputs=f64(n), targets=f64(n), vars=probs(n)),
        "hinge_loss": dict(inputs=f64(n), targets=np.sign(f64(n))),
        "huber_loss": dict(inputs=f64(n), targets=f64(n)),
        "kl_div_loss": dict(inputs=log_p, targets=log_p[::-1].copy()),
        "l1_loss": dict(predictions=f64(n), targets=f64(n)),
        "log_cosh_loss": dict(inputs=f64(n), targets=f64(n)),
        "margin_ranking_loss": dict(inputs1=f64(n), inputs2=f64(n), targets=np.sign(f64(n))),
        "mse_loss": dict(predictions=f64(n), targets=f64(n)),
        "nll_loss": dict(inputs=log_p, targets=labels(n, d)),
        "smooth_l1_loss": dict(predictions=f64(n), targets=f64(n)),
        "triplet_loss": dict(anchors=f64(n, d), positives=f64(n, d), negatives=f64(n, d)),
    }


ALL_LOSSES = sorted(valid_calls())

# Losses whose arrays are combined element by element (all the same shape).
SAME_SHAPE = {
    "binary_cross_entropy": ("inputs", "targets"),
    "cosine_similarity_loss": ("x1", "x2"),
    "gaussian_nll_loss": ("inputs", "targets", "vars"),
    "hinge_loss": ("inputs", "targets"),
    "huber_loss": ("inputs", "targets"),
    "kl_div_loss": ("inputs", "targets"),
    "l1_loss": ("predictions", "targets"),
    "log_cosh_loss": ("inputs", "targets"),
    "margin_ranking_loss": ("inputs1", "inputs2", "targets"),
    "mse_loss": ("predictions", "targets"),
    "smooth_l1_loss": ("predictions", "targets"),
    "triplet_loss": ("anchors", "positives", "negatives"),
}


def call(name, **overrides):
    kwargs = {**valid_calls()[name], **overrides}
    return getattr(anyloss, name)(**kwargs)


def test_valid_calls_are_valid():
    """The baseline calls the mistakes below are made from all work."""
    for name in ALL_LOSSES:
        assert np.all(np.isfinite(np.asarray(call(name))))


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("name", sorted(SAME_SHAPE))
def test_column_against_row_is_not_broadcast(name):
    """(N, 1) predictions against (N,) targets: MLX broadcasts some of these
    into an (N, N) loss; anyloss refuses."""
    first, second = SAME_SHAPE[name][:2]
    base = valid_calls()[name]
    column = np.asarray(base[first])
    if column.ndim == 1:
        column = column[:, None]
        row = np.asarray(base[second])
    else:  # embeddings: (N, D) against (N, 1, D)
        column = column[:, None, :]
        row = np.asarray(base[second])
    kwargs = {k: (v[:, None] if v.ndim == 1 and k not in (first, second) else v) for k, v in base.items()}
    kwargs[first], kwargs[second] = column, row
    if name == "gaussian_nll_loss":
        kwargs["vars"] = np.abs(kwargs["vars"])
    with raises(ValueError, name, second, str(tuple(row.shape)), str(tuple(column.shape)), "no broadcasting"):
        getattr(anyloss, name)(**kwargs)


def test_gaussian_vars_of_another_shape():
    with raises(ValueError, "gaussian_nll_loss", "vars", "(1,)", "(4,)"):
        call("gaussian_nll_loss", vars=np.ones(1))


def test_triplet_negatives_of_another_shape():
    with raises(ValueError, "triplet_loss", "negatives", "(4, 2)", "(4, 3)"):
        call("triplet_loss", negatives=f64(4, 2))


def test_cross_entropy_labels_as_a_column():
    """Class indices of shape (N, 1) for logits (N, C): neither indices nor probabilities."""
    with raises(ValueError, "cross_entropy", "targets", "(4, 1)", "(4, 3)", "class indices of shape (4,)"):
        call("cross_entropy", targets=labels(4)[:, None])


def test_cross_entropy_labels_of_another_length():
    with raises(ValueError, "cross_entropy", "targets", "(5,)", "(4, 3)"):
        call("cross_entropy", targets=labels(5))


def test_cross_entropy_probabilities_of_another_shape():
    with raises(ValueError, "cross_entropy", "targets", "(4, 2)", "probabilities of shape (4, 3)"):
        call("cross_entropy", targets=probs(4, 2))


def test_nll_loss_labels_of_another_shape():
    with raises(ValueError, "nll_loss", "targets", "(4, 1)", "(4,)"):
        call("nll_loss", targets=labels(4)[:, None])


def test_cross_entropy_weights_per_class_instead_of_per_example():
    with raises(ValueError, "cross_entropy", "weights", "(4, 3)", "(4,)"):
        call("cross_entropy", weights=np.ones((4, 3)))


def test_binary_cross_entropy_weights_of_another_shape():
    with raises(ValueError, "binary_cross_entropy", "weights", "(4, 1)", "(4,)"):
        call("binary_cross_entropy", weights=np.ones((4, 1)))


def test_zero_dimensional_logits():
    with raises(ValueError, "cross_entropy", "logits", "0-d"):
        anyloss.cross_entropy(np.array(2.0), np.array(0))


def test_zero_dimensional_log_probabilities():
    with raises(ValueError, "nll_loss", "0-d"):
        anyloss.nll_loss(np.array(-0.5), np.array(0))


def test_cosine_of_one_dimensional_vectors_with_the_default_axis():
    """The default axis is 1; a single pair of vectors has only axis 0."""
    with raises(ValueError, "cosine_similarity_loss", "axis=1", "1 dimension", "-1 <= axis < 1"):
        anyloss.cosine_similarity_loss(f64(3), f64(3))


# ------------------------------------------------------------------------ reduction


@pytest.mark.parametrize("name", ALL_LOSSES)
@pytest.mark.parametrize("reduction", ["avg", "Mean", None, 1])
def test_invalid_reduction(name, reduction):
    with raises(ValueError, name, "reduction", repr(reduction), "'none', 'mean', 'sum'"):
        call(name, reduction=reduction)


# ------------------------------------------------------------------- scalar parameters

OUT_OF_RANGE = [
    ("cross_entropy", "label_smoothing", -0.1, "[0, 1)"),
    ("cross_entropy", "label_smoothing", 1.0, "[0, 1)"),
    ("cross_entropy", "label_smoothing", math.nan, "[0, 1)"),
    ("huber_loss", "delta", 0.0, "(0, inf)"),
    ("huber_loss", "delta", -1.0, "(0, inf)"),
    ("huber_loss", "delta", math.inf, "(0, inf)"),
    ("smooth_l1_loss", "beta", -0.5, "[0, inf)"),
    ("smooth_l1_loss", "beta", math.nan, "[0, inf)"),
    ("gaussian_nll_loss", "eps", 0.0, "(0, inf)"),
    ("gaussian_nll_loss", "eps", -1e-6, "(0, inf)"),
    ("gaussian_nll_loss", "eps", math.nan, "(0, inf)"),
    ("cosine_similarity_loss", "eps", -1e-8, "[0, inf)"),
    ("cosine_similarity_loss", "eps", math.inf, "[0, inf)"),
    ("triplet_loss", "p", 0, "(0, inf)"),
    ("triplet_loss", "p", -2, "(0, inf)"),
    ("triplet_loss", "p", math.inf, "(0, inf)"),
    ("triplet_loss", "eps", -1e-6, "[0, inf)"),
    ("triplet_loss", "margin", math.nan, "(-inf, inf)"),
    ("triplet_loss", "margin", math.inf, "(-inf, inf)"),
    ("margin_ranking_loss", "margin", math.nan, "(-inf, inf)"),
    ("margin_ranking_loss", "margin", -math.inf, "(-inf, inf)"),
]


@pytest.mark.parametrize(("name", "param", "value", "expected"), OUT_OF_RANGE)
def test_parameter_out_of_range(name, param, value, expected):
    with raises(ValueError, name, param, expected, repr(value)):
        call(name, **{param: value})


@pytest.mark.parametrize(
    ("name", "param", "value"),
    [
        ("cross_entropy", "label_smoothing", "0.1"),
        ("huber_loss", "delta", None),
        ("triplet_loss", "margin", np.array([1.0, 2.0])),
        ("smooth_l1_loss", "beta", True),
    ],
)
def test_parameter_of_the_wrong_type(name, param, value):
    with raises(TypeError, name, param, "real number", type(value).__name__):
        call(name, **{param: value})


# ------------------------------------------------------------------------------ axes

AXIS_LOSSES = {
    "cross_entropy": 2,
    "nll_loss": 2,
    "kl_div_loss": 2,
    "cosine_similarity_loss": 2,
    "triplet_loss": 2,
}


@pytest.mark.parametrize("name", sorted(AXIS_LOSSES))
@pytest.mark.parametrize("axis", [2, -3, 10])
def test_axis_out_of_range(name, axis):
    with raises(ValueError, name, f"axis={axis}", "2 dimensions", "-2 <= axis < 2"):
        call(name, axis=axis)


@pytest.mark.parametrize("name", sorted(AXIS_LOSSES))
@pytest.mark.parametrize("axis", [1.0, "1", None, True, (0, 1)])
def test_axis_not_an_int(name, axis):
    with raises(TypeError, name, "axis", "int", type(axis).__name__):
        call(name, axis=axis)


# ----------------------------------------------------------------------- class indices


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_class_index_too_large(name):
    """Index C for C classes: MLX and NumPy read past the row; anyloss refuses."""
    with raises(ValueError, name, "targets", "class indices from 0 to 3", "3 entries", "0 <= index < 3"):
        call(name, targets=np.array([0, 1, 3, 2]))


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_negative_class_index(name):
    """-1 would silently pick the last class."""
    with raises(ValueError, name, "targets", "from -1 to 2", "0 <= index < 3"):
        call(name, targets=np.array([0, -1, 2, 2]))


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "bool"])
def test_class_indices_not_integers(name, dtype):
    with raises(TypeError, name, "targets", "integer dtype", dtype):
        call(name, targets=np.array([0, 1, 1, 0]).astype(dtype))


@pytest.mark.parametrize("lib", ["torch", "jax"])
def test_class_index_too_large_on_other_libraries(lib):
    logits, targets = to_lib(lib, f64(2, 3)), to_lib(lib, np.array([1, 7]))
    with raises(ValueError, "cross_entropy", "from 1 to 7", "0 <= index < 3"):
        anyloss.cross_entropy(logits, targets)


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize("bad", [1.5, -0.1, math.inf])
def test_probabilities_outside_0_1(bad):
    """Logits passed with with_logits=False."""
    inputs = np.array([0.2, bad, 0.7, 0.1])
    with raises(ValueError, "binary_cross_entropy", "with_logits=False", "[0, 1]", f"{bad:g}", "with_logits=True"):
        call("binary_cross_entropy", inputs=inputs, with_logits=False)


def test_probabilities_outside_0_1_on_torch():
    inputs = to_lib("torch", np.array([0.5, 3.0]))
    with raises(ValueError, "binary_cross_entropy", "[0, 1]", "3"):
        anyloss.binary_cross_entropy(inputs, to_lib("torch", np.array([1.0, 0.0])), with_logits=False)


@pytest.mark.parametrize("lib", ["numpy", "torch", "jax"])
def test_negative_variances(lib):
    args = [to_lib(lib, a) for a in (f64(3), f64(3), np.array([1.0, -0.25, 2.0]))]
    with raises(ValueError, "gaussian_nll_loss", "vars", ">= 0", "-0.25"):
        anyloss.gaussian_nll_loss(*args)


# ------------------------------------------------------------------------------ types


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_complex_input(name):
    first = next(iter(valid_calls()[name]))
    value = np.asarray(valid_calls()[name][first]).astype(np.complex128)
    with raises(TypeError, name, first, "complex"):
        call(name, **{first: value})


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_python_list_instead_of_an_array(name):
    first = next(iter(valid_calls()[name]))
    value = np.asarray(valid_calls()[name][first]).tolist()
    with raises(TypeError, name, first, "must be an array", "list"):
        call(name, **{first: value})


def test_python_float_instead_of_an_array():
    with raises(TypeError, "mse_loss", "targets", "must be an array", "float"):
        anyloss.mse_loss(np.array([1.0]), 1.0)


@pytest.mark.parametrize(
    ("lib1", "lib2"), [("numpy", "torch"), ("torch", "numpy"), ("jax", "torch"), ("numpy", "mlx")]
)
def test_arrays_of_two_libraries(lib1, lib2):
    names = {"numpy": "numpy", "torch": "torch", "jax": "jax", "mlx": "mlx"}
    with raises(TypeError, "mse_loss", "one library", names[lib1], names[lib2], "predictions", "targets"):
        anyloss.mse_loss(to_lib(lib1, f64(3)), to_lib(lib2, f64(3)))


def test_weights_of_another_library():
    with raises(TypeError, "cross_entropy", "one library", "weights"):
        anyloss.cross_entropy(f64(4, 3), labels(4), weights=to_lib("torch", np.ones(4)))


# ------------------------------------------------------------------------ no mutation


def _mutation_calls(n=5, d=4):
    """Calls that exercise every branch that could write: weights, label
    smoothing, probability targets, infinities, half precision, clipping."""
    p = probs(n, d)
    log_p = np.log(p / p.sum(axis=1, keepdims=True))
    log_p[0, 0] = -np.inf
    p = probs(n, d)
    p /= p.sum(axis=1, keepdims=True)
    yield "binary_cross_entropy", dict(inputs=f64(n), targets=probs(n), weights=probs(n))
    yield "binary_cross_entropy", dict(inputs=np.array([0.0, 1.0, 0.5, 1e-9, 1.0]), targets=probs(n),
                                       with_logits=False)
    yield "cross_entropy", dict(logits=f64(n, d), targets=labels(n, d), weights=probs(n), label_smoothing=0.2)
    yield "cross_entropy", dict(logits=f64(n, d), targets=p, axis=1, reduction="mean")
    yield "cross_entropy", dict(logits=f64(n, d).astype(np.float16), targets=labels(n, d))
    yield "nll_loss", dict(inputs=log_p, targets=labels(n, d), reduction="sum")
    yield "kl_div_loss", dict(inputs=log_p[::-1].copy(), targets=log_p)
    yield "hinge_loss", dict(inputs=f64(n), targets=np.sign(f64(n)))
    yield "l1_loss", dict(predictions=f64(n), targets=f64(n))
    yield "mse_loss", dict(predictions=f64(n).astype(np.float16), targets=f64(n).astype(np.float16))
    yield "smooth_l1_loss", dict(predictions=f64(n), targets=f64(n), beta=0.5)
    yield "smooth_l1_loss", dict(predictions=f64(n), targets=f64(n), beta=0.0)
    yield "huber_loss", dict(inputs=f64(n), targets=f64(n), delta=0.3)
    yield "log_cosh_loss", dict(inputs=f64(n), targets=f64(n))
    yield "gaussian_nll_loss", dict(inputs=f64(n), targets=f64(n), vars=np.array([0.0, 1e-9, 1.0, 2.0, 3.0]),
                                    full=True)
    yield "cosine_similarity_loss", dict(x1=np.vstack([np.zeros(d), f64(n - 1, d)]), x2=f64(n, d) * 1e20)
    yield "triplet_loss", dict(anchors=f64(n, d), positives=f64(n, d), negatives=f64(n, d), p=3)
    yield "triplet_loss", dict(anchors=f64(n, d), positives=f64(n, d), negatives=f64(n, d), axis=0)
    yield "margin_ranking_loss", dict(inputs1=f64(n), inputs2=f64(n), targets=np.sign(f64(n)), margin=0.5)


MUTATION_CALLS = list(_mutation_calls())


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_no_loss_changes_its_inputs(lib):
    assert {name for name, _ in MUTATION_CALLS} == set(ALL_LOSSES)
    for name, kwargs in MUTATION_CALLS:
        arrays = {k: to_lib(lib, v) for k, v in kwargs.items() if isinstance(v, np.ndarray)}
        before = {k: np.array(np.asarray(v), copy=True) for k, v in kwargs.items() if isinstance(v, np.ndarray)}
        scalars = {k: v for k, v in kwargs.items() if not isinstance(v, np.ndarray)}
        getattr(anyloss, name)(**arrays, **scalars)
        for k, v in arrays.items():
            after = v.numpy() if lib == "torch" else v
            assert after.dtype == before[k].dtype, f"{name} on {lib}: {k} changed dtype"
            assert np.array_equal(after, before[k], equal_nan=True), f"{name} on {lib} changed {k}"


def test_no_loss_changes_inputs_that_require_grad():
    import torch

    for name, kwargs in MUTATION_CALLS:
        arrays = {k: to_lib("torch", v) for k, v in kwargs.items() if isinstance(v, np.ndarray)}
        for v in arrays.values():
            if v.is_floating_point():
                v.requires_grad_(True)
        versions = {k: v._version for k, v in arrays.items()}
        scalars = {k: v for k, v in kwargs.items() if not isinstance(v, np.ndarray)}
        loss = getattr(anyloss, name)(**arrays, **scalars)
        torch.sum(loss.float()).backward()
        assert {k: v._version for k, v in arrays.items()} == versions, f"{name} wrote to an input"


# ------------------------------------------------------------ value checks and traces


def test_out_of_range_index_inside_jax_jit_is_not_checked():
    """Inside jax.jit the values are tracers: the check must step aside, not
    raise a ConcretizationTypeError."""
    import jax

    logits, targets = to_lib("jax", f64(2, 3)), to_lib("jax", np.array([0, 5]))
    for name in ("cross_entropy", "nll_loss"):
        out = jax.jit(getattr(anyloss, name))(logits, targets)
        assert out.shape == (2,)


def test_value_checks_inside_jax_jit_do_not_raise():
    import jax

    probs_ = to_lib("jax", np.array([0.5, 2.0]))
    jax.jit(lambda p, t: anyloss.binary_cross_entropy(p, t, with_logits=False))(probs_, probs_)
    x = to_lib("jax", f64(3))
    jax.jit(anyloss.gaussian_nll_loss)(x, x, to_lib("jax", np.array([1.0, -1.0, 1.0])))


def test_value_checks_on_arrays_closed_over_by_jax_jit():
    """A concrete array captured by a traced function is still checked, and
    reading it does not trip over the trace."""
    import jax

    logits, bad = to_lib("jax", f64(2, 3)), to_lib("jax", np.array([0, 5]))
    with raises(ValueError, "cross_entropy", "0 <= index < 3"):
        jax.jit(lambda x: anyloss.cross_entropy(x, bad))(logits)


def test_mlx_arrays_are_not_evaluated_by_the_checks():
    """MLX is lazy: the index check is skipped rather than forcing evaluation."""
    import mlx.core as mx

    out = anyloss.cross_entropy(to_lib("mlx", f64(2, 3)), to_lib("mlx", np.array([0, 5])))
    assert isinstance(out, mx.array) and out.shape == (2,)


def test_dask_graphs_are_not_computed_by_the_checks():
    import dask.array as da

    computed = []

    def mark(block):
        if block.size:  # dask also calls it on empty arrays to learn the dtype
            computed.append(block.shape)
        return block

    def lazy(a):
        return da.from_array(a, chunks=a.shape).map_blocks(mark, dtype=a.dtype)

    out = anyloss.cross_entropy(lazy(f64(2, 3)), lazy(np.array([0, 5])))
    out = anyloss.binary_cross_entropy(lazy(np.array([0.5, 2.0])), lazy(np.array([1.0, 0.0])), with_logits=False)
    out = anyloss.gaussian_nll_loss(lazy(f64(2)), lazy(f64(2)), lazy(np.array([1.0, -1.0])))
    assert computed == []
    out.compute()
    assert computed, "the marker must see a computation (this test would not notice one otherwise)"


# ------------------------------------------- mistakes caught where values are on the host


@pytest.mark.parametrize("lib", ["numpy", "array_api_strict", "torch", "jax"])
@pytest.mark.parametrize(
    ("loss", "args", "kwargs", "message"),
    [
        ("binary_cross_entropy", ([0.1, 0.2], [1, 2]), {}, "targets must be probabilities in [0, 1]"),
        ("binary_cross_entropy", ([0.1, 0.2], [-1.0, 1.0]), {}, "(targets + 1) / 2"),
        ("binary_cross_entropy", ([0.1, 0.2], [0.0, 1.5]), {"with_logits": False},
         "targets must be probabilities"),
        ("nll_loss", ([[0.5, 0.25, 0.25]], [0]), {}, "inputs must be log-probabilities"),
        ("nll_loss", ([[2.0, -1.0, 0.5]], [0]), {}, "use cross_entropy on logits"),
        # reduced: the loss's sign shows probabilities, then the inputs are read
        ("nll_loss", ([[0.5, 0.25, 0.25], [-0.1, -3.0, -2.5]], [0, 0]), {"reduction": "mean"},
         "holds values up to 0.5"),
        ("nll_loss", ([[0.5, 0.25, 0.25]], [2]), {"reduction": "sum"}, "inputs must be log-probabilities"),
        ("kl_div_loss", ([[-0.7, -0.7]], [[0.5, 0.5]]), {}, "targets must be log-probabilities"),
    ],
    ids=["bce-labels-1-2", "bce-labels-minus-1", "bce-probs-target-1.5", "nll-probabilities",
         "nll-logits", "nll-probabilities-mean", "nll-probabilities-sum", "kl-probability-targets"],
)
def test_value_mistakes_raise(lib, loss, args, kwargs, message):
    arrays = [to_lib(lib, np.asarray(a, dtype=np.float32 if np.asarray(a).dtype.kind == "f" else np.int64))
              for a in args]
    with pytest.raises(ValueError, match=re.escape(message)):
        getattr(anyloss, loss)(*arrays, **kwargs)


def test_log_probabilities_at_zero_are_accepted():
    # a one-hot target distribution has log-probabilities 0 and -inf
    t = np.log(np.array([[1.0, 0.0]]), where=np.array([[True, False]]), out=np.full((1, 2), -np.inf))
    assert float(anyloss.kl_div_loss(np.log(np.array([[0.5, 0.5]])), t)[0]) == pytest.approx(np.log(2))
    assert float(anyloss.nll_loss(np.array([[0.0, -np.inf]]), np.array([0]))[0]) == 0.0


# ------------------------------------- remembered verdicts: never passed on to another call


def test_a_remembered_verdict_never_stands_for_other_parameters():
    """A front door remembers its checks per signature (shapes, dtypes, plain
    parameters with their types); parameters that are not plain are checked
    on every call, and True never passes for 1."""
    torch = pytest.importorskip("torch")
    logits = np.array([[2.0, -1.0, 0.5], [0.3, 0.1, -2.0]])
    targets = np.array([0, 2])
    lse = np.log(np.exp(logits).sum(axis=1))
    # NumPy integers as the axis: each call its own (a value the key must not lose)
    by_rows = anyloss.cross_entropy(logits.T, targets, axis=np.int64(0))
    np.testing.assert_allclose(by_rows, lse - logits[[0, 1], targets], rtol=1e-12)
    with pytest.raises(ValueError, match="targets has shape"):
        anyloss.cross_entropy(logits.T, targets, axis=np.int64(1))
    anyloss.nll_loss(logits - lse[:, None], targets, ignore_index=1)
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        anyloss.nll_loss(logits - lse[:, None], targets, ignore_index=True)
    # a 0-d tensor as label smoothing, changed in place between calls
    x, t = torch.tensor(logits), torch.tensor(targets)
    smoothing = torch.tensor(0.0, dtype=torch.float64)
    plain = anyloss.cross_entropy(x, t, label_smoothing=smoothing)
    smoothing.fill_(0.5)
    smoothed = anyloss.cross_entropy(x, t, label_smoothing=smoothing)
    want = lse - 0.5 * logits[[0, 1], targets] - 0.5 * logits.mean(axis=1)
    np.testing.assert_allclose(plain.numpy(), lse - logits[[0, 1], targets], rtol=1e-12)
    np.testing.assert_allclose(smoothed.numpy(), want, rtol=1e-12)
    smoothing.fill_(1.5)
    with pytest.raises(ValueError, match="label_smoothing must be a finite number in"):
        anyloss.cross_entropy(x, t, label_smoothing=smoothing)


def test_remembered_verdicts_are_bounded():
    from anyloss import _common

    for n in range(1, _common.MAX_VERDICTS + 10):
        anyloss.mse_loss(np.zeros(n), np.zeros(n))
    assert 0 < len(_common._VERDICTS) <= _common.MAX_VERDICTS

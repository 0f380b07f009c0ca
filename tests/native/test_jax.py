"""The JAX fast path (``anyloss._native.jax``) against the portable code.

Every call is made twice through the public API, by the fast path and inside
``_native.portable()`` (``_formulas.evaluate`` traced as it is), both under
``jax.jit`` unless the test is about eager calls.  Values, gradients,
forward-mode tangents, ``vmap`` and (cross entropy) second derivatives must
agree to a few ulps of the values' magnitude: the row forms sum in another
order, and cross entropy rounds a loss far below eps (the differences page).
Inputs that fail each plain form's exactness test run the safe branch of its
``lax.cond``; the tests check that they do.  An eager call repeated with the
same shapes traces and compiles nothing.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)  # as the suite runs JAX (tests/backends.py)
import jax.numpy as jnp  # noqa: E402
from jax import monitoring  # noqa: E402

import anyloss  # noqa: E402
from anyloss import _formulas as F  # noqa: E402
from anyloss import _native  # noqa: E402
from anyloss._native import jax as fast  # noqa: E402

DTYPES = ("float16", "bfloat16", "float32", "float64")
REDUCTIONS = ("none", "mean", "sum")
SHAPE = (4, 5, 3)


def _rng(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _log_softmax(z: np.ndarray, axis: int) -> np.ndarray:
    z = z - z.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def _drop(shape, axis):
    axis %= len(shape)
    return shape[:axis] + shape[axis + 1 :]


# --------------------------------------------------------------------- the cases
#
# A case: (arrays, params, differentiable), the arrays as float64 NumPy (ints
# kept), ``differentiable`` the names of the float arrays to differentiate.


def _case(name: str, rng: np.random.Generator, axis: int, variant: str = ""):
    n = lambda *s: rng.standard_normal(s or SHAPE)  # noqa: E731
    signs = lambda: np.where(rng.random(SHAPE) < 0.5, -1.0, 1.0)  # noqa: E731
    rows = _drop(SHAPE, axis)
    if name == "binary_cross_entropy":
        if variant == "probabilities":
            x = {"inputs": rng.uniform(0.02, 0.98, SHAPE), "targets": rng.uniform(0, 1, SHAPE)}
            return x, {"with_logits": False}, ("inputs", "targets")
        x = {"inputs": 3 * n(), "targets": rng.uniform(0, 1, SHAPE), "weights": rng.uniform(0, 2, SHAPE)}
        return x, {}, ("inputs", "targets", "weights")
    if name == "cross_entropy":
        smoothing = {"smoothing": 0.1}.get(variant, 0.0)
        if variant == "probabilities":
            t = np.exp(_log_softmax(n(), axis))
            return {"logits": 2 * n(), "targets": t}, {"axis": axis, "label_smoothing": 0.05}, ("logits", "targets")
        x = {"logits": 2 * n(), "targets": rng.integers(0, SHAPE[axis], rows),
             "weights": rng.uniform(0, 2, rows)}
        return x, {"axis": axis, "label_smoothing": smoothing}, ("logits", "weights")
    if name == "nll_loss":
        x = {"inputs": _log_softmax(n(), axis), "targets": rng.integers(0, SHAPE[axis], rows)}
        return x, {"axis": axis}, ("inputs",)
    if name in ("kl_div_loss", "js_div_loss"):
        x = {"inputs": _log_softmax(n(), axis), "targets": _log_softmax(2 * n(), axis)}
        return x, {"axis": axis}, ("inputs", "targets")
    if name in ("softmax_focal_loss", "poly1_cross_entropy"):
        x = {"logits": 2 * n(), "targets": rng.integers(0, SHAPE[axis], rows)}
        if variant == "weights":
            x["class_weights"] = rng.uniform(0.5, 2, SHAPE[axis])
            return x, {"axis": axis, "gamma": 0.5}, ("logits", "class_weights")
        return x, {"axis": axis}, ("logits",)
    if name == "cosine_similarity_loss":
        return {"x1": n(), "x2": n()}, {"axis": axis}, ("x1", "x2")
    if name == "cosine_embedding_loss":
        y = np.where(rng.random(rows) < 0.5, -1, 1)
        return {"x1": n(), "x2": n(), "targets": y}, {"axis": axis, "margin": 0.1}, ("x1", "x2")
    if name == "triplet_loss":
        p = 3 if variant == "p3" else 2
        x = {"anchors": n(), "positives": n(), "negatives": n()}
        return x, {"axis": axis, "p": p, "margin": 0.5}, ("anchors", "positives", "negatives")
    if name == "gaussian_nll_loss":
        x = {"inputs": n(), "targets": n(), "vars": rng.uniform(0.1, 2, SHAPE)}
        return x, {"full": True}, ("inputs", "targets", "vars")
    if name in ("hinge_loss",):
        return {"inputs": n(), "targets": signs()}, {}, ("inputs",)
    if name == "margin_ranking_loss":
        x = {"inputs1": n(), "inputs2": n(), "targets": signs()}
        return x, {"margin": 0.1}, ("inputs1", "inputs2")
    first = "predictions" if name in ("l1_loss", "mse_loss", "smooth_l1_loss") else "inputs"
    params = {"huber_loss": {"delta": 0.5}, "smooth_l1_loss": {"beta": 0.7}}.get(name, {})
    return {first: n(), "targets": n()}, params, (first, "targets")


LOSSES = (
    "binary_cross_entropy", "cosine_similarity_loss", "cross_entropy", "gaussian_nll_loss",
    "hinge_loss", "huber_loss", "kl_div_loss", "l1_loss", "log_cosh_loss",
    "margin_ranking_loss", "mse_loss", "nll_loss", "smooth_l1_loss", "triplet_loss",
    "softmax_focal_loss", "poly1_cross_entropy", "js_div_loss", "cosine_embedding_loss",
)
VARIANTS = {
    "softmax_focal_loss": ("", "weights"),
    "binary_cross_entropy": ("", "probabilities"),
    "cross_entropy": ("", "smoothing", "probabilities"),
    "triplet_loss": ("", "p3"),
}
CASES = [(name, v) for name in LOSSES for v in VARIANTS.get(name, ("",))]


def _ids(case):
    name, variant = case
    return f"{name}-{variant}" if variant else name


def _to_jax(arrays: dict, dtype: str) -> dict:
    return {k: (jnp.asarray(v) if v.dtype.kind in "iu" else jnp.asarray(v, dtype=dtype))
            for k, v in arrays.items()}


def _eps(dtype) -> float:
    return float(jnp.finfo(dtype).eps)


def _both(fn, *args):
    """``jax.jit(fn)(*args)`` by the fast path and by the portable code: two
    traces (``jax.jit`` of one function object would reuse its first trace)."""
    fast_out = jax.jit(lambda *a: fn(*a))(*args)
    with _native.portable():
        portable_out = jax.jit(lambda *a: fn(*a))(*args)
    return fast_out, portable_out


def _close_all(got, expected, dtype, what):
    for (path, g), e in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree_util.tree_leaves(expected)):
        _close(g, e, dtype, f"{what} {jax.tree_util.keystr(path)}")


def _close(got, expected, dtype, what, ulps=16.0):
    """Within ``ulps`` of the expected values' largest magnitude (at least 1),
    NaN, inf and their signs the same."""
    got = np.asarray(jnp.asarray(got, dtype=jnp.float64))
    expected = np.asarray(jnp.asarray(expected, dtype=jnp.float64))
    assert got.shape == expected.shape, what
    finite = np.isfinite(expected)
    assert np.array_equal(np.isnan(got), np.isnan(expected)), f"{what}: NaN differ\n{got}\n{expected}"
    assert np.array_equal(got[~finite & ~np.isnan(expected)], expected[~finite & ~np.isnan(expected)]), what
    scale = max(1.0, float(np.max(np.abs(expected[finite]), initial=0.0)))
    # half precision results are rounded from float32 values that may differ by an ulp
    tol = ulps * max(_eps(dtype), _eps(jnp.float32)) * scale if dtype not in ("float16", "bfloat16") \
        else 2.0 * _eps(dtype) * scale
    err = float(np.max(np.abs(got[finite] - expected[finite]), initial=0.0))
    assert err <= tol, f"{what}: error {err:.3g} > {tol:.3g}\n{got}\n{expected}"


# ------------------------------------------------------------------ values, grads


CONFIGS = ((-1, "none"), (1, "sum"), (0, "mean"))  # (axis, reduction)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_values(case):
    """In every dtype: unreduced along the last axis, summed along axis 1,
    averaged along axis 0 (half precision: the first two); one computation."""
    name, variant = case
    runs = []  # (dtype, params, reduction)
    xs = []
    for dtype in DTYPES:
        configs = CONFIGS if dtype in ("float32", "float64") else CONFIGS[:2]
        for axis, reduction in configs:
            arrays, params, _ = _case(name, _rng(name, variant, dtype, axis), axis, variant)
            runs.append((dtype, params, reduction))
            xs.append(_to_jax(arrays, dtype))

    def losses(xs):
        return [getattr(anyloss, name)(**x, **params, reduction=reduction)
                for x, (_, params, reduction) in zip(xs, runs)]

    got, expected = _both(losses, xs)
    for g, e, (dtype, _, reduction) in zip(got, expected, runs):
        assert g.dtype == e.dtype
        _close(g, e, dtype, f"{name} {variant} {dtype} {reduction}")
    # eager: the fast path's own compiled computations
    for i, (dtype, params, reduction) in enumerate(runs):
        if dtype == "float32":
            eager = getattr(anyloss, name)(**xs[i], **params, reduction=reduction)
            _close(eager, expected[i], dtype, f"{name} {variant} eager {reduction}")


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_gradients(case):
    """Float32 and float64, along axis 1 where the loss has an axis."""
    name, variant = case
    axis = 1 if name in ("cross_entropy", "kl_div_loss", "cosine_similarity_loss") else -1
    dtypes = ("float32", "float64")
    cases = [_case(name, _rng(name, variant, "grad", dtype), axis, variant) for dtype in dtypes]
    xs = [_to_jax(arrays, dtype) for (arrays, _, _), dtype in zip(cases, dtypes)]

    def grads(ds):
        return [jax.grad(lambda d: getattr(anyloss, name)(**{**x, **d}, **params, reduction="sum"))(d)
                for d, x, (_, params, _) in zip(ds, xs, cases)]

    ds = [{k: x[k] for k in wrt} for x, (_, _, wrt) in zip(xs, cases)]
    got, expected = _both(grads, ds)
    for g, e, dtype in zip(got, expected, dtypes):
        _close_all(g, e, dtype, f"d {name} {variant} ({dtype})")


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_jvp_vmap_and_eager_grad(case):
    name, variant = case
    arrays, params, wrt = _case(name, _rng(name, variant, "jvp"), -1, variant)
    x = _to_jax(arrays, "float32")
    tangents = {k: jnp.asarray(_rng(name, k).standard_normal(x[k].shape), dtype="float32") for k in wrt}
    primals = {k: x[k] for k in wrt}
    first = wrt[0]
    batched = {k: jnp.stack([v, v[::-1]]) for k, v in x.items()}  # a new leading axis

    def loss(d, reduction="mean"):
        return getattr(anyloss, name)(**{**x, **d}, **params, reduction=reduction)

    special = name in ("cross_entropy", "kl_div_loss", "cosine_similarity_loss", "triplet_loss", "js_div_loss",
                       "cosine_embedding_loss")

    def transforms(primals, tangents, batched):
        out = {
            "jvp": jax.jvp(loss, (primals,), (tangents,)),
            "vmap": jax.vmap(lambda b: getattr(anyloss, name)(**b, **params, reduction="none"))(batched),
        }
        if special:  # one input's tangent only: the others reach the custom rules as symbolic zeros
            out["jvp one"] = jax.jvp(lambda u: loss({**primals, first: u}), (primals[first],), (tangents[first],))
        return out

    got, expected = _both(transforms, primals, tangents, batched)
    _close_all(got, expected, "float32", f"{name} {variant}")
    if not special:
        return  # the other losses' compiled computation is evaluate itself
    # eager grad: the compiled computation under an eager transform
    with _native.portable():
        grad_ref = jax.jit(jax.grad(lambda d: loss(d)))(primals)
    _close_all(jax.grad(loss)(primals), grad_ref, "float32", f"eager grad {name} {variant}")


@pytest.mark.parametrize("variant", ("", "smoothing", "probabilities"))
def test_cross_entropy_second_derivatives(variant):
    arrays, params, _ = _case("cross_entropy", _rng("hessian", variant), -1, variant)
    x = _to_jax(arrays, "float64")
    x.pop("weights", None)

    def loss(logits):
        return anyloss.cross_entropy(logits, x["targets"], **params, reduction="sum")

    def second(logits):
        return jax.hessian(loss)(logits), jax.jacrev(jax.grad(loss))(logits)

    got, expected = _both(second, x["logits"])
    _close_all(got, expected, "float64", f"second derivatives {variant}")


# ----------------------------------------------- the safe branch of each lax.cond


def _hard(name: str, dtype: str):
    """Inputs whose plain form is not exact (with normal rows beside them),
    the form's test of exactness, and the arrays to differentiate."""
    rng = _rng("hard", name, dtype)
    big = 1e20 if dtype == "float32" else 1e200
    tiny = 1e-23 if dtype == "float32" else 1e-170
    if name == "cosine_similarity_loss":
        x1 = rng.standard_normal((5, 4))
        x1[0] = 0.0
        x1[1] *= big
        x1[2] *= tiny
        x = {"x1": x1, "x2": rng.standard_normal((5, 4))}
        exact = lambda a: F.cosine_rows(jnp, a["x1"], a["x2"], 1, 1e-8)[1]  # noqa: E731
        return x, {}, ("x1", "x2"), exact
    if name == "cosine_similarity_loss-eps-0":
        x1 = rng.standard_normal((3, 4))
        x1[0] = 0.0
        x1[1] *= tiny
        x = {"x1": x1, "x2": rng.standard_normal((3, 4))}
        exact = lambda a: F.cosine_rows(jnp, a["x1"], a["x2"], 1, 0.0)[1]  # noqa: E731
        return x, {"eps": 0.0}, ("x1", "x2"), exact
    if name == "triplet_loss":
        x = {"anchors": rng.standard_normal((3, 4)), "positives": rng.standard_normal((3, 4)),
             "negatives": rng.standard_normal((3, 4)) * 3}
        for v in x.values():
            v[0] *= big  # squares overflow; the loss is of the inputs' size
        exact = lambda a: F.triplet_rows(jnp, a["anchors"], a["positives"], a["negatives"], 1, 1e-6)[1]  # noqa: E731
        return x, {}, ("anchors", "positives", "negatives"), exact
    if name == "kl_div_loss":
        t = _log_softmax(rng.standard_normal((3, 4)), 1)
        t[0, 1] = t[1, 2] = -math.inf
        x = _log_softmax(rng.standard_normal((3, 4)), 1)
        x[1, 2] = -math.inf
        exact = lambda a: F.kl_div_plain(jnp, a["inputs"], a["targets"], -1)[1]  # noqa: E731
        return {"inputs": x, "targets": t}, {}, ("inputs", "targets"), exact
    if name == "cross_entropy":
        logits = rng.standard_normal((3, 4))
        logits[0, 2] = -math.inf
        t = np.exp(_log_softmax(rng.standard_normal((3, 4)), 1))
        t[0] = [0.5, 0.5, 0.0, 0.0]
        exact = lambda a: F.cross_entropy_probabilities_plain(jnp, a["logits"], a["targets"], -1, 0.0)[1]  # noqa: E731
        return {"logits": logits, "targets": t}, {}, ("logits", "targets"), exact
    raise ValueError(name)


HARD = ("cosine_similarity_loss", "cosine_similarity_loss-eps-0", "triplet_loss", "kl_div_loss",
        "cross_entropy")


@pytest.mark.parametrize("dtype", ("float32", "float64"))
@pytest.mark.parametrize("hard", HARD)
def test_safe_branch(hard, dtype):
    name = hard.split("-")[0]
    arrays, params, wrt, exact = _hard(hard, dtype)
    x = _to_jax(arrays, dtype)
    normal = {k: v[-1:] for k, v in x.items()}  # the last row alone is plain
    flags = jax.jit(lambda x, normal: (exact(x), exact(normal)))(x, normal)
    assert not bool(flags[0]), f"{hard}: the plain form claims to be exact"
    assert bool(flags[1]), f"{hard}: the plain form refuses a normal row"

    def loss(d, reduction):
        return getattr(anyloss, name)(**{**x, **d}, **params, reduction=reduction)

    d = {k: x[k] for k in wrt}
    got, expected = _both(lambda d: (loss(d, "none"), jax.grad(lambda d: loss(d, "sum"))(d)), d)
    _close_all(got, expected, dtype, f"{hard}")
    _close(loss(d, "none"), expected[0], dtype, f"{hard} values, eager")


@pytest.mark.parametrize("pos_weight", (None, 2.5))
def test_bce_infinite_logits_run_the_formula(pos_weight):
    """An infinite logit with its matching target (0 * inf in the max/min
    form) switches the whole call to the formula: loss 0 there, as the
    portable code, values and gradients; finite logits keep the form."""
    x = jnp.asarray([np.inf, -np.inf, 2.0, -3.0, 0.5], dtype="float32")
    t = jnp.asarray([1.0, 0.0, 0.5, 1.0, 0.0], dtype="float32")
    w = None if pos_weight is None else jnp.asarray(pos_weight, dtype="float32")
    for logits in (x, x[2:]):
        for reduction in ("none", "mean"):
            def loss(a, reduction=reduction):
                return anyloss.binary_cross_entropy(a, t[-a.shape[0]:], pos_weight=w, reduction=reduction)

            got, expected = _both(lambda a: (loss(a), jax.grad(lambda b: jnp.sum(loss(b, "sum")))(a)), logits)
            _close_all(got, expected, "float32", f"bce {pos_weight} {reduction}")
            assert bool(jnp.all(jnp.isfinite(got[0])))


def _trace_form(monkeypatch, form: str, min_size: int) -> list:
    """``COND_MIN_SIZE`` lowered to ``min_size``, the compiled computations
    cleared, and the sizes that ``_formulas.<form>`` is traced with."""
    traced = []
    plain = getattr(F, form)
    monkeypatch.setattr(fast, "COND_MIN_SIZE", min_size)
    monkeypatch.setattr(F, form, lambda xp, x, *rest: traced.append(x.size) or plain(xp, x, *rest))
    fast.compiled.cache_clear()
    return traced


@pytest.mark.parametrize("nan", (False, True))
def test_poisson_large_calls_by_the_plain_form(nan, monkeypatch):
    """poisson_nll_loss from COND_MIN_SIZE elements on: the whole call by the
    plain form, and by the formula where that holds a NaN (a log rate of
    -inf at a count of 0, whose term is 0): values, jit(grad) and jvp as the
    portable code; below the size, the formula itself."""
    traced = _trace_form(monkeypatch, "poisson_nll_plain", 64)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(96).astype("float32")
    t = rng.poisson(1.0, 96).astype("float32")
    if nan:
        x[5], t[5] = -np.inf, 0.0
    u = jnp.asarray(rng.standard_normal(96).astype("float32"))
    for n in (96, 32):  # the conditional, then the formula alone
        a, b = jnp.asarray(x[:n]), jnp.asarray(t[:n])

        def derivatives(a, b=b):
            loss = lambda v, reduction="mean": anyloss.poisson_nll_loss(v, b, reduction=reduction)  # noqa: E731
            return (loss(a, "none"), loss(a), jax.jit(jax.grad(loss))(a),
                    jax.jvp(loss, (a,), (u[:n],))[1])

        got, expected = _both(derivatives, a)
        _close_all(got, expected, "float32", f"poisson {n} nan={nan}")
        assert bool(jnp.isfinite(got[1]))
    assert traced and set(traced) == {96}
    fast.compiled.cache_clear()


@pytest.mark.parametrize("hard", (None, "nan ignored", "inf kept"))
def test_ignore_index_plain_rows_or_the_formula(hard, monkeypatch):
    """cross_entropy with class weights and ignore_index from COND_MIN_SIZE
    logits on: the plain rows, and the formula where a row is not finite (a
    NaN logit in an ignored row keeps a zero gradient there; an infinite one
    in a kept row): values, jit(grad) and jvp as the portable code."""
    traced = _trace_form(monkeypatch, "cross_entropy_plain", 16)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 5)).astype("float32")
    y = rng.integers(0, 5, 8)
    y[[1, 4]] = 2
    if hard == "nan ignored":
        x[1, 3] = np.nan
    elif hard == "inf kept":
        x[0, 1] = np.inf
    w = jnp.asarray(rng.uniform(0.2, 2.0, 5).astype("float32"))
    u = jnp.asarray(rng.standard_normal((8, 5)).astype("float32"))
    y = jnp.asarray(y)

    def derivatives(a):
        loss = lambda v, reduction="mean": anyloss.cross_entropy(  # noqa: E731
            v, y, reduction=reduction, class_weights=w, ignore_index=2)
        return loss(a, "none"), loss(a), jax.grad(loss)(a), jax.jvp(loss, (a,), (u,))[1]

    got, expected = _both(derivatives, jnp.asarray(x))
    for g, e, what in zip(got, expected, ("none", "mean", "grad", "jvp")):
        np.testing.assert_array_equal(np.isnan(np.asarray(g)), np.isnan(np.asarray(e)), err_msg=what)
        keep = ~np.isnan(np.asarray(e))
        np.testing.assert_allclose(np.asarray(g)[keep], np.asarray(e)[keep], rtol=2e-6, atol=1e-6, err_msg=what)
    if hard == "nan ignored":
        assert np.all(np.asarray(got[2])[1] == 0) and np.isfinite(float(got[1]))
    assert traced  # the plain rows were traced, the conditional taken
    fast.compiled.cache_clear()


def test_plain_forms_exact_on_normal_rows():
    """The plain forms are taken for ordinary inputs (else the fast path is the slow one)."""
    rng = _rng("normal rows")
    a, b, c = (jnp.asarray(rng.standard_normal((8, 16)), dtype="float32") for _ in range(3))

    def flags(a, b, c):
        x, t = (jax.nn.log_softmax(v, axis=1) for v in (a, b))
        return (F.cosine_rows(jnp, a, b, 1, 1e-8)[1], F.triplet_rows(jnp, a, b, c, 1, 1e-6)[1],
                F.kl_div_plain(jnp, x, t, 1)[1],
                F.cross_entropy_probabilities_plain(jnp, a, jnp.exp(t), 1, 0.0)[1])

    assert all(bool(f) for f in jax.jit(flags)(a, b, c))


def test_cross_entropy_rounds_only_far_below_eps():
    """The fast path's one documented difference: a confident, right row's
    loss far below eps is rounded, by at most an ulp of 1."""
    logits = jnp.asarray([[30.0, 0.0], [1.0, 0.0]], dtype="float32")
    targets = jnp.asarray([0, 1])
    got, expected = _both(lambda x: anyloss.cross_entropy(x, targets), logits)
    assert abs(float(got[0]) - float(expected[0])) <= _eps(jnp.float32)
    assert float(expected[0]) > 0
    _close(got, expected, "float32", "cross entropy")


# -------------------------------------------------------------- class indices


@pytest.mark.parametrize("name", ("cross_entropy", "nll_loss"))
def test_class_index_check(name):
    x = jnp.zeros((3, 4))
    for bad in ([0, 4, 1], [0, -1, 1]):
        targets = jnp.asarray(bad)
        assert fast.checks_class_indices(targets)
        with pytest.raises(ValueError, match="class indices from"):
            getattr(anyloss, name)(x, targets)
    # under a trace nothing is read: an index out of range gives NaN
    out = jax.jit(lambda t: getattr(anyloss, name)(x, t))(jnp.asarray([0, 4, 1]))
    assert np.isnan(np.asarray(out)[1]) and np.isfinite(np.asarray(out)[[0, 2]]).all()
    seen = []
    jax.jit(lambda t: seen.append(fast.checks_class_indices(t)) or t)(jnp.asarray([0]))
    assert seen == [False]
    assert not fast.checks_class_indices(jnp.asarray([0.0, 1.0]))
    assert not fast.checks_class_indices(np.asarray([0, 1]))


# ------------------------------------------------------------- no compile per call


class _Compiles:
    """Counts JAX's trace and compile events while active."""

    EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/backend_compile_duration")

    def __init__(self):
        self.events: list[str] = []

    def __call__(self, event, duration, **kwargs):
        if event in self.EVENTS:
            self.events.append(event)

    def __enter__(self):
        monitoring.register_event_duration_secs_listener(self)
        return self

    def __exit__(self, *exc):
        monitoring.unregister_event_duration_listener(self)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_repeated_eager_call_compiles_nothing(case):
    name, variant = case
    arrays, params, _ = _case(name, _rng("compile", name, variant), -1, variant)

    def call(scale):  # new arrays each call, the same shapes and dtypes
        x = {k: jnp.asarray(v if v.dtype.kind in "iu" else v * scale, dtype=v.dtype)
             for k, v in arrays.items()}
        return getattr(anyloss, name)(**x, **params)

    jax.block_until_ready(call(1.0))  # the first call may trace and compile
    with _Compiles() as counter:
        for scale in (0.5, 0.75, 0.9):
            jax.block_until_ready(call(scale))
    assert counter.events == [], f"{name}: an eager call with seen shapes traced or compiled"


def test_compile_counter_sees_a_new_shape():
    with _Compiles() as counter:
        anyloss.mse_loss(jnp.ones((7, 13)), jnp.zeros((7, 13))).block_until_ready()
    assert counter.events, "the counter of the test above would not see a compilation"


def test_caches_are_bounded():
    for cache in (fast.compiled, fast._cosine, fast._triplet, fast._kl_div, fast._probabilities):
        assert cache.cache_info().maxsize == fast.CACHE_SIZE
    before = fast.compiled.cache_info().currsize
    for delta in (0.25, 0.5, 0.75):
        anyloss.huber_loss(jnp.ones(3), jnp.zeros(3), delta=delta)
    assert fast.compiled.cache_info().currsize <= min(before + 3, fast.CACHE_SIZE)


# ---------------------------------------------------------- training options


def _training(name):
    """Arrays and options of a call with every training option of ``name``;
    class 2 is both a real class and the ignore_index."""
    rng = _rng("training", name)
    if name == "binary_cross_entropy":
        x, t = rng.standard_normal((6, 5)) * 3, rng.random((6, 5))
        return (x, t), {"pos_weight": rng.uniform(0.2, 3.0, 5)}
    x = rng.standard_normal((8, 5)) * 2
    if name == "nll_loss":
        x = _log_softmax(x, -1)
    y = rng.integers(0, 5, 8)
    y[[1, 4]] = 2
    options = {"class_weights": rng.uniform(0.2, 2.0, 5), "ignore_index": 2}
    if name == "cross_entropy":
        options.update(label_smoothing=0.1, z_loss=1e-3, logit_softcap=4.0)
    return (x, y), options


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ("cross_entropy", "nll_loss", "binary_cross_entropy"))
def test_training_options_match_portable(name, reduction):
    """Eager and under jit, values and gradients: the cached computation is the formula's."""
    (x, y), options = _training(name)
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(y) if y.dtype.kind in "iu" else jnp.asarray(y, jnp.float32)
    options = {k: jnp.asarray(v, jnp.float32) if isinstance(v, np.ndarray) else v for k, v in options.items()}

    def f(a):
        return jnp.sum(getattr(anyloss, name)(a, y, reduction=reduction, **options))

    got = jax.value_and_grad(f)(x)
    with _native.portable():
        want = jax.value_and_grad(f)(x)
    _close_all(got, want, "float32", name)
    _close_all(*_both(jax.grad(f), x), "float32", name)


@pytest.mark.parametrize("name", ("cross_entropy", "nll_loss", "binary_cross_entropy"))
def test_training_options_compile_once(name):
    (x, y), options = _training(name)
    options = {k: jnp.asarray(v, jnp.float32) if isinstance(v, np.ndarray) else v for k, v in options.items()}
    call = lambda s: getattr(anyloss, name)(jnp.asarray(x * s, jnp.float32), jnp.asarray(y), **options)  # noqa: E731
    jax.block_until_ready(call(1.0))
    with _Compiles() as counter:
        for scale in (0.5, 0.75):
            jax.block_until_ready(call(scale))
    assert counter.events == [], f"{name}: an eager call with training options traced or compiled"

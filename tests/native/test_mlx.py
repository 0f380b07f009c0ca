"""The MLX fast path (``anyloss._native.mlx``) under every MLX transformation.

Each call is made through the public API twice: by the fast path (the
compiled, cached ``evaluate`` on MLX's namespace with its cheaper forms) and
inside ``_native.portable()`` (``evaluate`` on ``mlx.core``, op by op), and,
where the semantics agree (float32, ordinary inputs), against
``mlx.nn.losses``.  Values, gradients (``mx.grad``, ``mx.value_and_grad``,
``mx.vjp``), forward mode (``mx.jvp`` against reverse mode and finite
differences), forward-over-reverse Hessian-vector products, ``mx.vmap`` and
``mx.compile`` (also shapeless, across a change of shape) are compared.
Sizes on both sides of ``FORMS_MIN_SIZE`` exercise both forms of
``exp``.  The last tests count traces: a repeated call traces nothing, and
the compiled functions kept are bounded.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")
losses = pytest.importorskip("mlx.nn.losses")

import anyloss  # noqa: E402
from anyloss import _formulas, _native  # noqa: E402
from anyloss._native import mlx as fast  # noqa: E402

REDUCTIONS = ("none", "mean", "sum")
HALF = {"float16": mx.float16, "bfloat16": mx.bfloat16}
# Relative tolerance of a result in each dtype against the other path (a few
# ulps of float32: MLX's own exp and log are off by several; the output
# rounding of the half types).
RTOL = {"float32": 3e-6, "float16": 2e-3, "bfloat16": 1.6e-2}


@pytest.fixture(autouse=True)
def fresh():
    """Each test starts with no compiled configuration (a patched constant
    must not meet a function traced before it)."""
    fast._CACHE.clear()
    yield
    fast._CACHE.clear()


# ------------------------------------------------------------------------ inputs


def _log_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    z = z - z.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def _mx(a: np.ndarray, dtype: str = "float32"):
    """A float64 NumPy array as an MLX array of ``dtype`` (integers as int32)."""
    if a.dtype.kind in "iu":
        return mx.array(a.astype(np.int32))
    out = mx.array(a.astype(np.float32))
    return out.astype(HALF[dtype]) if dtype in HALF else out


def make(name: str, shape: tuple[int, ...], rng: np.random.Generator, variant: str = ""):
    """``(arrays, kwargs)`` of a valid call: float64 NumPy arrays (class
    indices int) and the keyword arguments.  ``variant`` picks a parameter
    setting; for the embedding losses the rows are along axis 0, the
    vectors along axis 1."""
    normal = lambda s=shape, k=1.0: rng.standard_normal(s) * k  # noqa: E731
    signs = lambda: np.where(rng.random(shape) < 0.5, -1.0, 1.0)  # noqa: E731
    rows = shape[:-1]
    if name == "cross_entropy":
        logits = normal(k=2.0)
        if variant == "probabilities":
            return [logits, np.exp(_log_softmax(normal()))], {}
        kwargs = {"label_smoothing": 0.1} if variant == "smoothing" else {}
        arrays = [logits, rng.integers(0, shape[-1], rows)]
        if variant == "weights":
            arrays.append(rng.uniform(0.5, 2.0, rows))
        return arrays, kwargs
    if name == "nll_loss":
        return [_log_softmax(normal()), rng.integers(0, shape[-1], rows)], {}
    if name == "kl_div_loss":
        return [_log_softmax(normal()), _log_softmax(normal())], {}
    if name == "binary_cross_entropy":
        if variant == "probabilities":
            return [rng.uniform(0.02, 0.98, shape), rng.uniform(0.0, 1.0, shape)], {"with_logits": False}
        arrays = [normal(k=3.0), (rng.random(shape) < 0.5) * 1.0]
        if variant == "weights":
            arrays.append(rng.uniform(0.5, 2.0, shape))
        return arrays, {}
    if name == "hinge_loss":
        return [normal(), signs()], {}
    if name in ("l1_loss", "mse_loss", "log_cosh_loss"):
        return [normal(), normal()], {}
    if name == "smooth_l1_loss":
        return [normal(), normal()], {"beta": 0.5 if variant else 1.0}
    if name == "huber_loss":
        return [normal(), normal()], {"delta": 2.0 if variant else 1.0}
    if name == "gaussian_nll_loss":
        return [normal(), normal(), rng.uniform(0.1, 2.0, shape)], {"full": variant == "full"}
    if name == "margin_ranking_loss":
        return [normal(), normal(), signs()], {"margin": 0.5 if variant else 0.0}
    if name == "cosine_similarity_loss":
        return [normal(), normal()], {"axis": 1}
    if name == "triplet_loss":
        p = {"p1": 1, "p3": 3}.get(variant, 2)
        return [normal(), normal(), normal()], {"p": p, "axis": 1}
    raise ValueError(name)


# loss -> its parameter variants
VARIANTS = {
    "cross_entropy": ("", "probabilities", "smoothing", "weights"),
    "nll_loss": ("",),
    "kl_div_loss": ("",),
    "binary_cross_entropy": ("", "probabilities", "weights"),
    "hinge_loss": ("",),
    "l1_loss": ("",),
    "mse_loss": ("",),
    "smooth_l1_loss": ("", "beta"),
    "huber_loss": ("", "delta"),
    "log_cosh_loss": ("",),
    "gaussian_nll_loss": ("", "full"),
    "margin_ranking_loss": ("", "margin"),
    "cosine_similarity_loss": ("",),
    "triplet_loss": ("", "p1", "p3"),
}
LOSSES = tuple(VARIANTS)
# Losses with exp or log in their formula.
TRANSCENDENTAL = {"cross_entropy", "kl_div_loss", "binary_cross_entropy", "log_cosh_loss", "gaussian_nll_loss"}
CALLS = [(name, v) for name in LOSSES for v in VARIANTS[name]]
# Below and above FORMS_MIN_SIZE (and BLOCKED_MIN_LENGTH).
SHAPES = ((6, 5), (12, 512))


def _floats(name: str, arrays: list) -> list[int]:
    """Positions of the arrays a gradient is taken with respect to."""
    return [i for i, a in enumerate(arrays) if mx.issubdtype(a.dtype, mx.floating)
            and not (name == "hinge_loss" and i == 1) and not (name == "margin_ranking_loss" and i == 2)]


def _terms(name, data, kwargs) -> float:
    """The magnitude of the terms a loss is a difference of: the distances of
    a triplet loss (the loss is their difference), 1 otherwise."""
    if name != "triplet_loss":
        return 1.0
    a, pos, neg = (np.asarray(d, np.float64) for d in data[:3])
    p = kwargs.get("p", 2)
    return float(np.max(np.sum(np.abs(a - pos) ** p, axis=-1) ** (1 / p) + np.sum(np.abs(a - neg) ** p, axis=-1) ** (1 / p)))


def _grads(f, argnums):
    """``mx.value_and_grad(f, argnums)`` with the gradients always a tuple
    (MLX returns a lone array for a single argnum)."""
    both = mx.value_and_grad(f, argnums=argnums)

    def call(*arrays):
        value, grads = both(*arrays)
        return value, (grads,) if len(argnums) == 1 else tuple(grads)

    return call


def _call(name, arrays, kwargs, reduction):
    return getattr(anyloss, name)(*arrays, **kwargs, reduction=reduction)


def _close(got, want, rtol, what="", scale=1.0):
    """Equal NaN/inf patterns, values within ``rtol`` of the larger of
    ``|want|`` and ``scale``, the magnitude of the terms the result is a sum
    or difference of (1 for most losses here)."""
    got = np.asarray(np.array(got.astype(mx.float32) if got.dtype != mx.float32 else got), np.float64)
    want = np.asarray(np.array(want.astype(mx.float32) if want.dtype != mx.float32 else want), np.float64)
    assert got.shape == want.shape, what
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=what)
    finite = np.isfinite(want)
    np.testing.assert_array_equal(got[~finite], want[~finite], err_msg=what)
    scale = np.maximum(np.abs(want[finite]), scale)
    assert np.all(np.abs(got[finite] - want[finite]) <= rtol * scale), (
        f"{what}: max error {np.max(np.abs(got[finite] - want[finite]) / scale, initial=0)}"
    )


# ------------------------------------------------------------------- values


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name,variant", CALLS)
def test_values_and_gradients_match_portable(name, variant, shape):
    rng = np.random.default_rng(zlib_seed(name, variant, shape))
    data, kwargs = make(name, shape, rng, variant)
    for dtype in ("float32", "float16", "bfloat16") if shape == SHAPES[0] else ("float32",):
        arrays = [_mx(a, dtype) for a in data]
        argnums = _floats(name, arrays)
        # The half types differ from float32 in their casts only: one shape
        # and one reduction each (every kernel traced is compiled to machine
        # code once per machine, which is most of a first run's time).
        for reduction in REDUCTIONS if dtype == "float32" else ("mean",):
            what = f"{name}[{variant}] {dtype} {reduction}"
            got = _call(name, arrays, kwargs, reduction)
            with _native.portable():
                want = _call(name, arrays, kwargs, reduction)
            assert got.dtype == want.dtype == arrays[0].dtype, what
            _close(got, want, RTOL[dtype], what, _terms(name, data, kwargs))
            if reduction == "none" or dtype != "float32":
                continue
            f = lambda *a: _call(name, a, kwargs, reduction)  # noqa: E731
            value, grads = _grads(f, argnums)(*arrays)
            with _native.portable():
                want_value, want_grads = _grads(f, argnums)(*arrays)
            _close(value, want_value, RTOL[dtype], what, _terms(name, data, kwargs))
            for i, g, w in zip(argnums, grads, want_grads):
                _close(g, w, 1e-5, f"{what} d/d(arg {i})")
            # mx.grad gives value_and_grad's gradient
            plain = mx.grad(f, argnums=argnums)(*arrays)
            for g, w in zip((plain,) if len(argnums) == 1 else plain, grads):
                _close(g, w, 0.0, what)


def zlib_seed(*parts) -> int:
    import zlib

    return zlib.crc32(repr(parts).encode())


@pytest.mark.parametrize("name,variant", CALLS)
def test_values_match_mlx(name, variant):
    """float32 on ordinary inputs, where MLX's formulas and ours agree."""
    rng = np.random.default_rng(zlib_seed("mlx", name, variant))
    data, kwargs = make(name, (12, 512), rng, variant)
    arrays = [_mx(a) for a in data]
    peer = getattr(losses, name)
    for reduction in REDUCTIONS:
        got = _call(name, arrays, kwargs, reduction)
        want = peer(*arrays, **kwargs, reduction=reduction)
        _close(got, want, 2e-5, f"{name}[{variant}] {reduction}", _terms(name, data, kwargs))
    argnums = _floats(name, arrays)
    _, grads = _grads(lambda *a: _call(name, a, kwargs, "sum"), argnums)(*arrays)
    _, want = _grads(lambda *a: peer(*a, **kwargs, reduction="sum"), argnums)(*arrays)
    for i, g, w in zip(argnums, grads, want):
        _close(g, w, 2e-5, f"{name}[{variant}] d/d(arg {i})")


@pytest.mark.parametrize("classes", (2, 10, 1000))
@pytest.mark.parametrize("smoothing", (0.0, 0.1, 0.9))
def test_label_smoothing_across_class_counts(classes, smoothing):
    rng = np.random.default_rng(classes)
    logits = _mx(rng.standard_normal((7, classes)) * 3)
    targets = _mx(rng.integers(0, classes, 7))
    for reduction in REDUCTIONS:
        got = anyloss.cross_entropy(logits, targets, label_smoothing=smoothing, reduction=reduction)
        want = losses.cross_entropy(logits, targets, label_smoothing=smoothing, reduction=reduction)
        _close(got, want, 2e-5, f"C={classes} s={smoothing} {reduction}")
    f = lambda x: anyloss.cross_entropy(x, targets, label_smoothing=smoothing, reduction="sum")  # noqa: E731
    g = mx.grad(f)(logits)
    with _native.portable():
        w = mx.grad(f)(logits)
    _close(g, w, 1e-5)
    # The gradient of the smoothed loss: softmax - (1 - s) one_hot - s / C.
    x = np.array(logits, np.float64)
    p = np.exp(_log_softmax(x))
    one_hot = np.eye(classes)[np.array(targets)]
    np.testing.assert_allclose(np.array(g), p - (1 - smoothing) * one_hot - smoothing / classes,
                               rtol=1e-5, atol=1e-6)


def test_special_values_match_portable(monkeypatch):
    """Infinite and NaN inputs, huge and tiny values, through both forms of
    exp (the power of two forced onto every size)."""
    inf, nan = math.inf, math.nan
    x = np.array([0.0, 1e-30, -1e-30, 20.0, -20.0, 88.5, -88.5, -100.0, 1e20, -1e20, inf, -inf, nan])
    t = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    for size in (1 << 30, 0):
        monkeypatch.setattr(fast, "FORMS_MIN_SIZE", size)
        fast._CACHE.clear()
        for name, arrays, kwargs in (
            ("binary_cross_entropy", [x, t], {}),
            ("log_cosh_loss", [x, t], {}),
            ("kl_div_loss", [np.array([[-1.0, -inf, 0.0, -2.0]]), np.array([[-inf, -inf, 0.0, -1e-30]])], {}),
            ("cross_entropy", [np.array([[30.0, 0.0, -inf, 1.0], [-inf, -inf, 0.0, 2.0]]), np.array([0, 3])], {}),
            ("cross_entropy", [np.array([[-inf, 0.0, 88.0, -100.0]]), np.array([[0.0, 0.5, 0.5, 0.0]])], {}),
            ("cosine_similarity_loss", [np.array([[1e20, 2e20], [1e-30, 0.0], [0.0, 0.0]]),
                                        np.array([[3e20, -1e20], [1e-30, 1e-30], [1.0, 2.0]])], {}),
            ("triplet_loss", [np.array([[0.0, 0.0]]), np.array([[0.0, 2e20]]), np.array([[1e20, 0.0]])],
             {"eps": 0.0}),
        ):
            arrays = [_mx(a) for a in arrays]
            got = _call(name, arrays, kwargs, "none")
            with _native.portable():
                want = _call(name, arrays, kwargs, "none")
            _close(got, want, 3e-6, f"{name} exp-size {size}")


def test_exp_by_pow2_is_mlx_exp():
    """The power of two agrees with MLX's exp to an ulp wherever that is a
    normal number, and keeps the finite and subnormal values it loses."""
    u = np.concatenate([np.linspace(-87.3, 88.0, 200_001), [0.0, -0.0, 1e-30, -1e-30]]).astype(np.float32)
    e, p = np.array(mx.exp(mx.array(u))), np.array(_formulas.exp_by_pow2(mx, mx.array(u)))
    np.testing.assert_array_less(np.abs(p.astype(np.float64) - e) / e, 1.5 * 2.0**-23)
    edges = mx.array(np.array([88.5, 88.7, -88.0, -100.0, -104.0, math.inf, -math.inf, math.nan], np.float32))
    got = np.array(_formulas.exp_by_pow2(mx, edges))
    want = np.exp(np.array(edges, np.float64))
    np.testing.assert_allclose(got[:4], want[:4], rtol=4e-6, atol=2e-45)  # -100: subnormal
    assert got[4] == 0.0 and got[5] == math.inf and got[6] == 0.0 and math.isnan(got[7])


def test_ordered_logaddexp3_is_two_logaddexp():
    """CTC's moves in a trace: the sorted form against float64 ``logaddexp``
    on every order of ties, ``-inf`` (one, two, all three) and gaps up to
    and beyond float32's exp range."""
    inf = math.inf
    values = [0.0, -1e-7, -1.5, -30.0, -90.0, -110.0, 3.0, -inf]
    grid = np.array(np.meshgrid(values, values, values)).reshape(3, -1).astype(np.float32)
    a, b, c = (mx.array(v) for v in grid)
    got = np.array(_formulas.logaddexp3_ordered(mx, a, b, c, lambda x: _formulas.exp_by_pow2(mx, x)))
    g64 = grid.astype(np.float64)
    want = np.logaddexp(g64[0], np.logaddexp(g64[1], g64[2]))
    assert np.array_equal(np.isneginf(got), np.isneginf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=2e-7, atol=2e-7)


def test_isfinite_by_subtraction():
    x = mx.array([0.0, -0.0, 1.0, -3e38, 1e-45, math.inf, -math.inf, math.nan])
    assert np.array(_formulas.isfinite_by_subtraction(mx, x)).tolist() == np.array(mx.isfinite(x)).tolist()
    i = mx.array([0, -5, 2**31 - 1], dtype=mx.int32)
    assert np.array(_formulas.isfinite_by_subtraction(mx, i)).all()


# ----------------------------------------------------------- transformations


def _scalar_calls(shape=(5, 6)):
    """A float32 call per loss (one variant each) and its float arguments."""
    rng = np.random.default_rng(7)
    for name in LOSSES:
        data, kwargs = make(name, shape, rng, "")
        arrays = [_mx(a) for a in data]
        yield name, arrays, kwargs, _floats(name, arrays)


@pytest.mark.parametrize(
    "name,arrays,kwargs,argnums",
    list(_scalar_calls()) + list(_scalar_calls((3, 512))),
    ids=[f"{n}-{s}" for s in ("5x6", "3x512") for n in LOSSES],
)
def test_vjp_and_jvp(name, arrays, kwargs, argnums):
    """``mx.vjp`` with a random cotangent against the portable code; ``mx.jvp``
    against reverse mode (``<grad, t>``), the portable code and central
    differences (of the float64 loss)."""
    rng = np.random.default_rng(3)

    def of(reduction, base=arrays):
        def f(*float_args):
            full = list(base)
            for i, a in zip(argnums, float_args):
                full[i] = a
            return _call(name, full, kwargs, reduction)

        return f

    primals = [arrays[i] for i in argnums]
    f = of("none")
    cotangent = mx.array(rng.standard_normal(f(*primals).shape).astype(np.float32))
    outs, vjps = mx.vjp(f, primals, [cotangent])
    with _native.portable():
        want_outs, want_vjps = mx.vjp(f, primals, [cotangent])
    _close(outs[0], want_outs[0], 3e-6, name, _terms(name, [np.array(a) for a in arrays], kwargs))
    for g, w in zip(vjps, want_vjps):
        _close(g, w, 1e-5, f"{name} vjp")

    g = of("sum")
    tangents = [mx.array(rng.standard_normal(a.shape).astype(np.float32)) for a in primals]
    _, forward = mx.jvp(g, primals, tangents)
    with _native.portable():
        _, want_forward = mx.jvp(g, primals, tangents)
    _, grads = _grads(g, list(range(len(primals))))(*primals)
    reverse = sum(float(mx.sum(gr * t)) for gr, t in zip(grads, tangents))
    assert float(forward[0]) == pytest.approx(reverse, rel=1e-5, abs=1e-5), name
    assert float(forward[0]) == pytest.approx(float(want_forward[0]), rel=1e-5, abs=1e-5), name
    # Central differences of the loss computed in float64: MLX evaluates exp
    # and log of float64 arrays to float32 accuracy, so losses with them take
    # a larger step; the others a tiny one (their kinks are not crossed).
    wide = [a.astype(mx.float64) if a.dtype == mx.float32 else a for a in arrays]
    g64 = of("sum", wide)
    h = 1e-3 if name in TRANSCENDENTAL else 1e-7
    with mx.stream(mx.cpu), _native.portable():
        plus = g64(*[wide[i] + h * t.astype(mx.float64) for i, t in zip(argnums, tangents)])
        minus = g64(*[wide[i] - h * t.astype(mx.float64) for i, t in zip(argnums, tangents)])
        finite_difference = (plus.item() - minus.item()) / (2 * h)
    assert float(forward[0]) == pytest.approx(finite_difference, rel=2e-3, abs=2e-3), name


@pytest.mark.parametrize("smoothing", (0.0, 0.2))
@pytest.mark.parametrize("shape", ((4, 7), (40, 64), (3, 1024)))
def test_cross_entropy_hessian_vector_product(shape, smoothing):
    """Forward over reverse: ``jvp(grad f)(x; v)`` is ``p v - p (p . v)`` per
    row, the Hessian of the softmax cross entropy (smoothing adds a linear
    term, so the Hessian is the same)."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape) * 2
    targets = mx.array(rng.integers(0, shape[1], shape[0]).astype(np.int32))
    v = rng.standard_normal(shape)

    def f(logits):
        return anyloss.cross_entropy(logits, targets, label_smoothing=smoothing, reduction="sum")

    _, (hv,) = mx.jvp(mx.grad(f), [_mx(x)], [_mx(v)])
    p = np.exp(_log_softmax(x))
    want = p * v - p * np.sum(p * v, axis=1, keepdims=True)
    np.testing.assert_allclose(np.array(hv), want, rtol=1e-4, atol=1e-5)
    with _native.portable():
        _, (portable_hv,) = mx.jvp(mx.grad(f), [_mx(x)], [_mx(v)])
    _close(hv, portable_hv, 1e-5)
    # reverse over reverse agrees
    rr = mx.grad(lambda z: mx.sum(mx.grad(f)(z) * _mx(v)))(_mx(x))
    np.testing.assert_allclose(np.array(rr), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,arrays,kwargs,argnums", list(_scalar_calls()), ids=LOSSES)
def test_vmap(name, arrays, kwargs, argnums):
    """``mx.vmap`` over a new leading axis is the loss of each slice."""
    rng = np.random.default_rng(5)
    stacks = []
    for a in arrays:
        if a.dtype == mx.int32:
            b = mx.array(rng.integers(0, arrays[0].shape[-1], (3,) + a.shape).astype(np.int32))
        elif name in ("hinge_loss", "margin_ranking_loss") and a is arrays[-1]:
            b = mx.array(np.where(rng.random((3,) + a.shape) < 0.5, -1.0, 1.0).astype(np.float32))
        elif name == "gaussian_nll_loss" and a is arrays[-1]:
            b = mx.array(rng.uniform(0.1, 2.0, (3,) + a.shape).astype(np.float32))
        else:
            b = mx.stack([a, a * 0.5 + 0.1, -a])
        stacks.append(b)
    for reduction in REDUCTIONS:
        f = lambda *a: _call(name, a, kwargs, reduction)  # noqa: E731
        got = mx.vmap(f)(*stacks)
        with _native.portable():
            want = mx.stack([f(*[s[k] for s in stacks]) for k in range(3)])
        _close(got, want, 3e-6, f"{name} {reduction}")
    # and the gradient of a vmapped loss
    total = lambda *a: mx.sum(mx.vmap(lambda *b: _call(name, b, kwargs, "mean"))(*a))  # noqa: E731
    _, grads = _grads(total, argnums)(*stacks)
    with _native.portable():
        _, want_grads = _grads(total, argnums)(*stacks)
    for g, w in zip(grads, want_grads):
        _close(g, w, 1e-5, name)


@pytest.mark.parametrize("name,arrays,kwargs,argnums", list(_scalar_calls()), ids=LOSSES)
def test_inside_compile(name, arrays, kwargs, argnums):
    """A compiled function calling the loss, and a compiled training step
    (value and gradient), give the eager results."""
    f = lambda *a: _call(name, a, kwargs, "mean")  # noqa: E731
    step = mx.compile(_grads(f, argnums))
    value, grads = step(*arrays)
    want_value, want_grads = _grads(f, argnums)(*arrays)
    _close(value, want_value, 3e-6, name)
    for g, w in zip(grads, want_grads):
        _close(g, w, 1e-5, name)
    compiled = mx.compile(lambda *a: _call(name, a, kwargs, "none"))
    _close(compiled(*arrays), _call(name, arrays, kwargs, "none"), 3e-6, name)


@pytest.mark.parametrize("width", (512,))
@pytest.mark.parametrize("name", LOSSES)
def test_shapeless_compile_across_batch_sizes(name, width):
    """``mx.compile(shapeless=True)`` traces once and stays right when the
    number of rows changes (the class or vector axis keeps its length; 512
    is reduced in blocks)."""
    rng = np.random.default_rng(9)
    kwargs = make(name, (3, width), rng, "")[1]
    compiled = mx.compile(lambda *a: _call(name, a, kwargs, "mean"), shapeless=True)
    for rows in (3, 5, 8):
        data = make(name, (rows, width), rng, "")[0]
        arrays = [_mx(a) for a in data]
        got = compiled(*arrays)
        with _native.portable():
            want = _call(name, arrays, kwargs, "mean")
        _close(got, want, 3e-6, f"{name} rows={rows}", _terms(name, data, kwargs))


# ------------------------------------------------------------------- tracing


class _Spy:
    """Counts the runs of the traced function (``computation`` as the
    compiled body calls it)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, *args):
        self.calls += 1
        return fast.evaluate(*args)


@pytest.fixture
def spy(monkeypatch):
    s = _Spy()
    monkeypatch.setattr(fast, "computation", s)
    return s


@pytest.mark.parametrize("name", LOSSES)
def test_repeated_calls_trace_once(name, spy):
    rng = np.random.default_rng(1)
    data, kwargs = make(name, (8, 16), rng, "")
    arrays = [_mx(a) for a in data]
    # warm-up: MLX's first compile in a process may trace twice
    first = _call(name, arrays, kwargs, "mean")
    mx.eval(_call(name, arrays, kwargs, "mean"))
    traced = spy.calls
    assert traced in (1, 2)
    for _ in range(5):
        again = _call(name, arrays, kwargs, "mean")
        mx.eval(again)
    assert spy.calls == traced, "a repeated call with the same shapes traced again"
    _close(again, first, 0.0)
    # new values, same shapes and dtypes: still no trace
    _call(name, [a * 1 for a in arrays], kwargs, "mean")
    assert spy.calls == traced
    # another shape traces once more, then is cached too
    other = [_mx(a) for a in make(name, (9, 16), rng, "")[0]]
    _call(name, other, kwargs, "mean")
    _call(name, other, kwargs, "mean")
    assert spy.calls == traced + 1
    # a float16 input is another signature
    _call(name, [a.astype(mx.float16) if a.dtype == mx.float32 else a for a in arrays], kwargs, "mean")
    assert spy.calls == traced + 2


def test_transformations_run_the_portable_ops(spy):
    """Under mx.grad the inputs are tracers: MLX runs the body itself each
    time (nothing is traced into the compile cache), with the same values."""
    x, y = mx.array([0.5, -1.0, 2.0]), mx.array([0.0, 1.0, 1.0])
    f = lambda a: anyloss.binary_cross_entropy(a, y)  # noqa: E731
    g1 = mx.grad(f)(x)
    g2 = mx.grad(f)(x)
    assert spy.calls == 2
    _close(g1, g2, 0.0)


def test_signatures_per_configuration_are_bounded(monkeypatch, spy):
    """Past MAX_SIGNATURES shapes a configuration's compiled function is
    replaced: the old traces are gone (a shape seen before traces again)."""
    monkeypatch.setattr(fast, "MAX_SIGNATURES", 4)
    arrays = [mx.zeros((n,)) for n in range(1, 8)]
    for a in arrays[:4]:
        anyloss.mse_loss(a, a)
    assert spy.calls == 4
    (kept,) = fast._CACHE.values()
    old = kept.function
    anyloss.mse_loss(arrays[0], arrays[0])
    assert spy.calls == 4  # still cached
    anyloss.mse_loss(arrays[4], arrays[4])  # the fifth signature: start afresh
    assert spy.calls == 5 and kept.function is not old and not kept.state.signatures
    anyloss.mse_loss(arrays[0], arrays[0])
    assert spy.calls == 6  # traced again: the old function's traces went with it
    assert len(kept.state.signatures) == 1


def test_configurations_are_bounded(monkeypatch):
    monkeypatch.setattr(fast, "MAX_CONFIGURATIONS", 3)
    x = mx.array([1.0, 2.0])
    for delta in (0.5, 1.0, 1.5, 2.0, 2.5):
        anyloss.huber_loss(x, x * 0, delta=delta)
    assert len(fast._CACHE) == 3
    # the most recently used are kept
    assert [key[1] for key in fast._CACHE] == [(1.5,), (2.0,), (2.5,)]
    anyloss.huber_loss(x, x * 0, delta=1.5)
    anyloss.huber_loss(x, x * 0, delta=3.0)
    assert [key[1] for key in fast._CACHE] == [(2.5,), (1.5,), (3.0,)]


# ---------------------------------------------------------- training options


def _training(name):
    """Arrays and options of a call with every training option of ``name``
    (class 2 is both a real class and the ignore_index), as MLX arrays."""
    rng = np.random.default_rng(zlib_seed("training", name))
    if name == "binary_cross_entropy":
        x, t = rng.standard_normal((6, 5)) * 3, rng.random((6, 5))
        return [_mx(x), _mx(t)], {"pos_weight": _mx(rng.uniform(0.2, 3.0, 5))}
    x = rng.standard_normal((8, 5)) * 2
    if name == "nll_loss":
        x = _log_softmax(x)
    y = rng.integers(0, 5, 8)
    y[[1, 4]] = 2
    options = {"class_weights": _mx(rng.uniform(0.2, 2.0, 5)), "ignore_index": 2}
    if name == "cross_entropy":
        options.update(label_smoothing=0.1, z_loss=1e-3, logit_softcap=4.0)
    return [_mx(x), mx.array(y.astype(np.int32))], options


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ("cross_entropy", "nll_loss", "binary_cross_entropy"))
def test_training_options_match_portable(name, reduction, spy):
    """Compiled (traced once for repeated calls) with the values and
    gradients of the portable formula."""
    arrays, options = _training(name)
    got = _call(name, arrays, options, reduction)
    _call(name, arrays, options, reduction)  # (MLX's first compile in a process may trace twice)
    traced = spy.calls
    _call(name, arrays, options, reduction)
    assert traced and spy.calls == traced
    f = lambda a: mx.sum(_call(name, [a, arrays[1]], options, reduction))  # noqa: E731
    value, grad = mx.value_and_grad(f)(arrays[0])
    with _native.portable():
        want = _call(name, arrays, options, reduction)
        want_value, want_grad = mx.value_and_grad(f)(arrays[0])
    _close(got, want, 3e-6, name)
    _close(value, want_value, 3e-6, name)
    _close(grad, want_grad, 3e-6, name)


@pytest.mark.parametrize("zero_infinity", (False, True))
def test_ctc_recursion_by_its_custom_function(zero_infinity):
    """ctc_loss's recursion as a custom function (``PARTS``): values,
    ``mx.vjp``, ``mx.jvp``, ``mx.vmap`` and a compiled gradient against the
    portable code, on frame and target lengths that vary, an empty target,
    a repeat and an infeasible row (inf or 0, gradient 0)."""
    rng = np.random.default_rng(7)
    x = mx.array(rng.standard_normal((4, 6, 5)).astype(np.float32))
    rest = (mx.array([[1, 2, 2], [3, 0, 0], [0, 0, 0], [4, 4, 1]]), mx.array([6, 4, 5, 2]), mx.array([3, 1, 0, 3]))
    f = lambda a, reduction="none": anyloss.ctc_loss(a, *rest, reduction=reduction, zero_infinity=zero_infinity)  # noqa: E731
    cotangent = mx.array(rng.standard_normal(4).astype(np.float32))
    tangent = mx.array(rng.standard_normal(x.shape).astype(np.float32))
    got = [f(x), *mx.vjp(f, [x], [cotangent])[1], *mx.jvp(f, [x], [tangent])[1],
           mx.vmap(f)(mx.stack([x, -x]))[1], mx.compile(mx.grad(lambda a: f(a, "mean")))(x)]
    with _native.portable():
        want = [f(x), *mx.vjp(f, [x], [cotangent])[1], *mx.jvp(f, [x], [tangent])[1], f(-x),
                mx.grad(lambda a: f(a, "mean"))(x)]
    assert np.array(got[0])[3] == (0.0 if zero_infinity else math.inf)
    assert np.all(np.array(got[1])[3] == 0)
    for g, w, what in zip(got, want, ("value", "vjp", "jvp", "vmap", "compiled grad")):
        np.testing.assert_allclose(np.array(g), np.array(w), rtol=2e-5, atol=1e-6, err_msg=what)


def test_js_div_runs_directly_by_its_slopes():
    """js_div_loss under mx.grad, mx.vjp and mx.jvp (``DIRECT``: a custom
    function differentiated by its slopes, an absent class included) and
    under mx.vmap, mx.compile and a Hessian-vector product: the portable
    code's values and derivatives."""
    rng = np.random.default_rng(9)
    logp = lambda a: a - np.log(np.exp(a).sum(-1, keepdims=True))  # noqa: E731
    x, t = (mx.array(logp(rng.standard_normal((5, 4))).astype(np.float32)) for _ in range(2))
    x = mx.where(mx.arange(4) == 3, -math.inf, x)  # a class absent from the inputs
    f = lambda a, b: anyloss.js_div_loss(a, b, reduction="none")  # noqa: E731
    total = lambda a, b: mx.sum(f(a, b) * mx.arange(1, 6))  # noqa: E731
    u, v = (mx.array(rng.standard_normal((5, 4)).astype(np.float32)) for _ in range(2))

    def derivatives():
        return [*mx.value_and_grad(total, argnums=(0, 1))(x, t)[1], mx.jvp(total, [x, t], [u, v])[1][0],
                mx.vmap(f)(mx.stack([x, t]), mx.stack([t, x])), mx.compile(mx.grad(total))(x, t),
                mx.jvp(mx.grad(total, argnums=1), [x, t], [u, v])[1][0]]

    got = derivatives()
    with _native.portable():
        want = derivatives()
    for g, w, what in zip(got, want, ("d/dx", "d/dt", "jvp", "vmap", "compiled grad", "hvp")):
        np.testing.assert_allclose(np.array(g), np.array(w), rtol=1e-5, atol=1e-6, err_msg=what)


@pytest.mark.parametrize("name", ("cosine_similarity_loss", "cosine_embedding_loss"))
def test_cosine_runs_directly_by_its_plain_form(name, monkeypatch):
    """Under mx.grad, mx.jvp and a Hessian-vector product the cosine losses
    take ``PLAIN``'s form where its condition holds (ordinary rows) and the
    formula where it fails (a zero, a huge and a tiny vector): the portable
    code's values and derivatives either way."""
    rng = np.random.default_rng(11)
    taken = []
    plain = fast.PLAIN[name]
    monkeypatch.setitem(fast.PLAIN, name, lambda *a: taken.append(plain(*a)[1].item()) or plain(*a))
    ordinary = rng.standard_normal((6, 5))
    hard = ordinary.copy()
    hard[1], hard[2], hard[3] = 0.0, 1e20, 1e-30
    y = mx.array(np.where(rng.random(6) < 0.5, 1, -1).astype(np.int32))
    b = mx.array(rng.standard_normal((6, 5)).astype(np.float32))
    extra = (y,) if name == "cosine_embedding_loss" else ()
    total = lambda a: mx.sum(getattr(anyloss, name)(a, b, *extra, reduction="none") * mx.arange(1, 7))  # noqa: E731
    u = mx.array(rng.standard_normal((6, 5)).astype(np.float32))
    for a in (ordinary, hard):
        a = mx.array(a.astype(np.float32))

        def derivatives():
            return [*mx.value_and_grad(total)(a), mx.jvp(total, [a], [u])[1][0],
                    mx.jvp(mx.grad(total), [a], [u])[1][0]]

        got = derivatives()
        with _native.portable():
            want = derivatives()
        for g, w, what in zip(got, want, ("value", "grad", "jvp", "hvp")):
            np.testing.assert_allclose(np.array(g), np.array(w), rtol=1e-5, atol=1e-6, err_msg=what)
    assert taken and all(taken[: len(taken) // 2]) and not any(taken[len(taken) // 2:])


def test_linear_cross_entropy_counts_the_derivatives_traced():
    """The chunked loss holds its gradients in the forward pass under one
    derivative, here of a model's two parameters (two runs of one copy), and
    hands the vjp to MLX's autodiff under two (a run of two copies)."""
    from anyloss._native.linear_mlx import _depth

    h, p1, p2 = mx.ones((4, 3)), mx.ones((3, 3)), mx.ones((3,))
    seen = []

    def f(p1, p2):
        x = mx.tanh(h @ p1) * p2
        seen.append(_depth([x]))
        return mx.sum(x)

    f(p1, p2)
    mx.grad(f, argnums=(0, 1))(p1, p2)
    mx.jvp(lambda a: mx.grad(f)(a, p2), [p1], [p1])
    mx.grad(lambda a: mx.grad(f)(a, p2).sum())(p1)
    assert seen == [0, 1, 2, 2]

"""Gradients through the caller's autodiff, and every loss under tracing.

torch autograd (``gradcheck`` in float64), ``jax.grad`` (against central
differences of the float64 references), ``mx.grad`` / ``mx.value_and_grad``
(against the same through ``mlx.nn.losses``), ``jax.jit`` of each loss and of
its gradient, ``mx.compile`` and ``torch.compile``.  The cases are those of
``test_libraries.py``: random inputs kept away from every kink.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import anyloss
from backends import to_lib, to_numpy
from test_libraries import CASE_IDS, CASES, Case, assert_close, reduce_ref

FIRST_OF_EACH = [c for i, c in enumerate(CASES) if c.loss not in {d.loss for d in CASES[:i]}]


def _split(case: Case):
    """The case's inputs, the names of the differentiable ones, and a random
    cotangent for the unreduced loss (to check whole Jacobians through a
    scalar)."""
    arrays = case.arrays()
    names = case.differentiable()
    loss_shape = case.expected(arrays, "none").shape
    cotangent = np.random.default_rng(1000 + case.seed).uniform(0.5, 1.5, size=loss_shape)
    return arrays, names, cotangent


# ----------------------------------------------------------------------------- torch


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_torch_gradcheck(case):
    import torch

    arrays, names, _ = _split(case)
    order = list(arrays)
    tensors = [
        torch.from_numpy(arrays[k].copy()).requires_grad_(k in names) for k in order
    ]
    for reduction in ("none", "mean"):

        def f(*xs, reduction=reduction):
            return case.func(**dict(zip(order, xs)), **case.params, reduction=reduction)

        assert torch.autograd.gradcheck(f, tuple(tensors), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("case", FIRST_OF_EACH, ids=[c.id for c in FIRST_OF_EACH])
def test_torch_backward_matches_numeric(case):
    """``loss.backward()`` in float32 gives the float64 numeric gradient (to float32)."""
    import torch

    arrays, names, cotangent = _split(case)
    tensors = {
        k: torch.from_numpy(v.astype(np.float32) if v.dtype.kind == "f" else v).requires_grad_(k in names)
        for k, v in arrays.items()
    }
    loss = case.func(**tensors, **case.params, reduction="none")
    (loss * torch.from_numpy(cotangent.astype(np.float32))).sum().backward()
    held = {k: (to_numpy(t).astype(np.float64) if k in names else arrays[k]) for k, t in tensors.items()}
    for name in names:
        want = numeric_grad(case, held, name, cotangent)
        assert_close(to_numpy(tensors[name].grad), want, "float32", factor=50)


# ------------------------------------------------------------------- central differences


def numeric_grad(case: Case, arrays: dict, name: str, cotangent, h: float = 1e-6) -> np.ndarray:
    """The gradient of ``sum(cotangent * loss)`` with respect to ``name``, by
    central differences of the float64 reference."""

    def objective(**kw):
        return float(np.sum(cotangent * case.reference(**kw, **case.params)))

    x = arrays[name].astype(np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += h
        down[idx] -= h
        grad[idx] = (objective(**{**arrays, name: up}) - objective(**{**arrays, name: down})) / (2 * h)
    return grad


# ------------------------------------------------------------------------------- jax


def _jax():
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_jax_grad_and_jit_of_grad(case):
    """``jax.grad`` gives the central differences of the reference, and
    ``jax.jit(jax.grad(...))`` gives the eager gradient."""
    jax = _jax()
    arrays, names, cotangent = _split(case)
    inputs = {k: to_lib("jax", v) for k, v in arrays.items()}
    ct = to_lib("jax", cotangent)

    def objective(*xs):
        kw = {**inputs, **dict(zip(names, xs))}
        return (case.func(**kw, **case.params, reduction="none") * ct).sum()

    argnums = tuple(range(len(names)))
    args = [inputs[k] for k in names]
    grads = jax.grad(objective, argnums=argnums)(*args)
    jit_grads = jax.jit(jax.grad(objective, argnums=argnums))(*args)
    for name, g, jg in zip(names, grads, jit_grads):
        assert g.dtype == jg.dtype == inputs[name].dtype
        np.testing.assert_allclose(
            np.asarray(g), numeric_grad(case, arrays, name, cotangent), rtol=1e-6, atol=1e-7
        )
        assert_close(np.asarray(jg), np.asarray(g), "float64")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_jax_jit(case):
    """``jax.jit`` of the loss gives the eager values."""
    jax = _jax()
    arrays = case.arrays()
    order = list(arrays)
    xs = [to_lib("jax", arrays[k]) for k in order]

    def loss(*a):
        return case.func(**dict(zip(order, a)), **case.params, reduction="none")

    eager = loss(*xs)
    jitted = jax.jit(loss)(*xs)
    assert jitted.dtype == eager.dtype and jitted.shape == eager.shape
    assert_close(np.asarray(jitted), np.asarray(eager), "float64")
    assert_close(np.asarray(jitted), case.expected(arrays, "none"), "float64")


@pytest.mark.parametrize("case", FIRST_OF_EACH, ids=[c.id for c in FIRST_OF_EACH])
def test_jax_jit_static_argnames(case):
    """Jitting the loss itself, its scalar parameters and reduction static."""
    jax = _jax()
    arrays = case.arrays()
    inputs = {k: to_lib("jax", v) for k, v in arrays.items()}
    static = (*case.params, "reduction")
    jitted = jax.jit(case.func, static_argnames=static)
    # float32 inputs, so that both precisions are traced
    inputs32 = {k: (x.astype("float32") if arrays[k].dtype.kind == "f" else x) for k, x in inputs.items()}
    held = {k: (np.asarray(x, dtype=np.float64) if arrays[k].dtype.kind == "f" else arrays[k]) for k, x in inputs32.items()}
    got = jitted(**inputs32, **case.params, reduction="sum")
    assert got.dtype == np.float32 and got.shape == ()
    assert_close(np.asarray(got, dtype=np.float64), case.expected(held, "sum"), "float32")


def test_jax_transforms_skip_value_checks():
    """Under vmap, jit and eval_shape the class indices are tracers: their
    range is not checked (it cannot be), and nothing reads their values."""
    jax = _jax()
    import jax.numpy as jnp

    logits = jnp.asarray(np.random.default_rng(3).normal(size=(4, 6, 5)))
    targets = jnp.asarray(np.random.default_rng(4).integers(0, 5, size=(4, 6)))
    per_batch = jax.vmap(lambda x, t: anyloss.cross_entropy(x, t, reduction="mean"))(logits, targets)
    want = [reduce_ref(_ce_ref(np.asarray(logits[i]), np.asarray(targets[i])), "mean") for i in range(4)]
    np.testing.assert_allclose(np.asarray(per_batch), want, rtol=1e-12)
    shape = jax.eval_shape(lambda x, t: anyloss.nll_loss(x, t), logits, targets)
    assert shape.shape == (4, 6) and shape.dtype == logits.dtype
    probs = jax.nn.sigmoid(logits)
    out = jax.jit(lambda p: anyloss.binary_cross_entropy(p, jnp.ones_like(p), with_logits=False))(probs)
    np.testing.assert_allclose(float(out), float(np.mean(-np.log(np.asarray(probs)))), rtol=1e-12)


def _ce_ref(x, t):
    from test_libraries import ref_cross_entropy

    return ref_cross_entropy(x, t)


# ------------------------------------------------------------------------------- mlx


def _mlx_supported(case: Case) -> bool:
    # mlx.nn.losses.smooth_l1_loss with beta=0 divides by zero in the unused branch,
    # which makes MLX's own gradient NaN; that case is checked against the reference.
    return not (case.loss == "smooth_l1_loss" and case.params.get("beta") == 0)


def _as_tuple(grads):
    """MLX returns one array, not a tuple, for a single argnum."""
    import mlx.core as mx

    return (grads,) if isinstance(grads, mx.array) else tuple(grads)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_mlx_grad_matches_mlx_nn_losses(case):
    import mlx.core as mx
    import mlx.nn.losses as mlx_losses

    arrays, names, cotangent = _split(case)
    inputs = {k: mx.array(v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in arrays.items()}
    argnums = list(range(len(names)))

    def through(func):
        def objective(*xs):
            kw = {**inputs, **dict(zip(names, xs))}
            return func(**kw, **case.params, reduction="mean")

        return mx.value_and_grad(objective, argnums=argnums)

    ours_value, ours = through(case.func)(*(inputs[k] for k in names))
    grad_only = mx.grad(lambda *xs: case.func(**{**inputs, **dict(zip(names, xs))}, **case.params,
                                               reduction="mean"), argnums=argnums)(*(inputs[k] for k in names))
    ours, grad_only = _as_tuple(ours), _as_tuple(grad_only)
    held = {k: (np.array(x).astype(np.float64) if k in names else arrays[k]) for k, x in inputs.items()}
    assert_close(np.array(ours_value), case.expected(held, "mean"), "float32", factor=4)
    n = cotangent.size
    for name, g, g2 in zip(names, ours, grad_only):
        assert g.dtype == mx.float32 and tuple(g.shape) == arrays[name].shape
        np.testing.assert_array_equal(np.array(g), np.array(g2))
        want = numeric_grad(case, held, name, np.full(cotangent.shape, 1.0 / n))
        assert_close(np.array(g), want, "float32", factor=50)
    if _mlx_supported(case):
        theirs_value, theirs = through(getattr(mlx_losses, case.loss))(*(inputs[k] for k in names))
        theirs = _as_tuple(theirs)
        assert_close(np.array(ours_value), np.array(theirs_value), "float32", factor=4)
        for g, t in zip(ours, theirs):
            assert_close(np.array(g), np.array(t), "float32", factor=8)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_mlx_compile(case):
    import mlx.core as mx

    arrays, names, _ = _split(case)
    order = list(arrays)
    xs = [mx.array(arrays[k].astype(np.float32) if arrays[k].dtype.kind == "f" else arrays[k]) for k in order]

    def loss(*a):
        return case.func(**dict(zip(order, a)), **case.params, reduction="none")

    compiled = mx.compile(loss)
    got, eager = compiled(*xs), loss(*xs)
    assert got.dtype == eager.dtype == mx.float32 and got.shape == eager.shape
    assert_close(np.array(got), np.array(eager), "float32")
    assert_close(np.array(got), case.expected(arrays, "none"), "float32", factor=20)

    argnums = [order.index(k) for k in names]
    grad = mx.grad(lambda *a: case.func(**dict(zip(order, a)), **case.params, reduction="sum"), argnums=argnums)
    for g, e in zip(_as_tuple(mx.compile(grad)(*xs)), _as_tuple(grad(*xs))):
        assert_close(np.array(g), np.array(e), "float32")


# ----------------------------------------------------------------------- torch.compile

# torch.compile with the inductor backend takes many seconds per loss on a
# small CPU; every loss is compiled with "aot_eager" (Dynamo's full-graph
# capture and AOTAutograd's joint forward/backward graph, which is where a
# read of array values would break), and the common ones with inductor too.
TORCH_COMPILED = [(loss, "aot_eager") for loss in sorted(anyloss.__all__)] + [
    ("cross_entropy", "inductor"),
    ("binary_cross_entropy", "inductor"),
    ("mse_loss", "inductor"),
]


@pytest.mark.parametrize("loss, backend", TORCH_COMPILED)
def test_torch_compile(loss, backend):
    import torch

    cases = [c for c in CASES if c.loss == loss][:2]
    for case in cases:
        torch._dynamo.reset()  # a fresh, static-shape compile per case
        arrays, names, _ = _split(case)
        order = list(arrays)

        def f(*xs, case=case, order=order):
            return case.func(**dict(zip(order, xs)), **case.params, reduction="mean")

        with warnings.catch_warnings():
            # Dynamo notes (harmlessly) that it looks through array-api-compat's lru_caches.
            warnings.simplefilter("ignore", UserWarning)
            compiled = torch.compile(f, backend=backend, fullgraph=True)
            eager_in = [torch.from_numpy(arrays[k].copy()).requires_grad_(k in names) for k in order]
            comp_in = [torch.from_numpy(arrays[k].copy()).requires_grad_(k in names) for k in order]
            got = compiled(*comp_in)
            got.backward()
        want = f(*eager_in)
        want.backward()
        assert got.dtype == want.dtype == torch.float64
        assert_close(got.item(), case.expected(arrays, "mean"), "float64")
        for a, b, k in zip(comp_in, eager_in, order):
            if k in names:
                assert_close(to_numpy(a.grad), to_numpy(b.grad), "float64")


@pytest.mark.parametrize("loss", ["cross_entropy", "nll_loss"])
def test_torch_compile_batch_sizes_do_not_recompile_forever(loss):
    """Class-index losses compiled with fullgraph=True follow new batch sizes
    with one dynamic recompile, never one per size."""
    import torch

    torch._dynamo.reset()
    fn = getattr(anyloss, loss)
    with warnings.catch_warnings(), torch._dynamo.config.patch(recompile_limit=2):
        warnings.simplefilter("ignore", UserWarning)
        compiled = torch.compile(lambda x, t: fn(x, t, reduction="mean"), backend="aot_eager", fullgraph=True)
        for n in (3, 4, 5, 6, 7):
            x = torch.log_softmax(torch.randn(n, 5, dtype=torch.float64), 1)
            t = torch.arange(n) % 5
            assert_close(compiled(x, t).item(), float(fn(x, t, reduction="mean")), "float64")


@pytest.mark.parametrize(
    ("loss", "params", "arity"),
    [
        ("smooth_l1_loss", {"beta": 0.5}, 2),
        ("huber_loss", {"delta": 0.5}, 2),
        ("gaussian_nll_loss", {"eps": 1e-3}, 3),
        ("margin_ranking_loss", {"margin": 0.2}, 3),
        ("triplet_loss", {"margin": 0.5}, 3),
        ("cosine_similarity_loss", {"eps": 1e-6}, 2),
    ],
)
def test_torch_compile_dynamic_float_parameters(loss, params, arity):
    """With dynamic=True torch.compile passes float parameters as symbolic
    floats; the parameter checks must trace."""
    import torch

    torch._dynamo.reset()
    fn = getattr(anyloss, loss)
    arrays = [torch.rand(4, 3, dtype=torch.float64) + 0.1 for _ in range(arity)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        compiled = torch.compile(lambda *a: fn(*a, **params), backend="aot_eager", fullgraph=True, dynamic=True)
        got = compiled(*arrays)
    np.testing.assert_allclose(to_numpy(got), to_numpy(fn(*arrays, **params)), rtol=1e-12)


def test_torch_func_transforms_skip_value_checks():
    """``torch.func.grad`` and ``torch.func.vmap`` wrap their tensors; no value
    check may read them (vmap would refuse)."""
    import torch

    rng = np.random.default_rng(5)
    logits = torch.from_numpy(rng.normal(size=(3, 4, 5)))
    targets = torch.from_numpy(rng.integers(0, 5, size=(3, 4)))
    per_batch = torch.func.vmap(lambda x, t: anyloss.cross_entropy(x, t, reduction="sum"))(logits, targets)
    from test_libraries import ref_cross_entropy

    want = [np.sum(ref_cross_entropy(logits[i].numpy(), targets[i].numpy())) for i in range(3)]
    np.testing.assert_allclose(per_batch.numpy(), want, rtol=1e-12)
    grad = torch.func.grad(lambda x: anyloss.nll_loss(x, targets[0], reduction="sum"))(logits[0])
    want = np.zeros((4, 5))
    want[np.arange(4), targets[0].numpy()] = -1.0
    np.testing.assert_array_equal(grad.numpy(), want)
    probs = torch.sigmoid(logits)
    per_batch = torch.func.vmap(
        lambda p: anyloss.binary_cross_entropy(p, torch.ones_like(p), with_logits=False)
    )(probs)
    np.testing.assert_allclose(per_batch.numpy(), (-np.log(probs.numpy())).mean(axis=(1, 2)), rtol=1e-12)

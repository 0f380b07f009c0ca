"""linear_cross_entropy: values against a float64 reference of the naive
composition on every library; gradients against each library's own naive
logits + cross entropy; chunk and batch invariance; errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import anyloss
from anyloss import _native

from backends import LIBRARIES, to_lib, to_numpy

N, D, V = 29, 6, 11
OPTIONS = [
    {},
    {"ignore_index": 2, "class_weights": True, "z_loss": 1e-2, "logit_softcap": 3.0,
     "label_smoothing": 0.1},
    {"ignore_index": 2, "class_weights": True},  # torch's in-place gradient
]


def _data(seed=0, n=N):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, D)).astype(np.float32)
    w = rng.standard_normal((V, D)).astype(np.float32)
    b = rng.standard_normal(V).astype(np.float32)
    t = rng.integers(0, V, n)
    t[:4] = 2
    cw = rng.uniform(0.5, 2.0, V).astype(np.float32)
    return x, w, b, t, cw


def reference(x, w, b, t, cw=None, ignore_index=None, label_smoothing=0.0, z_loss=0.0,
              logit_softcap=None, reduction="mean"):
    """The naive composition in float64, from PyTorch's formula for class
    weights and label smoothing, plus z-loss and soft-capping."""
    z = np.asarray(x, np.float64) @ np.asarray(w, np.float64).T + np.asarray(b, np.float64)
    if logit_softcap is not None:
        z = logit_softcap * np.tanh(z / logit_softcap)
    lse = np.log(np.sum(np.exp(z - z.max(1, keepdims=True)), 1)) + z.max(1)
    keep = np.ones(len(t), bool) if ignore_index is None else t != ignore_index
    y = np.where(keep, t, 0)
    c = np.ones(V) if cw is None else np.asarray(cw, np.float64)
    nll = lse - z[np.arange(len(t)), y]
    smooth = np.sum(c * (lse[:, None] - z), 1) / V
    loss = (1 - label_smoothing) * c[y] * nll + label_smoothing * smooth + c[y] * z_loss * lse**2
    loss = np.where(keep, loss, 0.0)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if cw is None and ignore_index is None:
        return loss.mean()
    total = np.sum(np.where(keep, c[y], 0.0))
    return loss.sum() / total if total else 0.0


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("options", [0, 1])
def test_values_equal_the_naive_composition(library, options):
    x, w, b, t, cw = _data()
    kw = dict(OPTIONS[options])
    cw = cw if kw.pop("class_weights", False) else None
    for reduction in ("none", "mean", "sum"):
        got = anyloss.linear_cross_entropy(
            to_lib(library, x), to_lib(library, w), to_lib(library, t), to_lib(library, b),
            class_weights=None if cw is None else to_lib(library, cw), reduction=reduction,
            chunk_size=8, **kw,
        )
        want = reference(x, w, b, t, cw, reduction=reduction, **kw)
        np.testing.assert_allclose(to_numpy(got), want, rtol=2e-5, atol=2e-5)


def _naive_grads(library, x, w, b, t, cw, g, reduction, kw, fused):
    """Loss and gradients for inputs, weight, bias of the fused loss or of
    the library's own logits + cross_entropy, under upstream gradient ``g``."""
    def loss(xp_x, xp_w, xp_b, xp_t, xp_cw):
        if fused:
            return anyloss.linear_cross_entropy(xp_x, xp_w, xp_t, xp_b, class_weights=xp_cw,
                                                reduction=reduction, chunk_size=7, **kw)
        with _native.portable():
            return anyloss.cross_entropy(xp_x @ xp_w.T + xp_b, xp_t, reduction=reduction,
                                         class_weights=xp_cw, **kw)

    lib_t = to_lib(library, t)
    lib_cw = None if cw is None else to_lib(library, cw)
    if library == "torch":
        import torch

        args = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
        out = loss(*args, lib_t, lib_cw)
        grads = torch.autograd.grad(out, args, torch.tensor(g).reshape(out.shape))
        return [to_numpy(a) for a in (out, *grads)]
    if library == "jax":
        import jax

        out, vjp = jax.vjp(lambda *a: loss(*a, lib_t, lib_cw), *(to_lib(library, a) for a in (x, w, b)))
        return [to_numpy(a) for a in (out, *vjp(to_lib(library, g).reshape(out.shape)))]
    import mlx.core as mx

    (out,), grads = mx.vjp(lambda *a: loss(*a, lib_t, lib_cw), [mx.array(a) for a in (x, w, b)],
                           [mx.array(g).reshape(() if reduction != "none" else (len(t),))])
    return [to_numpy(a) for a in (out, *grads)]


@pytest.mark.parametrize("library", ["torch", "jax", "mlx"])
@pytest.mark.parametrize("reduction, options", [("none", 1), ("mean", 1), ("sum", 0), ("none", 2)])
def test_gradients_equal_the_naive_composition(library, reduction, options):
    """Under a non-uniform upstream gradient for 'none' (recomputed per chunk)."""
    x, w, b, t, cw = _data(1)
    kw = dict(OPTIONS[options])
    cw = cw if kw.pop("class_weights", False) else None
    rng = np.random.default_rng(2)
    g = rng.standard_normal(N if reduction == "none" else ()).astype(np.float32)
    got = _naive_grads(library, x, w, b, t, cw, g, reduction, kw, fused=True)
    want = _naive_grads(library, x, w, b, t, cw, g, reduction, kw, fused=False)
    for a, e in zip(got, want):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-5)


def _forward_mode(library, x, w, b, t, cw, reduction, kw, fused):
    """The jvp in (inputs, weight, bias) and the Hessian-vector product in
    the inputs of the fused loss or of the naive composition: forward-mode
    AD, and forward over reverse (MLX: reverse over reverse too)."""
    def loss(xp_x, xp_w, xp_b):
        t_, cw_ = to_lib(library, t), None if cw is None else to_lib(library, cw)
        if fused:
            out = anyloss.linear_cross_entropy(xp_x, xp_w, t_, xp_b, class_weights=cw_,
                                               reduction=reduction, chunk_size=7, **kw)
        else:
            with _native.portable():
                out = anyloss.cross_entropy(xp_x @ xp_w.T + xp_b, t_, reduction=reduction,
                                            class_weights=cw_, **kw)
        return out.sum()

    rng = np.random.default_rng(3)
    tangents = [rng.standard_normal(a.shape).astype(np.float32) for a in (x, w, b)]
    primals = [to_lib(library, a) for a in (x, w, b)]
    tangents = [to_lib(library, a) for a in tangents]
    if library == "torch":
        from torch import func

        jvp = func.jvp(loss, tuple(primals), tuple(tangents))[1]
        grad = lambda a: func.grad(lambda a: loss(a, *primals[1:]))(a)
        return [to_numpy(jvp), to_numpy(func.jvp(grad, (primals[0],), (tangents[0],))[1])]
    import mlx.core as mx

    jvp = mx.jvp(loss, primals, tangents)[1][0]
    grad = mx.grad(lambda a: loss(a, *primals[1:]))
    hvp = mx.jvp(grad, [primals[0]], [tangents[0]])[1][0]
    reverse = mx.grad(lambda a: (grad(a) * tangents[0]).sum())(primals[0])
    return [to_numpy(a) for a in (jvp, hvp, reverse)]


@pytest.mark.parametrize("library", ["torch", "mlx"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_forward_mode_and_second_derivatives_equal_the_naive_composition(library, reduction):
    """Through the chunked loss's own derivatives ('mean': the gradients held
    by the forward pass; 'none': recomputed), which must hand the tangents on."""
    x, w, b, t, cw = _data(4)
    kw = dict(OPTIONS[2])
    cw = cw if kw.pop("class_weights", False) else None
    got = _forward_mode(library, x, w, b, t, cw, reduction, kw, fused=True)
    want = _forward_mode(library, x, w, b, t, cw, reduction, kw, fused=False)
    for a, e in zip(got, want):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-5)


def test_jax_under_jit_grad_and_vmap():
    import jax
    import jax.numpy as jnp

    x, w, b, t, cw = _data(3)
    xs, ts = np.stack([x, x[::-1]]), np.stack([t, t[::-1]])

    def f(x, t):
        return anyloss.linear_cross_entropy(x, jnp.asarray(w), t, jnp.asarray(b), chunk_size=5)

    got = jax.jit(jax.vmap(jax.value_and_grad(f)))(jnp.asarray(xs), jnp.asarray(ts))
    with _native.portable():
        want = jax.vmap(jax.value_and_grad(lambda x, t: anyloss.cross_entropy(
            x @ jnp.asarray(w).T + jnp.asarray(b), t, reduction="mean")))(jnp.asarray(xs), jnp.asarray(ts))
    for a, e in zip(got, want):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_torch_compile_equals_the_naive_composition(reduction):
    """Under torch.compile the chunk loop runs eagerly (a graph break): the
    same values and gradients, 'none' under a non-uniform upstream gradient."""
    import torch

    x, w, b, t, cw = _data(7)
    kw = {"z_loss": 1e-2, "ignore_index": 2}
    g = np.random.default_rng(8).standard_normal(N if reduction == "none" else ()).astype(np.float32)
    want = _naive_grads("torch", x, w, b, t, None, g, reduction, kw, fused=False)
    torch._dynamo.reset()
    args = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Dynamo's notes on lru_caches it looks through
        compiled = torch.compile(lambda x, w, b: anyloss.linear_cross_entropy(
            x, w, torch.tensor(t), b, reduction=reduction, chunk_size=8, **kw), backend="aot_eager")
        out = compiled(*args)
    grads = torch.autograd.grad(out, args, torch.tensor(g).reshape(out.shape))
    for a, e in zip([out, *grads], want):
        np.testing.assert_allclose(to_numpy(a), e, rtol=1e-4, atol=1e-5)


def test_torch_retained_graph_gives_the_gradient_twice():
    """The forward's gradients of a mean are handed over at the first
    backward; a second one through the retained graph recomputes them."""
    import torch

    x, w, b, t, cw = _data(9)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    loss = anyloss.linear_cross_entropy(xt, wt, torch.tensor(t), torch.tensor(b), chunk_size=8)
    first = torch.autograd.grad(loss, (xt, wt), retain_graph=True)
    second = torch.autograd.grad(loss, (xt, wt), torch.tensor(3.0))
    for a, e in zip(second, first):
        np.testing.assert_allclose(a.numpy(), 3 * e.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("chunk", [1, 4, 29, 1000])
def test_chunk_size_and_batch_invariance(chunk):
    x, w, b, t, cw = _data(4)
    full = anyloss.linear_cross_entropy(x, w, t, b, reduction="none", chunk_size=chunk)
    np.testing.assert_allclose(full, reference(x, w, b, t, reduction="none"), rtol=2e-5, atol=2e-5)
    # a token's loss does not depend on the batch it is in, nor the batch's shape
    part = anyloss.linear_cross_entropy(x[3:10], w, t[3:10], b, reduction="none", chunk_size=chunk)
    np.testing.assert_allclose(part, full[3:10], rtol=1e-6, atol=1e-6)
    shaped = anyloss.linear_cross_entropy(x[:28].reshape(4, 7, D), w, t[:28].reshape(4, 7), b,
                                          reduction="none", chunk_size=chunk)
    np.testing.assert_allclose(shaped.reshape(-1), full[:28], rtol=1e-6, atol=1e-6)


def test_all_ignored_is_zero_with_a_connected_zero_gradient():
    import torch

    x, w, b, t, cw = _data(5)
    xt = torch.tensor(x, requires_grad=True)
    loss = anyloss.linear_cross_entropy(xt, torch.tensor(w), torch.full((N,), -100),
                                        ignore_index=-100)
    (grad,) = torch.autograd.grad(loss, xt)
    assert loss.item() == 0.0 and torch.count_nonzero(grad) == 0


@pytest.mark.parametrize("library", ["torch", "jax", "mlx"])
def test_half_precision_accumulates_in_float32(library):
    x, w, b, t, cw = _data(6, n=64)
    if library == "torch":
        import torch

        half = torch.bfloat16
        xh, wh = (torch.tensor(a).to(half).requires_grad_(True) for a in (x, w))
        loss = anyloss.linear_cross_entropy(xh, wh, torch.tensor(t), chunk_size=16)
        loss.backward()
        assert loss.dtype == half and xh.grad.dtype == half and wh.grad.dtype == half
        x16, w16 = (a.detach().float().numpy() for a in (xh, wh))
        value = loss.float().item()
    elif library == "jax":
        import jax.numpy as jnp

        xh, wh = jnp.asarray(x, jnp.bfloat16), jnp.asarray(w, jnp.bfloat16)
        loss = anyloss.linear_cross_entropy(xh, wh, jnp.asarray(t), chunk_size=16)
        assert loss.dtype == jnp.bfloat16
        x16, w16, value = np.asarray(xh, np.float32), np.asarray(wh, np.float32), float(loss)
    else:
        import mlx.core as mx

        xh, wh = mx.array(x).astype(mx.float16), mx.array(w).astype(mx.float16)
        loss = anyloss.linear_cross_entropy(xh, wh, mx.array(t), chunk_size=16)
        assert loss.dtype == mx.float16
        x16, w16 = (np.array(a.astype(mx.float32)) for a in (xh, wh))
        value = loss.astype(mx.float32).item()
    want = reference(x16, w16, np.zeros(V), t)
    np.testing.assert_allclose(value, want, rtol=1e-2)


@pytest.mark.parametrize(
    "change, error, match",
    [
        ({"w": np.zeros((V, D + 1), np.float32)}, ValueError, r"weight has shape \(11, 7\)"),
        ({"t": np.zeros(N + 1, np.int64)}, ValueError, r"targets has shape \(30,\)"),
        ({"b": np.zeros(V + 1, np.float32)}, ValueError, r"bias has shape \(12,\)"),
        ({"t": np.full(N, float(V), np.float32)}, TypeError, "integer dtype"),
        ({"t": np.full(N, V)}, ValueError, "expected 0 <= index < 11"),
        ({"chunk_size": 0}, ValueError, "chunk_size must be a positive int"),
        ({"chunk_size": 2.5}, ValueError, "chunk_size must be a positive int"),
        ({"x": np.zeros((N, D), np.int64)}, TypeError, "inputs must have a real floating dtype"),
        ({"logit_softcap": 0.0}, ValueError, "logit_softcap"),
        ({"class_weights": np.ones(V + 1, np.float32)}, ValueError, "class_weights has shape"),
    ],
)
def test_bad_input_raises_a_clear_error(change, error, match):
    x, w, b, t, cw = _data()
    args = {"x": x, "w": w, "t": t, "b": b}
    kw = {k: v for k, v in change.items() if k not in args}
    args.update({k: v for k, v in change.items() if k in args})
    with pytest.raises(error, match=match):
        anyloss.linear_cross_entropy(args["x"], args["w"], args["t"], args["b"], **kw)

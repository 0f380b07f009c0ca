"""The PyTorch fast paths of smooth_l1, log_cosh, gaussian_nll, hinge,
margin_ranking, kl_div, triplet and nll against the portable code.

Each test computes a loss with the fast paths on and inside
``_native.portable()`` on the same seeded inputs (special values included)
and asserts equal values and gradients (first order with
``torch.autograd.grad`` for every differentiable input; second order through
Hessian-vector products and ``gradgradcheck``).  The portable code itself is
tested against independent references elsewhere.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

import anyloss
from anyloss import _native
from anyloss._native import numpy as native_numpy
from anyloss._native import torch as native_torch

REDUCTIONS = ("none", "mean", "sum")
DTYPES = (np.float32, np.float64)
RTOL = {np.float32: 4e-6, np.float64: 1e-13}


def tensor(a, grad=False):
    return torch.from_numpy(np.array(a, copy=True)).requires_grad_(grad)


def run(fast, fn, arrays, grad_mask, kwargs, upstream_seed=0):
    """The loss and the gradients of ``sum(loss * w)`` (random ``w``) with
    respect to the inputs flagged in ``grad_mask``."""
    leaves = [tensor(a, g) for a, g in zip(arrays, grad_mask)]
    with contextlib.nullcontext() if fast else _native.portable():
        loss = fn(*leaves, **kwargs)
    if not any(grad_mask):
        return loss, [], None
    w = np.random.default_rng(upstream_seed).uniform(0.5, 2.0, tuple(loss.shape))
    total = (loss * torch.from_numpy(w.astype(np.float64)).to(loss.dtype)).sum()
    wanted = [leaf for leaf, g in zip(leaves, grad_mask) if g]
    return loss, list(torch.autograd.grad(total, wanted)), loss.grad_fn


def graph_nodes(node, depth=4):
    """The names of the autograd nodes up to ``depth`` steps from ``node``."""
    if node is None or depth == 0:
        return ""
    return type(node).__name__ + " " + " ".join(graph_nodes(f[0], depth - 1) for f in node.next_functions)


def check(fn, arrays, kwargs, dtype, grad_mask=None, sums=False, atol=0.0, grad_atol=0.0, fast_fn=None):
    """Fast and portable agree on the value without autograd and on value and
    gradients with it; ``fast_fn``: the autograd node the fast path must
    produce (a name fragment), so that a fallback cannot pass silently."""
    rtol = RTOL[dtype] * (10 if sums else 1)
    with torch.no_grad():
        fast = run(True, fn, arrays, [False] * len(arrays), kwargs)[0]
        slow = run(False, fn, arrays, [False] * len(arrays), kwargs)[0]
    assert fast.dtype == slow.dtype and fast.shape == slow.shape
    np.testing.assert_allclose(fast.float().numpy(), slow.float().numpy(), rtol=rtol, atol=atol)
    grad_mask = grad_mask or [True] * len(arrays)
    fast, fast_grads, node = run(True, fn, arrays, grad_mask, kwargs)
    slow, slow_grads, _ = run(False, fn, arrays, grad_mask, kwargs)
    if fast_fn is not None:
        assert fast_fn in graph_nodes(node), graph_nodes(node)
    assert fast.dtype == slow.dtype and fast.shape == slow.shape
    np.testing.assert_allclose(fast.detach().float().numpy(), slow.detach().float().numpy(), rtol=rtol, atol=atol)
    for a, b in zip(fast_grads, slow_grads):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a.float().numpy(), b.float().numpy(), rtol=rtol, atol=grad_atol)


def hvp(fast, fn, arrays, kwargs, seed=3):
    """Gradient and Hessian-vector products of ``fn`` (float64 inputs)."""
    leaves = [tensor(a, True) for a in arrays]
    with contextlib.nullcontext() if fast else _native.portable():
        loss = fn(*leaves, **kwargs)
    total = loss.sum() if loss.ndim else loss
    grads = torch.autograd.grad(total, leaves, create_graph=True)
    rng = np.random.default_rng(seed)
    vs = [torch.from_numpy(rng.standard_normal(a.shape)) for a in arrays]
    product = sum((g * v).sum() for g, v in zip(grads, vs))
    if not product.requires_grad:  # gradients constant in the inputs
        second = [None] * len(leaves)
    else:
        second = torch.autograd.grad(product, leaves, allow_unused=True)
    return [g.detach().numpy() for g in grads] + [
        np.zeros(a.shape) if h is None else h.numpy() for a, h in zip(arrays, second)
    ]


def check_second_order(fn, arrays, kwargs, rtol=1e-10, atol=1e-12, smooth_arrays=None):
    """Equal gradients and Hessian-vector products on ``arrays``; and
    ``gradgradcheck`` (against numerical derivatives) on ``smooth_arrays``
    (default ``arrays``): inputs away from kinks."""
    for a, b in zip(hvp(True, fn, arrays, kwargs), hvp(False, fn, arrays, kwargs)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
    leaves = tuple(tensor(a, True) for a in (arrays if smooth_arrays is None else smooth_arrays))
    assert torch.autograd.gradgradcheck(lambda *xs: fn(*xs, **kwargs), leaves)


# -------------------------------------------------------------- elementwise losses


def pair(seed, shape, dtype, scale=2.0):
    rng = np.random.default_rng(seed)
    return (
        (rng.standard_normal(shape) * scale).astype(dtype),
        (rng.standard_normal(shape) * scale).astype(dtype),
    )


def signs(seed, shape, dtype):
    return np.where(np.random.default_rng(seed).random(shape) < 0.5, -1.0, 1.0).astype(dtype)


def elementwise_case(name, seed, shape, dtype):
    """(function, arrays, kwargs) for a loss, with special values placed in
    the first entries: infinities, nan, exact ties of the hinge, errors of
    exactly beta, zero errors, huge errors."""
    x, y = pair(seed, shape, dtype)
    flat_x, flat_y = x.reshape(-1), y.reshape(-1)
    if name == "log_cosh_loss":
        flat_x[:8] = [np.inf, -np.inf, np.inf, np.nan, 0.0, 1.0, 300.0, 1e-4]
        flat_y[:8] = [0.0, 5.0, np.inf, 1.0, 0.0, 0.0, -300.0, 0.0]
        return anyloss.log_cosh_loss, [x, y], {}
    if name == "gaussian_nll_loss":
        v = np.random.default_rng(seed + 1).uniform(0.0, 3.0, shape).astype(dtype)
        v.reshape(-1)[:6] = [0.0, 1e-9, 1e-6, np.inf, 2.0, 1.0]
        flat_x[:6] = [1.0, 2.0, -1.0, 1.0, np.inf, 1e30 if dtype == np.float64 else 1e18]
        return anyloss.gaussian_nll_loss, [x, y, v], {}
    if name.startswith("smooth_l1_loss"):
        beta = float(name.split(":")[1])
        flat_x[:8] = [beta, -beta, 0.0, np.inf, np.nan, 1e30, beta / 2, 0.0]
        flat_y[:8] = [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 3 * beta]
        return anyloss.smooth_l1_loss, [x, y], {"beta": beta}
    if name == "hinge_loss":
        t = signs(seed, shape, dtype)
        flat_x[:6] = [1.0, -1.0, np.inf, -np.inf, np.nan, 0.0]
        t.reshape(-1)[:6] = [1.0, -1.0, 1.0, 1.0, 1.0, -1.0]
        return anyloss.hinge_loss, [x, t], {}
    if name == "margin_ranking_loss":
        t = signs(seed, shape, dtype)
        flat_x[:5] = [1.0, 0.5, np.inf, 0.0, np.nan]
        flat_y[:5] = [1.0, 0.0, 1.0, 0.5, 0.0]
        t.reshape(-1)[:5] = [1.0, 1.0, -1.0, 1.0, 1.0]
        return anyloss.margin_ranking_loss, [x, y, t], {"margin": 0.5}
    raise AssertionError(name)


ELEMENTWISE = [
    "log_cosh_loss",
    "gaussian_nll_loss",
    "hinge_loss",
    "margin_ranking_loss",
    "smooth_l1_loss:1.0",
    "smooth_l1_loss:4.0",
    "smooth_l1_loss:0.7",
    "smooth_l1_loss:0.25",
]
NODE = {"smooth_l1_loss:1.0": "SmoothL1", "smooth_l1_loss:4.0": "SmoothL1"}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_special_values(name, reduction, dtype):
    fn, arrays, kwargs = elementwise_case(name, 1, (9, 13), dtype)
    check(fn, arrays, dict(kwargs, reduction=reduction), dtype, fast_fn=NODE.get(name, "Elementwise"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_many_blocks(name, dtype):
    """70,000 finite elements: several blocks of the blocked loops (the
    special values make every reduced gradient nan, so they stay out)."""
    fn, arrays, kwargs = elementwise_case(name, 2, (7, 10_000), dtype)
    arrays = [np.nan_to_num(a, nan=0.5, posinf=3.0, neginf=-3.0) for a in arrays]
    for reduction in REDUCTIONS:
        check(fn, arrays, dict(kwargs, reduction=reduction), dtype, sums=True, fast_fn=NODE.get(name, "Elementwise"))


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_gradient_of_one_input(name):
    fn, arrays, kwargs = elementwise_case(name, 3, (50,), np.float32)
    arrays = [np.nan_to_num(a, nan=0.5, posinf=3.0, neginf=-3.0) for a in arrays]
    for i in range(len(arrays)):
        mask = [j == i for j in range(len(arrays))]
        check(fn, arrays, dict(kwargs, reduction="mean"), np.float32, grad_mask=mask)


def test_log_cosh_large_errors_use_the_accurate_branch():
    """Errors from 1 to where sinh overflows, and beyond (the portable form)."""
    x = np.concatenate([np.geomspace(1e-6, 1e3, 4000), -np.geomspace(1e-6, 1e3, 4000)]).astype(np.float32)
    y = np.zeros_like(x)
    check(anyloss.log_cosh_loss, [x, y], {"reduction": "none"}, np.float32, fast_fn="Elementwise")
    check(anyloss.log_cosh_loss, [x.astype(np.float64), y.astype(np.float64)], {"reduction": "none"}, np.float64)


@pytest.mark.parametrize("beta", [1.0, 2.0, 0.5, 3.0, 2.0**100])
def test_smooth_l1_gradient_at_beta(beta):
    """|d| == beta is on the linear side in both codes: gradient sign(d)."""
    x = np.array([beta, -beta, beta * (1 - 2**-20), 0.0, -0.0])
    y = np.zeros_like(x)
    check(anyloss.smooth_l1_loss, [x, y], {"beta": beta, "reduction": "none"}, np.float64)
    leaf = tensor(x, True)
    loss = anyloss.smooth_l1_loss(leaf, tensor(y), beta=beta, reduction="sum")
    (g,) = torch.autograd.grad(loss, leaf)
    np.testing.assert_allclose(g.numpy()[:2], [1.0, -1.0])
    np.testing.assert_allclose(g.numpy()[3:], [0.0, 0.0])


@pytest.mark.parametrize("beta", [1e30, 2.0**70, 2.0**-3])
def test_smooth_l1_huge_and_small_beta(beta):
    """Beyond the native kernel's range (0.5 d * d overflows in float32, or a
    beta below 1) the portable formula runs, with its own gradient."""
    x, y = pair(4, (40,), np.float32, scale=1e18)
    x[:3] = [1e19, 2e-19, 0.0]
    assert not native_torch._native_smooth_l1(beta, torch.float32)
    check(anyloss.smooth_l1_loss, [x, y], {"beta": beta, "reduction": "none"}, np.float32, fast_fn="Elementwise")


@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_elementwise_double_backward(name, reduction):
    fn, arrays, kwargs = elementwise_case(name, 5, (3, 4), np.float64)
    arrays = [a.copy() for a in arrays]
    for a in arrays:  # finite, away from the kinks (numerical second derivatives)
        bad = ~np.isfinite(a) | (np.abs(a) > 50)
        a[bad] = 0.3
    if name == "gaussian_nll_loss":
        arrays[2] = np.abs(arrays[2]) + 0.5
    smooth = [a.copy() for a in arrays]
    if name.startswith("smooth_l1_loss"):
        # exact zero errors stay in the comparison (both codes: second
        # derivative 0 there), out of the numerical check (1 / beta)
        beta = kwargs["beta"]
        d = arrays[0] - arrays[1]
        arrays[0] = np.where(np.abs(np.abs(d) - beta) < 0.05, arrays[0] + 0.2, arrays[0])
        assert np.any(arrays[0] == arrays[1])
        smooth = [np.where(arrays[0] == arrays[1], arrays[0] + 0.1, arrays[0]), arrays[1]]
    if name in ("hinge_loss", "margin_ranking_loss"):
        arrays[0] = arrays[0] + 0.013  # no element exactly at the hinge
        smooth = arrays
    check_second_order(fn, arrays, dict(kwargs, reduction=reduction), smooth_arrays=smooth)


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_half_precision(half, reduction):
    """Computed in float32 and returned in the input dtype, as the portable code."""
    x, y = pair(6, (8, 25), np.float32)
    v = np.random.default_rng(7).uniform(0.1, 2.0, (8, 25)).astype(np.float32)
    s = signs(8, (8, 25), np.float32)
    calls = [
        (anyloss.log_cosh_loss, (x, y), {}),
        (anyloss.gaussian_nll_loss, (x, y, v), {}),
        (anyloss.smooth_l1_loss, (x, y), {}),
        (anyloss.hinge_loss, (x, s), {}),
        (anyloss.margin_ranking_loss, (x, y, s), {}),
        (anyloss.kl_div_loss, (x, y), {}),
        (anyloss.triplet_loss, (x, y, v), {}),
    ]
    for fn, arrays, kwargs in calls:
        for grad in (False, True):
            outs = []
            for fast in (True, False):
                leaves = [torch.from_numpy(a).to(half).requires_grad_(grad) for a in arrays]
                with contextlib.nullcontext() if fast else _native.portable():
                    loss = fn(*leaves, reduction=reduction, **kwargs)
                grads = torch.autograd.grad(loss.sum(), leaves) if grad else []
                outs.append((loss, grads))
            (a, ga), (b, gb) = outs
            assert a.dtype == b.dtype == half
            np.testing.assert_allclose(a.detach().float().numpy(), b.detach().float().numpy(), rtol=1e-2, atol=0)
            for p, q in zip(ga, gb):
                assert p.dtype == q.dtype == half
                np.testing.assert_allclose(p.float().numpy(), q.float().numpy(), rtol=1e-2, atol=1e-3)


def test_non_contiguous_and_mixed_inputs_fall_back():
    x, y = pair(9, (20, 30), np.float64)
    xt, yt = tensor(x).T, tensor(y).T  # non-contiguous
    for fn in (anyloss.log_cosh_loss, anyloss.hinge_loss, anyloss.kl_div_loss):
        fast = fn(xt, yt, reduction="none")
        with _native.portable():
            slow = fn(xt, yt, reduction="none")
        np.testing.assert_allclose(fast.numpy(), slow.numpy(), rtol=1e-13)
    # float32 with float64: computed in float64
    fast = anyloss.log_cosh_loss(tensor(x.astype(np.float32)), tensor(y), reduction="mean")
    assert fast.dtype == torch.float64
    with _native.portable():
        slow = anyloss.log_cosh_loss(tensor(x.astype(np.float32)), tensor(y), reduction="mean")
    np.testing.assert_allclose(fast.numpy(), slow.numpy(), rtol=1e-13)


# ---------------------------------------------------------------------- kl_div


def kl_inputs(seed, shape, dtype, axis=-1):
    rng = np.random.default_rng(seed)
    x = np.log(rng.dirichlet(np.ones(shape[axis]), size=int(np.prod(shape)) // shape[axis]))
    t = np.log(rng.dirichlet(np.ones(shape[axis]) * 0.5, size=int(np.prod(shape)) // shape[axis]))
    x = np.moveaxis(x.reshape(*np.delete(shape, axis % len(shape)), shape[axis]), -1, axis)
    t = np.moveaxis(t.reshape(*np.delete(shape, axis % len(shape)), shape[axis]), -1, axis)
    return np.ascontiguousarray(x).astype(dtype), np.ascontiguousarray(t).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_kl_div(reduction, dtype):
    x, t = kl_inputs(10, (12, 9), dtype)
    t[0, :3] = -np.inf  # zero target probabilities: no contribution
    x[0, 0] = -np.inf  # ... even where the prediction is -inf too
    x[1, 1] = -np.inf  # a -inf prediction of a positive target: inf
    t[2, 0] = -200.0  # exp(t) underflows to 0 with a finite difference
    x[3, 2] = np.nan
    kwargs = {"reduction": reduction}
    check(anyloss.kl_div_loss, [x, t], kwargs, dtype, sums=True, fast_fn="KLDiv")
    check(anyloss.kl_div_loss, [x, t], kwargs, dtype, grad_mask=[True, False], sums=True, fast_fn="KLDiv")


@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_div_many_rows_and_axes(dtype):
    x, t = kl_inputs(11, (400, 3, 97), dtype)
    t[5, 1, :10] = -np.inf  # one block with masked terms, the others without
    for reduction in REDUCTIONS:
        check(anyloss.kl_div_loss, [x, t], {"reduction": reduction}, dtype, sums=True, fast_fn="KLDiv")
    for axis in (0, 1):
        x, t = kl_inputs(12, (6, 5, 4), dtype, axis=axis)
        check(anyloss.kl_div_loss, [x, t], {"axis": axis, "reduction": "sum"}, dtype, sums=True)


def test_kl_div_double_backward():
    x, t = kl_inputs(13, (4, 5), np.float64)
    for reduction in REDUCTIONS:
        check_second_order(anyloss.kl_div_loss, [x, t], {"reduction": reduction})


# ---------------------------------------------------------------------- triplet


def triplets(seed, shape, dtype):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for _ in range(3)]


def triplet_atol(arrays, dtype):
    """Distances are sums of squares added in another order (and unscaled):
    their error is a few ulps of the distance, so the loss, a difference of
    two distances plus the margin, is compared in absolute terms."""
    a, p, n = arrays
    scale = float(np.sqrt(np.sum((a - p) ** 2, axis=-1)).max() + np.sqrt(np.sum((a - n) ** 2, axis=-1)).max())
    return 16 * float(np.finfo(dtype).eps) * max(scale, 1.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps,margin", [(1e-6, 1.0), (0.0, 0.0), (0.5, -0.3)])
def test_triplet(eps, margin, reduction, dtype):
    arrays = triplets(14, (30, 17), dtype)
    arrays[2][0] = arrays[1][0]  # a tie: d(a, pos) == d(a, neg), margin 0 is active
    kwargs = {"eps": eps, "margin": margin, "reduction": reduction}
    atol = triplet_atol(arrays, dtype) * (30 if reduction == "sum" else 1)
    check(anyloss.triplet_loss, arrays, kwargs, dtype, atol=atol, grad_atol=atol, fast_fn="Triplet")
    check(anyloss.triplet_loss, arrays, kwargs, dtype, grad_mask=[True, False, False], atol=atol,
          grad_atol=atol, fast_fn="Triplet")


@pytest.mark.parametrize("dtype", DTYPES)
def test_triplet_many_rows(dtype):
    arrays = triplets(15, (600, 250), dtype)
    atol = triplet_atol(arrays, dtype)
    for reduction in REDUCTIONS:
        check(anyloss.triplet_loss, arrays, {"reduction": reduction}, dtype, atol=600 * atol, grad_atol=atol,
              fast_fn="Triplet")


@pytest.mark.parametrize("case", ["zero", "huge", "tiny", "inf", "nan"])
def test_triplet_hard_rows_fall_back(case):
    """Zero distances with eps = 0, sums of squares that overflow or
    underflow, and non-finite inputs: the portable (scaled) code runs."""
    a, p, n = triplets(16, (5, 8), np.float32)
    if case == "zero":
        p[0] = a[0]
    elif case == "huge":
        a[1] *= 1e25
    elif case == "tiny":
        a[2], p[2], n[2] = a[2] * 1e-25, p[2] * 1e-25, n[2] * 1e-25
    elif case == "inf":
        a[3, 0] = np.inf
    else:
        n[4, 1] = np.nan
    kwargs = {"eps": 0.0, "reduction": "none"}
    loss = anyloss.triplet_loss(*(tensor(v, True) for v in (a, p, n)), **kwargs)
    assert "Triplet" not in type(loss.grad_fn).__name__
    check(anyloss.triplet_loss, [a, p, n], kwargs, np.float32)


@pytest.mark.parametrize("p,axis", [(1, -1), (3, -1), (2, 0)])
def test_triplet_other_degrees_and_axes(p, axis):
    arrays = triplets(17, (12, 10), np.float64)
    kwargs = {"p": p, "axis": axis, "reduction": "mean"}
    check(anyloss.triplet_loss, arrays, kwargs, np.float64, atol=1e-13, grad_atol=1e-13)


def test_triplet_double_backward():
    arrays = triplets(18, (4, 6), np.float64)
    for reduction in REDUCTIONS:
        check_second_order(anyloss.triplet_loss, arrays, {"margin": 2.0, "reduction": reduction}, rtol=1e-9)


# ---------------------------------------------------------------------- nll


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape,axis", [((7, 11), -1), ((7, 11), 0), ((11,), 0), ((3, 5, 4), 1), ((3, 5, 4), -1), ((2, 3, 4, 5), 2)])
def test_nll(shape, axis, reduction, dtype):
    rng = np.random.default_rng(19)
    x = (rng.standard_normal(shape) - 2.0).astype(dtype)
    x.reshape(-1)[:2] = [-np.inf, np.nan]
    targets = rng.integers(0, shape[axis], np.delete(shape, axis % len(shape))).astype(np.int32)
    kwargs = {"axis": axis, "reduction": reduction}
    fn = lambda inputs: anyloss.nll_loss(inputs, torch.from_numpy(targets), **kwargs)  # noqa: E731
    # F.nll_loss wants the classes at position 1; a moved axis of more than
    # two dimensions is not contiguous and runs the portable gather
    native = len(shape) <= 2 or axis == 1
    check(fn, [x], {}, dtype, sums=True, fast_fn="NllLoss" if native else None)


def test_nll_double_backward_and_fallbacks():
    rng = np.random.default_rng(20)
    x = rng.standard_normal((5, 4))
    targets = torch.from_numpy(rng.integers(0, 4, 5))
    for reduction in REDUCTIONS:
        fn = lambda inputs: anyloss.nll_loss(inputs, targets, reduction=reduction)  # noqa: E731
        check_second_order(fn, [x], {})
    # half precision inputs: the portable code (gathered in the input dtype)
    half = torch.from_numpy(x).to(torch.float16).requires_grad_(True)
    loss = anyloss.nll_loss(half, targets, reduction="mean")
    assert "NllLoss" not in type(loss.grad_fn).__name__ and loss.dtype == torch.float16


# ---------------------------------------------------------------------- routing


def test_no_grad_forward_uses_numpy_fast_paths(monkeypatch):
    """Without autograd the losses run the NumPy fast paths on views."""
    calls = []
    names = ["hinge_loss", "margin_ranking_loss", "kl_div_loss", "triplet_loss"]
    for name in names:
        original = getattr(native_numpy, name)

        def spy(*args, _original=original, _name=name):
            calls.append(_name)
            return _original(*args)

        monkeypatch.setattr(native_numpy, name, spy)
    x, y = pair(21, (6, 7), np.float32)
    s = signs(22, (6, 7), np.float32)
    args = {
        "hinge_loss": (x, s), "margin_ranking_loss": (x, y, s), "kl_div_loss": (x, y), "triplet_loss": (x, y, s),
    }
    for name in names:
        check(getattr(anyloss, name), list(args[name]), {"reduction": "mean"}, np.float32, sums=True,
              atol=1e-6 if name == "triplet_loss" else 0.0, grad_atol=1e-6)
    assert sorted(set(calls)) == sorted(names)


def test_torch_func_and_grad_mode_off():
    x, y = pair(23, (16,), np.float64)
    target = tensor(y)
    value = torch.func.grad(lambda a: anyloss.log_cosh_loss(a, target, reduction="sum"))(tensor(x))
    np.testing.assert_allclose(value.numpy(), np.tanh(x - y), rtol=1e-13)
    leaf = tensor(x, True)
    with torch.no_grad():
        loss = anyloss.log_cosh_loss(leaf, target, reduction="sum")
    assert loss.grad_fn is None
    np.testing.assert_allclose(loss.numpy(), np.sum(np.log(np.cosh(x - y))), rtol=1e-13)

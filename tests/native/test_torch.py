"""The PyTorch fast path (``anyloss._native.torch``) against the portable code.

Every call here is made twice through the public API: by the fast path and
inside ``_native.portable()`` (``_formulas.evaluate`` on array-api-compat's
torch namespace).  Values and reverse-mode gradients (with respect to every
floating input, weights included) agree to a few ulps of the result's scale
(the kernels sum in another order, and the plain forms are not the scaled
formulas bit for bit); forward mode gives a tangent equal to the reverse-mode
directional derivative.  Where the fast path must give way (the hard inputs),
the portable formula runs (a spy on ``evaluate``) and the results are the
portable ones exactly; where it delegates, the ``F.*`` kernel runs (a spy on
the kernel).  ``torch.compile``, under which the portable formula runs, is
tested in ``tests/test_autodiff.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any, Callable

import pytest
import torch
import torch.autograd.forward_ad as fwAD

import anyloss
from anyloss import _native
from anyloss._native import torch as fast

REDUCTIONS = ("none", "mean", "sum")
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
INDEX_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
ULPS = 16


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------ inputs


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _normal(g, shape, scale=1.0):
    return torch.randn(shape, generator=g, dtype=torch.float64) * scale


def _uniform(g, shape, lo, hi):
    return lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)


def _signs(g, shape):
    return torch.where(torch.rand(shape, generator=g) < 0.5, -1.0, 1.0).double()


def _classes(g, shape, n):
    return torch.randint(0, n, shape, generator=g)


@dataclasses.dataclass
class Case:
    """A loss and how to draw its arguments: ``make(g, shape)`` returns the
    positional arrays (float64 floating arrays, cast to the test's dtype)."""

    id: str
    loss: str
    make: Callable[..., list[Any]]
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    shape: tuple[int, ...] = (6, 5)
    keywords: tuple[str, ...] = ()  # the last arrays' names, passed by keyword
    ulps: int = 16  # CTC: its recursion rounds once per frame, in the kernel's order


def _ce(g, s):
    return [_normal(g, s, 2.0), _classes(g, s[:-1], s[-1])]


def _ce_weighted(g, s):
    return _ce(g, s) + [_uniform(g, s[:-1], 0.0, 2.0)]


def _ce_probs(g, s):
    return [_normal(g, s, 2.0), torch.softmax(_normal(g, s), -1)]


def _log_probs(g, s):
    return torch.log_softmax(_normal(g, s), -1)


def _bce(g, s):
    return [_normal(g, s, 3.0), _uniform(g, s, 0.0, 1.0)]


def _bce_weighted(g, s):
    return _bce(g, s) + [_uniform(g, s, 0.0, 2.0)]


def _probs(g, s):
    return [_uniform(g, s, 0.02, 0.98), _uniform(g, s, 0.0, 1.0)]


def _pair(g, s):
    return [_normal(g, s), _normal(g, s)]


def _gaussian(g, s):
    v = _uniform(g, s, 0.1, 2.0)
    v.view(-1)[::4] = 1e-8  # below eps: clamped, no gradient
    return _pair(g, s) + [v]


def _triplets(g, s):
    return [_normal(g, s) for _ in range(3)]


def _class_weights(g, s):
    return _uniform(g, (s[-1],), 0.5, 2.0)


def _counts(g, s):
    return torch.poisson(_uniform(g, s, 0.0, 4.0), generator=g)


def _ctc(g, s):
    """Logits (N, T, C), padded targets without the blank, lengths; one empty target."""
    n, t, c = s
    targets = torch.randint(1, c, (n, 4), generator=g)
    lengths = torch.randint(0, 5, (n,), generator=g)
    if n > 1:
        targets[0, :2] = targets[0, 1]  # a repeat: a blank between them needed
        lengths[1] = 0
    return [_normal(g, s), targets, torch.randint(5, t + 1, (n,), generator=g), lengths]


CASES = [
    Case("ce", "cross_entropy", _ce),
    Case("ce-smoothing", "cross_entropy", _ce, {"label_smoothing": 0.1}),
    Case("ce-weights", "cross_entropy", _ce_weighted),
    Case("ce-probs", "cross_entropy", _ce_probs),
    Case("ce-probs-smoothing", "cross_entropy", _ce_probs, {"label_smoothing": 0.2}),
    Case("ce-probs-weights", "cross_entropy", lambda g, s: _ce_probs(g, s) + [_uniform(g, s[:-1], 0, 2)]),
    Case("nll", "nll_loss", lambda g, s: [_log_probs(g, s), _classes(g, s[:-1], s[-1])]),
    Case("kl", "kl_div_loss", lambda g, s: [_log_probs(g, s), _log_probs(g, s)]),
    Case("bce", "binary_cross_entropy", _bce, shape=(16,)),
    Case("bce-weights", "binary_cross_entropy", _bce_weighted, shape=(16,)),
    Case("bce-probs", "binary_cross_entropy", _probs, {"with_logits": False}, shape=(16,)),
    Case("bce-probs-weights", "binary_cross_entropy", lambda g, s: _probs(g, s) + [_uniform(g, s, 0, 2)],
         {"with_logits": False}, shape=(16,)),
    Case("hinge", "hinge_loss", lambda g, s: [_normal(g, s), _signs(g, s)], shape=(16,)),
    Case("mse", "mse_loss", _pair, shape=(16,)),
    Case("l1", "l1_loss", _pair, shape=(16,)),
    Case("huber", "huber_loss", _pair, {"delta": 0.5}, shape=(16,)),
    Case("smooth-l1", "smooth_l1_loss", _pair, {"beta": 0.5}, shape=(16,)),
    Case("smooth-l1-beta-0", "smooth_l1_loss", _pair, {"beta": 0.0}, shape=(16,)),
    Case("log-cosh", "log_cosh_loss", lambda g, s: [_normal(g, s, 3.0), _normal(g, s)], shape=(16,)),
    Case("gaussian", "gaussian_nll_loss", _gaussian, shape=(16,)),
    Case("gaussian-full", "gaussian_nll_loss", _gaussian, {"full": True, "eps": 1e-3}, shape=(16,)),
    Case("margin-ranking", "margin_ranking_loss",
         lambda g, s: _pair(g, s) + [_signs(g, s)], {"margin": 0.5}, shape=(16,)),
    Case("cosine", "cosine_similarity_loss", _pair, shape=(6, 8)),
    Case("cosine-below-eps", "cosine_similarity_loss",  # norms' products below eps: clamped
         lambda g, s: [_normal(g, s, 1e-5), _normal(g, s, 3e-5)], shape=(6, 8)),
    Case("triplet", "triplet_loss", _triplets, shape=(6, 8)),
    Case("triplet-p1", "triplet_loss", _triplets, {"p": 1}, shape=(6, 8)),
    Case("softmax-focal", "softmax_focal_loss", _ce),
    Case("softmax-focal-gamma-half-weights", "softmax_focal_loss",
         lambda g, s: _ce(g, s) + [_class_weights(g, s)], {"gamma": 0.5}, keywords=("class_weights",)),
    Case("poly1", "poly1_cross_entropy", _ce, {"epsilon": 1.5}),
    Case("sigmoid-focal", "sigmoid_focal_loss", _bce, shape=(16,)),
    Case("info-nce", "info_nce_loss", _pair, {"temperature": 0.5}, shape=(6, 8)),
    Case("info-nce-symmetric", "info_nce_loss", _pair, {"symmetric": True}, shape=(6, 8)),
    Case("js-div", "js_div_loss", lambda g, s: [_log_probs(g, s), _log_probs(g, s)]),
    Case("multi-margin", "multi_margin_loss", lambda g, s: [_normal(g, s), _classes(g, s[:-1], s[-1])]),
    Case("multi-margin-p2-weights", "multi_margin_loss",
         lambda g, s: [_normal(g, s), _classes(g, s[:-1], s[-1]), _class_weights(g, s)],
         {"p": 2, "margin": 0.5}, shape=(2, 3, 5), keywords=("class_weights",)),
    Case("soft-margin", "soft_margin_loss", lambda g, s: [_normal(g, s, 3.0), _signs(g, s)], shape=(16,)),
    Case("multilabel-soft-margin", "multilabel_soft_margin_loss", _bce),
    Case("multilabel-soft-margin-weights", "multilabel_soft_margin_loss",
         lambda g, s: _bce(g, s) + [_class_weights(g, s)]),
    Case("hinge-embedding", "hinge_embedding_loss",
         lambda g, s: [_uniform(g, s, 0.0, 2.0), _signs(g, s).long()], {"margin": 1.5}, shape=(16,)),
    Case("cosine-embedding", "cosine_embedding_loss",
         lambda g, s: _pair(g, s) + [_signs(g, s[:-1]).long()], {"margin": 0.2}, shape=(6, 8)),
    Case("poisson", "poisson_nll_loss", lambda g, s: [_normal(g, s), _counts(g, s)], shape=(16,)),
    Case("poisson-rates-full", "poisson_nll_loss",
         lambda g, s: [_uniform(g, s, 0.1, 4.0), _counts(g, s)], {"log_input": False, "full": True},
         shape=(16,)),
    Case("ctc", "ctc_loss", _ctc, shape=(3, 12, 6), ulps=64),
    Case("ctc-zero-infinity", "ctc_loss", _ctc, {"zero_infinity": True}, shape=(3, 12, 6), ulps=64),
]
CASE_IDS = [c.id for c in CASES]


def _arrays(case: Case, dtype, shape=None, seed=0) -> list[Any]:
    arrays = case.make(_gen(seed), shape or case.shape)
    return [a.to(dtype) if a.is_floating_point() else a for a in arrays]


def _call(case: Case, arrays, reduction, **extra):
    split = len(arrays) - len(case.keywords)
    extra.update(zip(case.keywords, arrays[split:]))
    if reduction is not None:  # (None: a loss without the argument)
        extra["reduction"] = reduction
    return getattr(anyloss, case.loss)(*arrays[:split], **case.kwargs, **extra)


def _leaves(arrays):
    return [a.detach().clone().requires_grad_(True) if a.is_floating_point() else a for a in arrays]


def _value_and_grads(case, arrays, reduction, path):
    leaves = _leaves(arrays)
    with path():
        out = _call(case, leaves, reduction)
    wrt = [a for a in leaves if a.requires_grad]
    cotangent = torch.linspace(0.5, 1.5, out.numel(), dtype=torch.float64).reshape(out.shape)
    grads = torch.autograd.grad((out.double() * cotangent).sum(), wrt, allow_unused=True) if wrt else ()
    return out, grads


FAST, PORTABLE = contextlib.nullcontext, _native.portable


def _eps(dtype) -> float:
    return torch.finfo(dtype).eps


def assert_close(got, want, dtype, what="", ulps=ULPS):
    """``got`` equals ``want`` to ULPS units of ``dtype`` of the largest
    magnitude (half dtypes: to one rounding of the half result), with the
    same NaN and infinities."""
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, expected {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    g, w = got.detach().double(), want.detach().double()
    assert torch.equal(torch.isnan(g), torch.isnan(w)), f"{what}: NaN where {w} has none\n{g}"
    finite = torch.isfinite(w)
    assert torch.equal(g[~finite & ~torch.isnan(w)], w[~finite & ~torch.isnan(w)]), f"{what}: {g} vs {w}"
    if finite.any():
        scale = w[finite].abs().max().item()
        half = _eps(dtype) if torch.finfo(dtype).bits < 32 else 0.0
        tol = (ulps * _eps(torch.float32 if half else dtype) + 2 * half) * max(scale, 1e-30)
        err = (g[finite] - w[finite]).abs().max().item()
        assert err <= tol, f"{what}: max error {err:.3g} > {tol:.3g}\ngot  {g}\nwant {w}"


# --------------------------------------------------------- values and gradients


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_value_and_gradient_match_portable(case, dtype, reduction):
    arrays = _arrays(case, dtype)
    got, got_grads = _value_and_grads(case, arrays, reduction, FAST)
    want, want_grads = _value_and_grads(case, arrays, reduction, PORTABLE)
    assert got.dtype == dtype
    assert_close(got, want, dtype, f"{case.id} value", case.ulps)
    for i, (g, w) in enumerate(zip(got_grads, want_grads)):
        assert (g is None) == (w is None), f"{case.id} gradient {i}"
        if g is not None:
            assert_close(g, w, dtype, f"{case.id} gradient {i}", case.ulps)


@pytest.mark.parametrize("reduction", ("none", "mean"))
@pytest.mark.parametrize("dtype", (torch.float32, torch.float64), ids=str)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_forward_mode_matches_reverse_mode(case, dtype, reduction):
    """The tangent of a forward-mode call is the reverse-mode directional derivative."""
    arrays = _arrays(case, dtype)
    g = _gen(1)
    tangents = [torch.randn(a.shape, generator=g, dtype=torch.float64).to(dtype)
                if a.is_floating_point() else None for a in arrays]
    with fwAD.dual_level():
        duals = [a if t is None else fwAD.make_dual(a, t) for a, t in zip(arrays, tangents)]
        out = _call(case, duals, reduction)
        primal, tangent = fwAD.unpack_dual(out)
    assert tangent is not None, f"{case.id}: no tangent"
    leaves = _leaves(arrays)
    value = _call(case, leaves, reduction)
    cotangent = torch.linspace(0.5, 1.5, value.numel(), dtype=dtype).reshape(value.shape)
    wrt = [(a, t) for a, t in zip(leaves, tangents) if t is not None]
    grads = torch.autograd.grad((value * cotangent).sum(), [a for a, _ in wrt])
    reverse = sum((gr * t).sum() for gr, (_, t) in zip(grads, wrt))
    forward = (tangent * cotangent).sum()
    assert_close(primal, value, dtype, f"{case.id} primal")
    scale = sum((gr.abs() * t.abs()).sum() for gr, (_, t) in zip(grads, wrt)).item()
    assert abs(forward.item() - reverse.item()) <= ULPS * _eps(dtype) * max(scale, 1e-30), (
        f"{case.id}: forward {forward.item()} vs reverse {reverse.item()}"
    )


# -------------------------------------------------------------- axes and dtypes


AXES = [
    ("cross_entropy", lambda g: [_normal(g, (5, 4, 3)), _classes(g, (4, 3), 5)], {"axis": 0}),
    ("cross_entropy", lambda g: [_normal(g, (2, 5, 3)), _classes(g, (2, 3), 5)], {"axis": 1}),
    ("cross_entropy", lambda g: [_normal(g, (2, 3, 5)), _classes(g, (2, 3), 5)], {"axis": -1}),
    ("cross_entropy", lambda g: [_normal(g, (5,)), _classes(g, (), 5)], {}),
    ("cross_entropy", lambda g: [_normal(g, (5, 4)), torch.softmax(_normal(g, (5, 4)), 0)],
     {"axis": 0, "label_smoothing": 0.1}),
    ("nll_loss", lambda g: [torch.log_softmax(_normal(g, (5, 4, 3)), 0), _classes(g, (4, 3), 5)],
     {"axis": 0}),
    ("nll_loss", lambda g: [torch.log_softmax(_normal(g, (2, 5, 3)), 1), _classes(g, (2, 3), 5)],
     {"axis": 1}),
    ("kl_div_loss", lambda g: [torch.log_softmax(_normal(g, (5, 4)), 0),
                               torch.log_softmax(_normal(g, (5, 4)), 0)], {"axis": 0}),
    ("kl_div_loss", lambda g: [torch.log_softmax(_normal(g, (2, 5, 3)), 1),
                               torch.log_softmax(_normal(g, (2, 5, 3)), 1)], {"axis": 1}),
    ("cosine_similarity_loss", lambda g: _pair(g, (4, 3, 6)), {"axis": 2}),
    ("cosine_similarity_loss", lambda g: _pair(g, (4, 3)), {"axis": 0}),
    ("triplet_loss", lambda g: _triplets(g, (6, 4)), {"axis": 0}),
    ("triplet_loss", lambda g: _triplets(g, (2, 6, 4)), {"axis": 1}),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("i", range(len(AXES)), ids=[f"{a[0]}-{a[2]}" for a in AXES])
def test_other_axes(i, reduction):
    loss, make, kwargs = AXES[i]
    case = Case(f"{loss}-{kwargs}", loss, make, kwargs)
    arrays = [a.float() if a.is_floating_point() else a for a in make(_gen())]
    got, got_grads = _value_and_grads(case, arrays, reduction, FAST)
    want, want_grads = _value_and_grads(case, arrays, reduction, PORTABLE)
    assert_close(got, want, torch.float32, case.id)
    for g, w in zip(got_grads, want_grads):
        assert_close(g, w, torch.float32, case.id)


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=str)
@pytest.mark.parametrize("loss", ["cross_entropy", "nll_loss"])
def test_integer_class_indices(loss, index_dtype):
    """Every integer dtype of class indices, backward included."""
    g = _gen()
    x = _normal(g, (6, 5)).float()
    if loss == "nll_loss":
        x = torch.log_softmax(x, -1)
    case = Case(loss, loss, None, {"label_smoothing": 0.1} if loss == "cross_entropy" else {})
    arrays = [x, _classes(g, (6,), 5).to(index_dtype)]
    for reduction in REDUCTIONS:
        got, (got_grad,) = _value_and_grads(case, arrays, reduction, FAST)
        want, (want_grad,) = _value_and_grads(case, arrays, reduction, PORTABLE)
        assert_close(got, want, torch.float32, loss)
        assert_close(got_grad, want_grad, torch.float32, loss)


@pytest.mark.parametrize("target_dtype", (torch.int8, torch.int32, torch.int64, torch.bool), ids=str)
@pytest.mark.parametrize("loss", ["hinge_loss", "margin_ranking_loss", "binary_cross_entropy"])
def test_integer_targets(loss, target_dtype):
    g = _gen()
    x = _normal(g, (16,)).float()
    labels = torch.rand(16, generator=g) < 0.5
    if loss == "binary_cross_entropy":
        arrays = [x, labels.to(target_dtype)]
    else:
        if target_dtype == torch.bool:
            return
        signs = (2 * labels.long() - 1).to(target_dtype)
        arrays = [x, signs] if loss == "hinge_loss" else [x, _normal(g, (16,)).float(), signs]
    case = Case(loss, loss, None)
    for reduction in REDUCTIONS:
        got, got_grads = _value_and_grads(case, arrays, reduction, FAST)
        want, want_grads = _value_and_grads(case, arrays, reduction, PORTABLE)
        assert_close(got, want, torch.float32, loss)
        for a, b in zip(got_grads, want_grads):
            assert_close(a, b, torch.float32, loss)


def test_mixed_dtypes():
    """float32 logits with float64 weights: computed and returned in float64."""
    g = _gen()
    logits, targets = _normal(g, (6, 5)).float(), _classes(g, (6,), 5)
    weights = _uniform(g, (6,), 0.0, 2.0)
    got = anyloss.cross_entropy(logits, targets, weights=weights, reduction="mean")
    with _native.portable():
        want = anyloss.cross_entropy(logits, targets, weights=weights, reduction="mean")
    assert got.dtype == torch.float64
    assert_close(got, want, torch.float64, "mixed")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_empty_batch(case, reduction):
    if case.loss == "info_nce_loss":
        pytest.skip("info_nce_loss refuses empty keys (every query needs its key)")
    shape = (0,) + case.shape[1:]
    arrays = _arrays(case, torch.float32, shape=shape)
    got, got_grads = _value_and_grads(case, arrays, reduction, FAST)
    want, want_grads = _value_and_grads(case, arrays, reduction, PORTABLE)
    assert_close(got, want, torch.float32, case.id)
    for g, w in zip(got_grads, want_grads):
        assert_close(g, w, torch.float32, case.id)


# ------------------------------------------------------------- where it gives way


INF = math.inf
F32_MAX = float(torch.finfo(torch.float32).max)


def _t(*values, shape=None, dtype=torch.float32):
    t = torch.tensor(values, dtype=dtype)
    return t.reshape(shape) if shape else t


# (id, loss, arrays, kwargs): inputs where the kernel or the plain form is
# wrong, so the portable formula must run.
HARD = [
    ("bce-infinite-logits", "binary_cross_entropy", [_t(-INF, INF, 1.0), _t(0.0, 1.0, 1.0)],
     {"reduction": "none"}),
    ("bce-infinite-logits-mean", "binary_cross_entropy", [_t(-INF, INF, 1.0), _t(0.0, 1.0, 1.0)], {}),
    ("bce-confident", "binary_cross_entropy", [_t(-30.0, 1.0), _t(0.0, 1.0)], {"reduction": "none"}),
    ("bce-confident-mean", "binary_cross_entropy", [_t(-30.0, -40.0), _t(0.0, 0.0)],
     {"reduction": "mean"}),
    ("bce-probs-0-and-1", "binary_cross_entropy", [_t(0.0, 1.0, 0.5), _t(0.0, 1.0, 1.0)],
     {"with_logits": False}),
    ("bce-probs-1e-13", "binary_cross_entropy", [_t(1e-13, 0.5, dtype=torch.float64),
                                                 _t(1.0, 1.0, dtype=torch.float64)],
     {"with_logits": False, "reduction": "none"}),
    ("ce-confident-row", "cross_entropy", [_t(30.0, 0.0, 1.0, 2.0, shape=(2, 2)), torch.tensor([0, 1])],
     {"reduction": "none"}),
    ("ce-confident-mean", "cross_entropy", [_t(30.0, 0.0, 0.0, 40.0, shape=(2, 2)), torch.tensor([0, 1])],
     {"reduction": "mean"}),
    ("ce-infinite-logit", "cross_entropy", [_t(-INF, 0.0, 1.0, 2.0, shape=(2, 2)), torch.tensor([1, 0])],
     {"reduction": "none"}),
    ("ce-smoothing-huge-range", "cross_entropy",
     [_t(0.0, 0.0, 2.0**126, -(2.0**126), shape=(1, 4)), torch.tensor([0])], {"label_smoothing": 0.1}),
    ("ce-probs-minus-inf-logit", "cross_entropy",
     [_t(-INF, 0.0, 1.0, 2.0, shape=(2, 2)), _t(0.0, 1.0, 0.5, 0.5, shape=(2, 2))], {}),
    ("ce-probs-confident", "cross_entropy",
     [_t(30.0, 0.0, shape=(1, 2)), _t(1.0, 0.0, shape=(1, 2))], {"reduction": "mean"}),
    ("kl-minus-inf-target", "kl_div_loss",
     [_t(-1.0, -0.5, -0.3, -2.0, shape=(2, 2)), _t(-INF, 0.0, -0.7, -0.7, shape=(2, 2))], {}),
    ("kl-minus-inf-mean", "kl_div_loss",
     [_t(-1.0, -0.5, -0.3, -2.0, shape=(2, 2)), _t(-INF, 0.0, -0.7, -0.7, shape=(2, 2))],
     {"reduction": "mean"}),
    ("log-cosh-beyond-20", "log_cosh_loss", [_t(0.5, 30.0, -100.0), _t(0.0, 0.0, 0.0)], {}),
    ("log-cosh-overflow", "log_cosh_loss", [_t(1.0, 1e4), _t(0.0, 0.0)], {"reduction": "mean"}),
    ("cosine-zero-vector", "cosine_similarity_loss", [_t(0.0, 0.0, 1.0, 2.0, shape=(2, 2)),
                                                      _t(1.0, 2.0, 3.0, 1.0, shape=(2, 2))], {}),
    ("cosine-huge", "cosine_similarity_loss", [_t(1e20, 2e20, 1.0, 2.0, shape=(2, 2)),
                                               _t(3e20, 1e20, 3.0, 1.0, shape=(2, 2))], {}),
    ("cosine-tiny", "cosine_similarity_loss", [_t(1e-25, 2e-25, 1.0, 2.0, shape=(2, 2)),
                                               _t(3e-25, 1e-25, 3.0, 1.0, shape=(2, 2))], {"eps": 0.0}),
    ("cosine-huge-float64", "cosine_similarity_loss",
     [_t(1e200, 2e200, shape=(1, 2), dtype=torch.float64), _t(3e200, 1e200, shape=(1, 2), dtype=torch.float64)],
     {}),
    ("triplet-huge", "triplet_loss", [_t(1e20, 0.0, shape=(1, 2)), _t(-1e20, 0.0, shape=(1, 2)),
                                      _t(0.0, 3e20, shape=(1, 2))], {}),
    ("triplet-tiny-eps-0", "triplet_loss", [_t(1e-25, 0.0, shape=(1, 2)), _t(0.0, 0.0, shape=(1, 2)),
                                            _t(0.0, 3e-25, shape=(1, 2))], {"eps": 0.0, "margin": 0.0}),
    ("softmax-focal-infinite-logit", "softmax_focal_loss",
     [_t(INF, 0.0, 1.0, 2.0, shape=(2, 2)), torch.tensor([1, 0])], {}),
    ("poly1-infinite-logit", "poly1_cross_entropy",
     [_t(-INF, INF, 1.0, 2.0, shape=(2, 2)), torch.tensor([1, 0])], {"reduction": "mean"}),
    ("sigmoid-focal-infinite-logits", "sigmoid_focal_loss", [_t(-INF, INF, 1.0), _t(0.0, 1.0, 1.0)], {}),
    ("info-nce-zero-vector", "info_nce_loss",
     [_t(0.0, 0.0, 1.0, 2.0, shape=(2, 2)), _t(1.0, 2.0, 3.0, 1.0, shape=(2, 2))], {}),
    ("info-nce-huge", "info_nce_loss",
     [_t(1e20, 2e20, 1.0, 2.0, shape=(2, 2)), _t(3e20, 1e20, 3.0, 1.0, shape=(2, 2))], {}),
    ("info-nce-confident", "info_nce_loss",  # e^{-2 / 0.01} is below eps: the kernel's loss is 0
     [_t(1.0, 0.0, 0.0, 1.0, shape=(2, 2)), _t(1.0, 0.0, 0.0, 1.0, shape=(2, 2))], {"temperature": 0.01}),
    ("soft-margin-overflow", "soft_margin_loss", [_t(100.0, 1.0), _t(-1.0, 1.0)], {}),
    ("multilabel-infinite-logits", "multilabel_soft_margin_loss",
     [_t(INF, -INF, 1.0, 2.0, shape=(2, 2)), _t(1.0, 0.0, 1.0, 0.0, shape=(2, 2))], {}),
    ("poisson-zero-count-infinite-log-rate", "poisson_nll_loss", [_t(-INF, 1.0), _t(0.0, 2.0)], {}),
    ("cosine-embedding-zero-vector", "cosine_embedding_loss",
     [_t(0.0, 0.0, 1.0, 2.0, shape=(2, 2)), _t(1.0, 2.0, 3.0, 1.0, shape=(2, 2)), torch.tensor([1, -1])], {}),
    ("triplet-zero-distance-eps-0", "triplet_loss",
     [_t(1.0, 2.0, shape=(1, 2)), _t(1.0, 2.0, shape=(1, 2)), _t(0.0, 3.0, shape=(1, 2))],
     {"eps": 0.0}),
]


@pytest.fixture
def evaluate_spy(monkeypatch):
    """Counts the calls of the portable formula by the fast path."""
    calls = []
    original = fast.evaluate

    def spy(*args):
        calls.append(args[1])
        return original(*args)

    monkeypatch.setattr(fast, "evaluate", spy)
    return calls


@pytest.mark.parametrize("i", range(len(HARD)), ids=[h[0] for h in HARD])
def test_hard_inputs_run_the_portable_formula(i, evaluate_spy):
    id_, loss, arrays, kwargs = HARD[i]
    case = Case(id_, loss, None, {k: v for k, v in kwargs.items() if k != "reduction"})
    reduction = kwargs.get("reduction", "none")
    got, got_grads = _value_and_grads(case, arrays, reduction, FAST)
    assert evaluate_spy == [loss], f"{id_}: the portable formula did not run"
    want, want_grads = _value_and_grads(case, arrays, reduction, PORTABLE)
    assert torch.equal(got.isnan(), want.isnan()) and torch.equal(got.nan_to_num(), want.nan_to_num())
    for g, w in zip(got_grads, want_grads):
        assert torch.equal(g.isnan(), w.isnan()) and torch.equal(g.nan_to_num(), w.nan_to_num())


@pytest.mark.parametrize("i", range(len(HARD)), ids=[h[0] for h in HARD])
def test_hard_inputs_without_gradient(i):
    """Without a gradient some checks are looser (log_cosh's value is exact
    up to overflow, BCE's kernel value at p = 0 and 1): the values stand."""
    id_, loss, arrays, kwargs = HARD[i]
    with torch.no_grad():
        got = getattr(anyloss, loss)(*arrays, **kwargs)
        with _native.portable():
            want = getattr(anyloss, loss)(*arrays, **kwargs)
    assert_close(got, want, got.dtype, id_)


# ---------------------------------------------------------------- what runs


# loss case -> the kernel that runs it (an attribute of torch, torch.Tensor or torch._C._nn)
KERNELS = {
    "ce": (torch._C._nn, "cross_entropy_loss"),
    "ce-smoothing": (torch._C._nn, "cross_entropy_loss"),
    "ce-weights": (torch._C._nn, "cross_entropy_loss"),
    "nll": (torch._C._nn, "nll_loss_nd"),
    "kl": (torch, "kl_div"),
    "bce": (torch, "binary_cross_entropy_with_logits"),
    "bce-weights": (torch, "binary_cross_entropy_with_logits"),
    "bce-probs": (torch._C._nn, "binary_cross_entropy"),
    "mse": (torch._C._nn, "mse_loss"),
    "l1": (torch._C._nn, "l1_loss"),
    "huber": (torch._C._nn, "huber_loss"),
    "smooth-l1": (torch._C._nn, "smooth_l1_loss"),
    "smooth-l1-beta-0": (torch._C._nn, "l1_loss"),
    "margin-ranking": (torch, "margin_ranking_loss"),
    "ce-probs": None,  # the formula (MLX's value for any targets)
    "ce-probs-smoothing": None,  # the formula (MLX's value for any targets)
    "ce-probs-weights": None,  # the formula (MLX's value for any targets)
    "bce-probs-weights": (torch._C._nn, "binary_cross_entropy"),
    "log-cosh": (torch, "sinh"),
    "gaussian": (torch, "log"),
    "gaussian-full": (torch, "log"),
    "hinge": (torch.Tensor, "clamp"),
    "cosine": (torch._C._linalg, "linalg_vector_norm"),
    "cosine-below-eps": (torch._C._linalg, "linalg_vector_norm"),
    "triplet": (torch, "hypot"),
    "triplet-p1": (torch._C._linalg, "linalg_vector_norm"),
    "softmax-focal": (torch._C._nn, "cross_entropy_loss"),
    "softmax-focal-gamma-half-weights": (torch._C._nn, "cross_entropy_loss"),
    "poly1": (torch._C._nn, "cross_entropy_loss"),
    "sigmoid-focal": (torch._C._nn, "softplus"),
    "info-nce": (torch._C._linalg, "linalg_vector_norm"),
    "info-nce-symmetric": (torch._C._nn, "cross_entropy_loss"),
    "js-div": (torch.Tensor, "clamp"),
    "multi-margin": (torch._C._nn, "multi_margin_loss"),
    "multi-margin-p2-weights": (torch._C._nn, "multi_margin_loss"),
    "soft-margin": (torch._C._nn, "soft_margin_loss"),
    "multilabel-soft-margin": (torch, "binary_cross_entropy_with_logits"),
    "multilabel-soft-margin-weights": (torch, "binary_cross_entropy_with_logits"),
    "hinge-embedding": (torch, "hinge_embedding_loss"),
    "cosine-embedding": (torch._C._linalg, "linalg_vector_norm"),
    "poisson": (torch, "poisson_nll_loss"),
    "poisson-rates-full": (torch, "poisson_nll_loss"),
    "ctc": (torch, "ctc_loss"),
    "ctc-zero-infinity": (torch, "ctc_loss"),
}


def test_every_case_names_its_kernel():
    assert set(KERNELS) == set(CASE_IDS)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_the_kernel_runs(case, reduction, evaluate_spy, monkeypatch):
    """Ordinary inputs run torch's kernel (the one behind ``F.*`` where we
    delegate), never the portable formula."""
    if KERNELS[case.id] is None:  # the formula runs
        _call(case, _arrays(case, torch.float32), reduction)
        assert evaluate_spy == [case.loss]
        return
    owner, name = KERNELS[case.id]
    kernel, calls = getattr(owner, name), []

    def spy(*args, **kwargs):
        calls.append(name)
        return kernel(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)
    _call(case, _arrays(case, torch.float32), reduction)
    assert calls, f"{case.id}: {name} did not run"
    assert evaluate_spy == [], f"{case.id}: the portable formula ran"


# --------------------------------------------------------------- class indices


@pytest.mark.parametrize("bad", [5, -1, -100])
@pytest.mark.parametrize("index_dtype", (torch.int64, torch.int32, torch.int16), ids=str)
@pytest.mark.parametrize("loss", ["cross_entropy", "nll_loss"])
def test_out_of_range_class_indices_raise(loss, index_dtype, bad):
    logits = torch.log_softmax(torch.randn(3, 5), -1).requires_grad_()
    targets = torch.tensor([0, bad, 4], dtype=index_dtype)
    for kwargs in ({}, {"reduction": "mean"}, {"axis": -1, "reduction": "sum"}):
        with pytest.raises(ValueError, match=rf"{loss}: targets holds class indices from {min(bad, 0)} to"):
            getattr(anyloss, loss)(logits, targets, **kwargs)
    if loss == "cross_entropy":
        with pytest.raises(ValueError, match="class indices"):
            anyloss.cross_entropy(logits, targets, weights=torch.ones(3), label_smoothing=0.1)


def _requiring_grad(n):
    return torch.ones(n).requires_grad_()


@pytest.mark.parametrize("loss, kwargs", [
    ("softmax_focal_loss", {}),
    ("softmax_focal_loss", {"class_weights": torch.ones(5)}),
    ("poly1_cross_entropy", {}),
    ("multi_margin_loss", {}),
    ("multi_margin_loss", {"class_weights": "grad"}),  # the formula: no kernel ran
    ("cross_entropy", {"logit_softcap": 5.0}),  # the formula
    ("cross_entropy", {"z_loss": 1e-4}),  # the formula
    ("nll_loss", {"class_weights": "grad", "ignore_index": 2, "reduction": "mean"}),  # the formula
])
def test_out_of_range_class_indices_raise_on_every_path(loss, kwargs):
    """The front door leaves the range to this module on the host: the
    kernel's check, or one read where the formula computes the call."""
    kwargs = {k: _requiring_grad(5) if v == "grad" else v for k, v in kwargs.items()}
    logits = torch.log_softmax(torch.randn(3, 5), -1)
    for bad in (5, -1):
        targets = torch.tensor([0, bad, 4])
        with pytest.raises(ValueError, match=rf"{loss}: targets holds class indices from {min(bad, 0)} to {max(bad, 4)}[ ,]"):
            getattr(anyloss, loss)(logits, targets, **kwargs)
    with fwAD.dual_level():  # forward mode: the formula
        dual = fwAD.make_dual(logits, torch.ones_like(logits))
        with pytest.raises(ValueError, match="class indices from 0 to 5"):
            getattr(anyloss, loss)(dual, torch.tensor([0, 5, 4]), **kwargs)


NTXENT_LABELS = torch.tensor([0, 1, 2, 0, 1, 2, 3])  # the last row has no positive


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ntxent_by_norms_matches_portable(dtype, evaluate_spy, monkeypatch):
    """NT-Xent's logits by torch's vector norm where every norm is exact:
    the portable formula's value and gradient, and the formula not run."""
    g = torch.Generator().manual_seed(7)
    e = torch.randn(7, 8, generator=g, dtype=dtype)
    norms = []
    monkeypatch.setattr(torch._C._linalg, "linalg_vector_norm",
                        lambda *a, _f=torch._C._linalg.linalg_vector_norm: norms.append(1) or _f(*a))
    case = Case("ntxent", "ntxent_loss", None, {"temperature": 0.2})
    got, got_grads = _value_and_grads(case, [e, NTXENT_LABELS], None, FAST)
    assert norms and evaluate_spy == []
    want, want_grads = _value_and_grads(case, [e, NTXENT_LABELS], None, PORTABLE)
    assert_close(got, want, dtype, "ntxent")
    assert_close(got_grads[0], want_grads[0], dtype, "ntxent gradient")


@pytest.mark.parametrize("scale", [0.0, 1e20, 1e-25], ids=["zero-row", "huge", "tiny"])
def test_ntxent_hard_rows_run_the_portable_formula(scale, evaluate_spy):
    e = torch.randn(7, 8, generator=torch.Generator().manual_seed(8))
    e[2] *= scale
    case = Case("ntxent", "ntxent_loss", None, {"temperature": 0.2})
    got, got_grads = _value_and_grads(case, [e, NTXENT_LABELS], None, FAST)
    assert evaluate_spy == ["ntxent_loss"]
    want, want_grads = _value_and_grads(case, [e, NTXENT_LABELS], None, PORTABLE)
    assert torch.equal(got, want) and torch.equal(got_grads[0], want_grads[0])
    assert torch.isfinite(got_grads[0]).all()


def test_js_div_gradient_of_close_distributions():
    """Log-probabilities 1e-4 apart (a gradient element is ~1e-5 of its
    probability): the float32 gradients from the slopes are each element of
    the float64 gradient of the same numbers to a few ulps of itself."""
    g = _gen(5)
    x32 = torch.log_softmax(_normal(g, (4, 6)), -1).float()
    t32 = torch.log_softmax(x32.double() + 1e-4 * _normal(g, (4, 6)), -1).float()
    x64, t64 = x32.double(), t32.double()  # the same numbers
    leaves = [x64.clone().requires_grad_(), t64.clone().requires_grad_()]
    with _native.portable():
        anyloss.js_div_loss(*leaves, reduction="sum").backward()
    x, t = (a.float().requires_grad_() for a in (x64, t64))
    anyloss.js_div_loss(x, t, reduction="sum").backward()
    for got, want in ((x.grad, leaves[0].grad), (t.grad, leaves[1].grad)):
        assert ((got.double() - want).abs() <= 4 * _eps(torch.float32) * want.abs()).all()


@pytest.mark.parametrize("loss", ["cross_entropy", "nll_loss"])
def test_guarded_indices_give_nan(loss):
    """Indices that could not be read (``guard``): NaN where out of range, as
    the portable formula gives, the others' losses unchanged."""
    x = torch.log_softmax(torch.randn(4, 5), -1)
    targets = torch.tensor([0, 7, -1, 4])
    params = (1, 0.1, False, True, None, 0.0, None) if loss == "cross_entropy" else (1, True, None)
    xp = anyloss._common.namespace(loss, x=x)
    for reduction in REDUCTIONS:
        got = fast.run(xp, loss, params, reduction, torch.float32, torch.float32, False, x, targets, None)
        want = _native.evaluate(xp, loss, params, reduction, torch.float32, torch.float32, False, x, targets,
                                None)
        assert torch.equal(got.isnan(), want.isnan())
        assert_close(got.nan_to_num(), want.nan_to_num(), torch.float32, loss)


# ------------------------------------------------------------ torch.func, vmap


FUNC_CASES = [c for c in CASES if not c.id.endswith("weights")]


@pytest.mark.parametrize("case", FUNC_CASES, ids=[c.id for c in FUNC_CASES])
def test_torch_func_grad(case):
    arrays = _arrays(case, torch.float32)
    first = arrays[0]

    def loss(x):
        return _call(case, [x] + arrays[1:], "mean")

    got = torch.func.grad(loss)(first)
    leaf = first.detach().clone().requires_grad_()
    with _native.portable():
        (want,) = torch.autograd.grad(loss(leaf), leaf)
    assert_close(got, want, torch.float32, case.id)


# The portable CTC's time loop (torch.unstack) has no vmap batching rule in torch 2.13.
VMAP_CASES = [c for c in FUNC_CASES if c.loss != "ctc_loss"]


@pytest.mark.parametrize("case", VMAP_CASES, ids=[c.id for c in VMAP_CASES])
def test_vmap(case):
    batch = [_arrays(case, torch.float32, seed=s) for s in range(3)]
    stacked = [torch.stack(column) for column in zip(*batch)]
    got = torch.func.vmap(lambda *a: _call(case, list(a), "mean"))(*stacked)
    with _native.portable():
        want = torch.stack([_call(case, arrays, "mean") for arrays in batch])
    assert_close(got, want, torch.float32, case.id)


def test_vmap_over_out_of_range_indices_gives_nan():
    logits = torch.randn(2, 3, 4)
    targets = torch.tensor([[0, 1, 2], [3, 9, 1]])
    got = torch.func.vmap(lambda x, t: anyloss.cross_entropy(x, t))(logits, targets)
    assert got[1, 1].isnan() and got.isnan().sum() == 1
    with _native.portable():
        want = anyloss.cross_entropy(logits[0], targets[0])
    assert_close(got[0], want, torch.float32, "vmap")


def test_inference_mode_then_training():
    """Constants made during a call under inference_mode serve a later
    training call (an inference tensor cannot be saved for backward)."""
    fast._CONSTANTS.clear()
    for case in CASES:
        arrays = _arrays(case, torch.float32, shape=(3,) + case.shape[1:])
        with torch.inference_mode():
            _call(case, arrays, "mean")
        got, got_grads = _value_and_grads(case, arrays, "mean", FAST)
        want, want_grads = _value_and_grads(case, arrays, "mean", PORTABLE)
        assert_close(got, want, torch.float32, case.id)
        for g, w in zip(got_grads, want_grads):
            assert_close(g, w, torch.float32, case.id)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_log_cosh_as_one_node(dtype, monkeypatch, evaluate_spy):
    """Large arrays run log_cosh as one node with derivative tanh(a):
    values, gradients (errors beyond 20 included), forward mode and second
    derivatives as the portable code's; an overflow runs the portable formula."""
    monkeypatch.setattr(fast, "LOG_COSH_NODE", 1)
    g = _gen()
    x = (_normal(g, (40,), 12.0)).to(dtype)
    y = _normal(g, (40,)).to(dtype)
    case = Case("log-cosh-node", "log_cosh_loss", None)
    for reduction in REDUCTIONS:
        got, got_grads = _value_and_grads(case, [x, y], reduction, FAST)
        want, want_grads = _value_and_grads(case, [x, y], reduction, PORTABLE)
        assert_close(got, want, dtype, "value")
        for a, b in zip(got_grads, want_grads):
            assert_close(a, b, dtype, "gradient")
    assert evaluate_spy == []
    if dtype in (torch.float32, torch.float64):
        t = torch.linspace(-1, 1, 40, dtype=dtype)
        with fwAD.dual_level():
            _, tangent = fwAD.unpack_dual(anyloss.log_cosh_loss(fwAD.make_dual(x, t), y, reduction="sum"))
        assert_close(tangent, (torch.tanh(x - y) * t).sum(), dtype, "tangent")
        second = []
        for path in (FAST, PORTABLE):
            leaf = x.clone().requires_grad_()
            with path():
                (first,) = torch.autograd.grad(anyloss.log_cosh_loss(leaf, y, reduction="sum"), leaf,
                                               create_graph=True)
            second.append(torch.autograd.grad(first.sum(), leaf)[0])
        assert_close(second[0], second[1], dtype, "second derivative")
    huge = torch.tensor([1.0, 1e4], dtype=dtype)
    got = anyloss.log_cosh_loss(huge, torch.zeros(2, dtype=dtype), reduction="mean")
    assert evaluate_spy == ["log_cosh_loss"]
    with _native.portable():
        assert torch.equal(got, anyloss.log_cosh_loss(huge, torch.zeros(2, dtype=dtype), reduction="mean"))


# --------------------------------------------- against PyTorch's own functions


F = torch.nn.functional

# loss case -> PyTorch's function of the case's arrays (the peer the fast path delegates to)
PYTORCH = {
    "multi-margin": lambda x, t, r: F.multi_margin_loss(x, t, reduction=r),
    "multi-margin-p2-weights": lambda x, t, w, r: F.multi_margin_loss(
        x.reshape(-1, 5), t.reshape(-1), p=2, margin=0.5, weight=w, reduction=r
    ).reshape(t.shape if r == "none" else ()),
    "soft-margin": lambda x, t, r: F.soft_margin_loss(x, t, reduction=r),
    "multilabel-soft-margin": lambda x, t, r: F.multilabel_soft_margin_loss(x, t, reduction=r),
    "multilabel-soft-margin-weights": lambda x, t, w, r: F.multilabel_soft_margin_loss(x, t, w, reduction=r),
    "hinge-embedding": lambda x, t, r: F.hinge_embedding_loss(x, t, margin=1.5, reduction=r),
    "cosine-embedding": lambda a, b, t, r: F.cosine_embedding_loss(a, b, t, margin=0.2, reduction=r),
    "poisson": lambda x, t, r: F.poisson_nll_loss(x, t, reduction=r),
    "poisson-rates-full": lambda x, t, r: F.poisson_nll_loss(x, t, log_input=False, full=True, reduction=r),
    "ctc": lambda x, t, i, n, r: F.ctc_loss(x.log_softmax(-1).transpose(0, 1), t, i, n, reduction=r),
    "ctc-zero-infinity": lambda x, t, i, n, r: F.ctc_loss(
        x.log_softmax(-1).transpose(0, 1), t, i, n, reduction=r, zero_infinity=True),
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case_id", sorted(PYTORCH))
def test_pytorch_numbers(case_id, reduction):
    """Values and gradients with respect to the inputs of the fast path equal
    PyTorch's own function's (PyTorch's gradient of Poisson's Stirling term
    with respect to a zero count is NaN; ours, 0, is tested above), in float64; cosine_embedding_loss in float32 (PyTorch adds 1e-12 to each
    squared norm: 1e-13 of these, far below float32's eps, not float64's)."""
    case = next(c for c in CASES if c.id == case_id)
    dtype = torch.float32 if case_id == "cosine-embedding" else torch.float64
    arrays = _arrays(case, dtype)
    got, got_grads = _value_and_grads(case, arrays, reduction, FAST)
    first = arrays[0].clone().requires_grad_()
    want = PYTORCH[case_id](first, *arrays[1:], reduction)
    cotangent = torch.linspace(0.5, 1.5, want.numel(), dtype=torch.float64).reshape(want.shape)
    want_grads = torch.autograd.grad((want.double() * cotangent).sum(), first)
    assert_close(got, want.detach(), dtype, case_id)
    assert_close(got_grads[0], want_grads[0], dtype, case_id)


def _ctc_edges(dtype=torch.float64):
    """Sequences a CTC kernel gets wrong easily: infeasible (3 labels with a
    repeat in 3 frames, 4 labels in 3 frames), an empty target, a certain
    one (loss exactly 0: blank at probability 1 and an empty target), a
    repeat that fits, a target as long as the frames."""
    g = _gen(3)
    logits = _normal(g, (6, 4, 5)).to(dtype)
    logits[3, :, 0] = 1e4  # blank certain
    targets = torch.tensor([[1, 1, 2, 0], [1, 2, 3, 4], [0, 0, 0, 0], [0, 0, 0, 0], [2, 2, 0, 0],
                            [1, 2, 3, 4]])
    frames = torch.tensor([3, 3, 4, 4, 3, 4])
    lengths = torch.tensor([3, 4, 0, 0, 2, 4])
    return logits, targets, frames, lengths


@pytest.mark.parametrize("zero_infinity", (False, True))
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_ctc_edges(reduction, zero_infinity, evaluate_spy):
    """Infeasible sequences (inf, or 0 with zero_infinity; gradient 0),
    empty targets, a loss of exactly 0, 'mean' per target length: through
    the kernel, equal to the portable code; PyTorch's values where they are
    finite, its gradients where they are not NaN (infeasible ones are)."""
    logits, *rest = _ctc_edges()
    case = Case("ctc-edges", "ctc_loss", None, {"zero_infinity": zero_infinity})
    got, (got_grad,) = _value_and_grads(case, [logits, *rest], reduction, FAST)
    assert evaluate_spy == []
    want, (want_grad,) = _value_and_grads(case, [logits, *rest], reduction, PORTABLE)
    assert_close(got, want, torch.float64, "value")
    assert_close(got_grad, want_grad, torch.float64, "gradient")
    losses = anyloss.ctc_loss(logits, *rest, reduction="none", zero_infinity=zero_infinity)
    assert (losses[:2] == (0.0 if zero_infinity else INF)).all() and losses[3] == 0.0
    assert torch.isfinite(got_grad).all() and (got_grad[:2] == 0).all()
    peer = F.ctc_loss(logits.log_softmax(-1).transpose(0, 1), *rest, reduction="none",
                      zero_infinity=zero_infinity)
    assert_close(losses, peer, torch.float64, "PyTorch's values")


def test_ctc_float32_and_half():
    """float32, float16 and bfloat16 logits through the kernel (half computed
    in float32), as the portable code."""
    logits, *rest = _ctc_edges()
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        x = logits.clamp(max=100).to(dtype)
        got = anyloss.ctc_loss(x, *rest, reduction="none")
        with _native.portable():
            want = anyloss.ctc_loss(x, *rest, reduction="none")
        assert_close(got, want, dtype, str(dtype))


# ---------------------------------------------------------- training options


def _training_arrays(loss, dtype, seed=0):
    """Arrays and keyword arrays of a call with every training option that
    ``loss`` has; class 2 is both a real class and the ignore_index."""
    g = _gen(seed)
    if loss == "binary_cross_entropy":
        x, t = _normal(g, (6, 5), 3.0), _uniform(g, (6, 5), 0.0, 1.0)
        return [x.to(dtype), t.to(dtype)], {"pos_weight": _uniform(g, (5,), 0.2, 3.0).to(dtype)}
    x = _normal(g, (8, 5), 2.0)
    if loss == "nll_loss":
        x = torch.log_softmax(x, -1)
    y = _classes(g, (8,), 5)
    y[[1, 4]] = 2
    return [x.to(dtype), y], {"class_weights": _uniform(g, (5,), 0.2, 2.0).to(dtype)}


# (id, loss, keywords besides the arrays, the kernel that runs or None: the formula)
TRAINING = [
    ("ce-class-weights", "cross_entropy", {}, "cross_entropy_loss"),
    ("ce-ignore", "cross_entropy", {"ignore_index": 2, "class_weights": None}, "cross_entropy_loss"),
    ("ce-both-smoothing", "cross_entropy", {"ignore_index": 2, "label_smoothing": 0.1},
     "cross_entropy_loss"),
    ("ce-z-loss", "cross_entropy", {"ignore_index": 2, "z_loss": 1e-3}, None),
    ("ce-softcap", "cross_entropy", {"logit_softcap": 3.0}, None),
    ("nll-both", "nll_loss", {"ignore_index": 2}, "nll_loss_nd"),
    ("bce-pos-weight", "binary_cross_entropy", {}, "binary_cross_entropy_with_logits"),
    ("bce-probs-pos-weight", "binary_cross_entropy", {"with_logits": False}, None),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", (torch.float32, torch.float64), ids=str)
@pytest.mark.parametrize("i", range(len(TRAINING)), ids=[t[0] for t in TRAINING])
def test_training_options_match_portable(i, dtype, reduction, evaluate_spy, monkeypatch):
    """With class weights, ignore_index and pos_weight torch's kernel runs and
    gives the formula's values and gradients; z-loss and soft-capping, which
    no kernel has, run the formula."""
    id_, loss, kwargs, kernel = TRAINING[i]
    arrays, options = _training_arrays(loss, dtype)
    if loss == "binary_cross_entropy" and not kwargs.get("with_logits", True):
        arrays[0] = torch.sigmoid(arrays[0])
    options = {k: v for k, v in {**options, **kwargs}.items() if v is not None or k != "class_weights"}
    case = Case(id_, loss, None, options)
    calls = []
    if kernel is not None:
        owner = torch if hasattr(torch, kernel) and kernel.startswith("binary") else torch._C._nn
        original = getattr(owner, kernel)
        monkeypatch.setattr(owner, kernel, lambda *a, **k: calls.append(kernel) or original(*a, **k))
    got, got_grads = _value_and_grads(case, arrays, reduction, FAST)
    ran = list(evaluate_spy)
    want, want_grads = _value_and_grads(case, arrays, reduction, PORTABLE)
    assert_close(got, want, dtype, f"{id_} value")
    for g, w in zip(got_grads, want_grads):
        assert_close(g, w, dtype, f"{id_} gradient")
    if kernel is None:
        assert ran == [loss], f"{id_}: the formula did not run"
    else:
        assert calls and ran == [], f"{id_}: {kernel} did not run alone"


@pytest.mark.parametrize("loss", ["cross_entropy", "nll_loss"])
def test_all_ignored_mean_runs_the_formula(loss, evaluate_spy):
    """torch's mean over no row is NaN: the formula's 0, with a zero gradient."""
    x = torch.log_softmax(torch.randn(4, 3, dtype=torch.float64), -1).requires_grad_()
    out = getattr(anyloss, loss)(x, torch.full((4,), 1), ignore_index=1, reduction="mean")
    out.backward()
    assert out.item() == 0.0 and evaluate_spy == [loss]
    assert torch.count_nonzero(x.grad) == 0


def test_nan_logits_of_ignored_rows_run_the_formula(evaluate_spy):
    """torch's gradient of a NaN logit in an ignored row is NaN (its loss is
    0): read on the host, the formula gives the zero gradient."""
    x = torch.randn(4, 3, dtype=torch.float64)
    x[2] = math.nan
    x.requires_grad_()
    y = torch.tensor([0, 1, 2, 1])
    out = anyloss.cross_entropy(x, y, ignore_index=2, reduction="sum")
    out.backward()
    assert math.isfinite(out.item()) and evaluate_spy == ["cross_entropy"]
    assert torch.count_nonzero(x.grad[2]) == 0 and torch.isfinite(x.grad).all()
    with torch.no_grad():  # no gradient: torch's value stands
        anyloss.cross_entropy(x, y, ignore_index=2, reduction="sum")
    assert evaluate_spy == ["cross_entropy"]


def test_ignore_index_out_of_range_raises_only_for_other_indices():
    x = torch.randn(3, 5)
    assert anyloss.cross_entropy(x, torch.tensor([0, -100, 4]), ignore_index=-100).shape == (3,)
    with pytest.raises(ValueError, match=r"from 0 to 7 \(besides ignore_index=-100\)"):
        anyloss.cross_entropy(x, torch.tensor([7, -100, 4]), ignore_index=-100)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_probabilities_with_class_weights_run_the_kernel(reduction, evaluate_spy, monkeypatch):
    """torch's kernel computes our formula with class weights and probability
    targets (without them MLX's value differs for targets not summing to 1)."""
    g = _gen(3)
    x, p = _ce_probs(g, (6, 5))
    w = _uniform(g, (5,), 0.2, 2.0)
    calls, kernel = [], torch._C._nn.cross_entropy_loss
    monkeypatch.setattr(torch._C._nn, "cross_entropy_loss", lambda *a: calls.append(1) or kernel(*a))
    leaf = x.clone().requires_grad_()
    got = anyloss.cross_entropy(leaf, p, reduction=reduction, class_weights=w, label_smoothing=0.1)
    (got_grad,) = torch.autograd.grad(got.sum(), leaf)
    assert calls and evaluate_spy == []
    with _native.portable():
        want = anyloss.cross_entropy(leaf, p, reduction=reduction, class_weights=w, label_smoothing=0.1)
        (want_grad,) = torch.autograd.grad(want.sum(), leaf)
    assert_close(got, want, torch.float64, "value")
    assert_close(got_grad, want_grad, torch.float64, "gradient")

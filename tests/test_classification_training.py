"""The training options of cross_entropy, nll_loss and binary_cross_entropy
(class_weights, ignore_index, z_loss, logit_softcap, pos_weight) against
PyTorch's numbers where PyTorch has the option, and against float64
formulas where it has not, on every library, with gradients."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import anyloss
from backends import LIBRARIES, to_lib, to_numpy

N, C = 7, 5
RNG = np.random.default_rng(12)
LOGITS = RNG.standard_normal((N, C)) * 3
LABELS = RNG.integers(0, C, N)
LABELS[[1, 4]] = 2  # ignore_index=2 is also a real class
CLASS_WEIGHTS = RNG.random(C) + 0.2
EXAMPLE_WEIGHTS = RNG.random(N) + 0.5
PROBS = RNG.dirichlet(np.ones(C), N)
LOG_PROBS = np.log(RNG.dirichlet(np.ones(C), N))
TOL = {"float64": 1e-10, "float32": 2e-5}


def _t(a, grad=False):
    return torch.tensor(a, dtype=torch.float64 if np.asarray(a).dtype.kind == "f" else torch.int64,
                        requires_grad=grad)


def _torch_ce(x, smoothing, class_weights, ignore_index, reduction, weights=None):
    """PyTorch's cross entropy; per-example weights scale its unreduced loss,
    whose 'mean' divides by PyTorch's own denominator."""
    kw = dict(weight=None if class_weights is None else _t(class_weights), label_smoothing=smoothing,
              ignore_index=-100 if ignore_index is None else ignore_index)
    if weights is None:
        return F.cross_entropy(x, _t(LABELS), reduction=reduction, **kw)
    loss = F.cross_entropy(x, _t(LABELS), reduction="none", **kw) * _t(weights)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    keep = LABELS != (-100 if ignore_index is None else ignore_index)
    w = np.ones(C) if class_weights is None else class_weights
    return loss.sum() / float((w[LABELS] * keep).sum())


CE_COMBOS = list(itertools.product((0.0, 0.2), (False, True), (None, 2), ("none", "mean", "sum"), (False, True)))


@pytest.mark.parametrize(("smoothing", "weighted_classes", "ignore_index", "reduction", "per_example"), CE_COMBOS)
def test_cross_entropy_matches_pytorch_with_gradients(smoothing, weighted_classes, ignore_index, reduction, per_example):
    cw = CLASS_WEIGHTS if weighted_classes else None
    ew = EXAMPLE_WEIGHTS if per_example else None
    x_ref, x = _t(LOGITS, True), _t(LOGITS, True)
    want = _torch_ce(x_ref, smoothing, cw, ignore_index, reduction, ew)
    got = anyloss.cross_entropy(x, _t(LABELS), None if ew is None else _t(ew), label_smoothing=smoothing,
                                reduction=reduction, class_weights=None if cw is None else _t(cw),
                                ignore_index=ignore_index)
    np.testing.assert_allclose(to_numpy(got), to_numpy(want), rtol=1e-12, atol=1e-14)
    got.sum().backward()
    want.sum().backward()
    np.testing.assert_allclose(to_numpy(x.grad), to_numpy(x_ref.grad), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("lib", LIBRARIES)
@pytest.mark.parametrize("dtype", ("float32", "float64"))
def test_cross_entropy_options_on_every_library(lib, dtype):
    if lib == "mlx" and dtype == "float64":
        pytest.skip("MLX computes float64 on the GPU only; float32 covers MLX")
    for smoothing, reduction in (( 0.1, "mean"), (0.0, "none")):
        want = to_numpy(_torch_ce(_t(LOGITS), smoothing, CLASS_WEIGHTS, 2, reduction))
        got = anyloss.cross_entropy(
            to_lib(lib, LOGITS.astype(dtype)), to_lib(lib, LABELS), label_smoothing=smoothing,
            reduction=reduction, class_weights=to_lib(lib, CLASS_WEIGHTS.astype(dtype)), ignore_index=2,
        )
        assert str(got.dtype).endswith(dtype)
        np.testing.assert_allclose(to_numpy(got), want, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("smoothing", (0.0, 0.3))
@pytest.mark.parametrize("reduction", ("none", "mean", "sum"))
def test_probability_targets_with_class_weights_match_pytorch(smoothing, reduction):
    want = F.cross_entropy(_t(LOGITS), _t(PROBS), weight=_t(CLASS_WEIGHTS), label_smoothing=smoothing,
                           reduction=reduction)
    for lib in ("numpy", "jax", "torch"):
        got = anyloss.cross_entropy(to_lib(lib, LOGITS), to_lib(lib, PROBS), label_smoothing=smoothing,
                                    reduction=reduction, class_weights=to_lib(lib, CLASS_WEIGHTS))
        np.testing.assert_allclose(to_numpy(got), to_numpy(want), rtol=1e-12)


def _z_softcap_reference(z_loss, softcap, class_weights, ignore_index):
    """Float64, from the definitions: c tanh(x / c), then the (weighted) cross
    entropy plus z_loss * logsumexp^2 per row kept, over the rows' total weight."""
    x = LOGITS if softcap is None else softcap * np.tanh(LOGITS / softcap)
    keep = np.ones(N, bool) if ignore_index is None else LABELS != ignore_index
    w = np.ones(C) if class_weights is None else class_weights
    lse = np.log(np.exp(x).sum(axis=1))
    rows = w[LABELS] * (lse - x[np.arange(N), LABELS] + z_loss * lse**2) * keep
    return rows, rows.sum() / (w[LABELS] * keep).sum()


@pytest.mark.parametrize("lib", ("numpy", "torch", "jax", "mlx"))
@pytest.mark.parametrize(("z_loss", "softcap", "weighted_classes", "ignore_index"),
                         [(1e-2, None, False, None), (0.0, 4.0, False, None), (1e-3, 3.0, True, 2)])
def test_z_loss_and_softcap_against_float64(lib, z_loss, softcap, weighted_classes, ignore_index):
    cw = CLASS_WEIGHTS if weighted_classes else None
    rows, mean = _z_softcap_reference(z_loss, softcap, cw, ignore_index)
    dtype = "float32" if lib == "mlx" else "float64"
    kw = dict(z_loss=z_loss, logit_softcap=softcap, ignore_index=ignore_index,
              class_weights=None if cw is None else to_lib(lib, cw.astype(dtype)))
    x, y = to_lib(lib, LOGITS.astype(dtype)), to_lib(lib, LABELS)
    np.testing.assert_allclose(to_numpy(anyloss.cross_entropy(x, y, **kw)), rows, rtol=TOL[dtype])
    np.testing.assert_allclose(to_numpy(anyloss.cross_entropy(x, y, reduction="mean", **kw)), mean, rtol=TOL[dtype])


def test_z_loss_gradient_is_in_the_loss():
    """d/dx of z * lse^2 is 2 z lse softmax(x): the gradient includes it."""
    x = _t(LOGITS, True)
    anyloss.cross_entropy(x, _t(LABELS), reduction="sum", z_loss=0.1).backward()
    lse = torch.logsumexp(_t(LOGITS), 1, keepdim=True)
    soft = torch.softmax(_t(LOGITS), 1)
    want = soft - F.one_hot(_t(LABELS), C) + 0.2 * lse * soft
    np.testing.assert_allclose(to_numpy(x.grad), to_numpy(want), rtol=1e-10)


@pytest.mark.parametrize("weighted_classes", (False, True))
@pytest.mark.parametrize("ignore_index", (None, 2))
@pytest.mark.parametrize("reduction", ("none", "mean", "sum"))
def test_nll_loss_matches_pytorch(weighted_classes, ignore_index, reduction):
    cw = CLASS_WEIGHTS if weighted_classes else None
    x_ref, x = _t(LOG_PROBS, True), _t(LOG_PROBS, True)
    want = F.nll_loss(x_ref, _t(LABELS), weight=None if cw is None else _t(cw),
                      ignore_index=-100 if ignore_index is None else ignore_index, reduction=reduction)
    got = anyloss.nll_loss(x, _t(LABELS), reduction=reduction, class_weights=None if cw is None else _t(cw),
                           ignore_index=ignore_index)
    np.testing.assert_allclose(to_numpy(got), to_numpy(want), rtol=1e-12)
    got.sum().backward()
    want.sum().backward()
    np.testing.assert_allclose(to_numpy(x.grad), to_numpy(x_ref.grad), rtol=1e-12)
    for lib in ("numpy", "jax", "mlx", "dask"):
        dtype = "float32" if lib == "mlx" else "float64"
        got = anyloss.nll_loss(to_lib(lib, LOG_PROBS.astype(dtype)), to_lib(lib, LABELS), reduction=reduction,
                               class_weights=None if cw is None else to_lib(lib, cw.astype(dtype)),
                               ignore_index=ignore_index)
        np.testing.assert_allclose(to_numpy(got), to_numpy(want), rtol=TOL[dtype])


@pytest.mark.parametrize("with_logits", (True, False))
@pytest.mark.parametrize("reduction", ("none", "mean", "sum"))
@pytest.mark.parametrize("scalar", (False, True))
def test_pos_weight_matches_pytorch(with_logits, reduction, scalar):
    x = RNG.standard_normal((N, C)) * 3
    t = (RNG.random((N, C)) < 0.5).astype(float)
    pw = np.asarray(2.5) if scalar else RNG.random(C) * 3
    x_ref, xt = _t(x, True), _t(x, True)
    want = F.binary_cross_entropy_with_logits(x_ref, _t(t), pos_weight=_t(pw), reduction=reduction)
    inputs = xt if with_logits else torch.sigmoid(xt)
    got = anyloss.binary_cross_entropy(inputs, _t(t), with_logits=with_logits, reduction=reduction,
                                       pos_weight=_t(pw))
    np.testing.assert_allclose(to_numpy(got), to_numpy(want), rtol=1e-9)
    got.sum().backward()
    want.sum().backward()
    np.testing.assert_allclose(to_numpy(xt.grad), to_numpy(x_ref.grad), rtol=1e-8, atol=1e-12)
    for lib in ("numpy", "jax", "mlx"):
        dtype = "float32" if lib == "mlx" else "float64"
        arr = x if with_logits else 1 / (1 + np.exp(-x))
        got = anyloss.binary_cross_entropy(to_lib(lib, arr.astype(dtype)), to_lib(lib, t.astype(dtype)),
                                           with_logits=with_logits, reduction=reduction,
                                           pos_weight=to_lib(lib, pw.astype(dtype)))
        np.testing.assert_allclose(to_numpy(got), to_numpy(want), rtol=TOL[dtype] * 10)


# ------------------------------------------------------------------ edge cases


@pytest.mark.parametrize("lib", ("numpy", "torch", "jax", "mlx"))
def test_all_rows_ignored_mean_is_zero_with_a_connected_zero_gradient(lib):
    y = np.full(N, 3)
    if lib == "torch":
        x = _t(LOGITS, True)
        loss = anyloss.cross_entropy(x, _t(y), ignore_index=3, reduction="mean")
        loss.backward()
        assert loss.item() == 0.0 and loss.requires_grad
        assert torch.count_nonzero(x.grad) == 0
    elif lib == "jax":
        import jax

        value, grad = jax.value_and_grad(
            lambda a: anyloss.cross_entropy(a, to_lib("jax", y), ignore_index=3, reduction="mean")
        )(to_lib("jax", LOGITS))
        assert float(value) == 0.0 and not np.any(to_numpy(grad))
    elif lib == "mlx":
        import mlx.core as mx

        value, grad = mx.value_and_grad(
            lambda a: anyloss.cross_entropy(a, mx.array(y), ignore_index=3, reduction="mean")
        )(mx.array(LOGITS.astype(np.float32)))
        assert float(value) == 0.0 and not np.any(to_numpy(grad))
    else:
        assert float(anyloss.cross_entropy(LOGITS, y, ignore_index=3, reduction="mean")) == 0.0
    assert float(to_numpy(anyloss.nll_loss(to_lib(lib, LOG_PROBS.astype(np.float32)), to_lib(lib, y),
                                           ignore_index=3, reduction="mean"))) == 0.0


@pytest.mark.parametrize("lib", ("torch", "jax", "mlx"))
def test_ignored_rows_with_nan_logits_give_finite_loss_and_zero_gradient(lib):
    x = LOGITS.astype(np.float32).copy()
    x[1] = np.nan  # label 2: ignored
    kw = dict(ignore_index=2, reduction="mean", z_loss=1e-3, logit_softcap=5.0, class_weights=None)
    keep = LABELS != 2
    want = F.cross_entropy(_t(np.where(keep[:, None], LOGITS, 0.0)), _t(LABELS), ignore_index=2)
    if lib == "torch":
        xt = torch.tensor(x, requires_grad=True)
        loss = anyloss.cross_entropy(xt, _t(LABELS), **{**kw, "z_loss": 0.0, "logit_softcap": None})
        loss.backward()
        grad = xt.grad.numpy()
    elif lib == "jax":
        import jax

        loss, grad = jax.value_and_grad(
            lambda a: anyloss.cross_entropy(a, to_lib("jax", LABELS), **{**kw, "z_loss": 0.0, "logit_softcap": None})
        )(to_lib("jax", x))
    else:
        import mlx.core as mx

        loss, grad = mx.value_and_grad(
            lambda a: anyloss.cross_entropy(a, mx.array(LABELS), **{**kw, "z_loss": 0.0, "logit_softcap": None})
        )(mx.array(x))
    np.testing.assert_allclose(float(to_numpy(loss)), float(want), rtol=1e-5)
    grad = to_numpy(grad)
    assert np.all(np.isfinite(grad)) and not np.any(grad[~keep])


@pytest.mark.parametrize("lib", ("torch", "jax", "mlx"))
def test_nll_ignored_rows_with_nan_reach_no_gradient(lib):
    """A NaN in an ignored row stays out of the loss and of the gradients in
    both the log-probabilities and the class weights."""
    x = LOG_PROBS.astype(np.float32).copy()
    x[1] = np.nan  # label 2: ignored
    keep = LABELS != 2
    xt, wt = _t(np.where(keep[:, None], LOG_PROBS, 0.0), grad=True), _t(CLASS_WEIGHTS, grad=True)
    row_w = wt[_t(LABELS)] * _t(keep.astype(np.float64))  # torch's nll takes no weight gradient
    want = -(row_w * xt.gather(1, _t(LABELS)[:, None])[:, 0]).sum() / row_w.sum()
    want.backward()
    kw = dict(ignore_index=2, reduction="mean")
    if lib == "torch":
        a, w = torch.tensor(x, requires_grad=True), torch.tensor(CLASS_WEIGHTS.astype(np.float32), requires_grad=True)
        loss = anyloss.nll_loss(a, _t(LABELS), class_weights=w, **kw)
        loss.backward()
        grads = a.grad.numpy(), w.grad.numpy()
    elif lib == "jax":
        import jax

        loss, grads = jax.value_and_grad(
            lambda a, w: anyloss.nll_loss(a, to_lib("jax", LABELS), class_weights=w, **kw), argnums=(0, 1)
        )(to_lib("jax", x), to_lib("jax", CLASS_WEIGHTS.astype(np.float32)))
    else:
        import mlx.core as mx

        loss, grads = mx.value_and_grad(
            lambda a, w: anyloss.nll_loss(a, mx.array(LABELS), class_weights=w, **kw), argnums=(0, 1)
        )(mx.array(x), mx.array(CLASS_WEIGHTS.astype(np.float32)))
    np.testing.assert_allclose(float(to_numpy(loss)), float(want), rtol=1e-5)
    gx, gw = (to_numpy(g) for g in grads)
    assert not np.any(gx[~keep]) and np.all(np.isfinite(gx))
    np.testing.assert_allclose(gx[keep], xt.grad.numpy()[keep], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gw, wt.grad.numpy(), rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ bad inputs


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: anyloss.cross_entropy(LOGITS, LABELS, class_weights=np.ones(C + 1)), ValueError,
         "one weight per class"),
        (lambda: anyloss.cross_entropy(LOGITS, LABELS, class_weights=-np.ones(C)), ValueError,
         "class_weights must be >= 0"),
        (lambda: anyloss.cross_entropy(LOGITS, PROBS, ignore_index=1), ValueError,
         "ignore_index applies to class-index targets"),
        (lambda: anyloss.cross_entropy(LOGITS, LABELS, ignore_index=1.0), TypeError,
         "ignore_index must be an int"),
        (lambda: anyloss.cross_entropy(LOGITS, np.where(LABELS == 2, 9, LABELS), ignore_index=2), ValueError,
         "besides ignore_index=2"),
        (lambda: anyloss.cross_entropy(LOGITS, LABELS, logit_softcap=0.0), ValueError, "logit_softcap"),
        (lambda: anyloss.cross_entropy(LOGITS, LABELS, logit_softcap=math.inf), ValueError, "logit_softcap"),
        (lambda: anyloss.cross_entropy(LOGITS, LABELS, z_loss=-1e-4), ValueError, "z_loss"),
        (lambda: anyloss.nll_loss(LOG_PROBS, LABELS, class_weights=np.ones((C, 1))), ValueError,
         "one weight per class"),
        (lambda: anyloss.binary_cross_entropy(LOGITS, (LOGITS > 0) * 1.0, pos_weight=np.ones(C - 1)),
         ValueError, "pos_weight has shape"),
    ],
    ids=["cw-shape", "cw-negative", "ignore-probs", "ignore-float", "index-out-of-range", "softcap-0",
         "softcap-inf", "z-negative", "nll-cw-shape", "pos-weight-shape"],
)
def test_bad_training_options(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_out_of_range_index_under_jit_is_nan_unless_ignored():
    import jax

    y = LABELS.copy()
    y[0] = 99
    f = jax.jit(lambda a, t: anyloss.cross_entropy(a, t, ignore_index=2))
    loss = to_numpy(f(to_lib("jax", LOGITS), to_lib("jax", y)))
    assert math.isnan(loss[0]) and np.all(np.isfinite(loss[1:])) and loss[1] == 0.0


def test_mlx_calls_keep_mlx_answers():
    """Without the new keywords every call is MLX's (positional order too)."""
    import mlx.core as mx
    import mlx.nn.losses as mlx_losses

    x, y, w = LOGITS.astype(np.float32), LABELS, EXAMPLE_WEIGHTS.astype(np.float32)
    want = mlx_losses.cross_entropy(mx.array(x), mx.array(y), mx.array(w), -1, 0.1, "mean")
    got = anyloss.cross_entropy(x, y, w, -1, 0.1, "mean")
    np.testing.assert_allclose(float(got), float(to_numpy(want)), rtol=1e-6)


def test_torch_compile_with_training_options():
    import warnings

    torch._dynamo.reset()
    kw = dict(class_weights=_t(CLASS_WEIGHTS), ignore_index=2, z_loss=1e-3, logit_softcap=5.0, reduction="mean")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        compiled = torch.compile(lambda a, t: anyloss.cross_entropy(a, t, **kw), backend="aot_eager", fullgraph=True)
        got = compiled(_t(LOGITS), _t(LABELS))
    np.testing.assert_allclose(got.item(), anyloss.cross_entropy(_t(LOGITS), _t(LABELS), **kw).item(), rtol=1e-12)

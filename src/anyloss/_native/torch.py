"""Fast paths for PyTorch tensors on the CPU.

* Without autograd (no input requires a gradient, or grad mode is off) the
  loss is computed by the NumPy fast paths on zero-copy views of the tensors:
  the same algorithm, a cache-sized block at a time, on reused buffers.
  PyTorch would allocate a fresh array-sized tensor per operation, and on a
  CPU each fresh buffer costs its page faults.  This covers mse, l1, huber,
  BCE with logits, cross_entropy, cosine, hinge, margin_ranking, kl_div and
  triplet (any axis, any p); a NumPy fast path that is missing or declines
  returns ``NotImplemented`` and the rest of this module (or the portable
  code) runs.  bfloat16 results are computed in float32 and rounded once, as
  the portable reduction does.  log_cosh and gaussian_nll run the portable
  terms with torch operations a block at a time instead (torch's vectorized
  ``sinh``, ``log1p`` and ``log`` beat NumPy's scalar loops: on 2**24 float32
  elements 100 ms against 207 ms, and 80 against 143 ms).
* With autograd: ``mse_loss``, ``l1_loss`` and ``huber_loss`` call
  ``torch.nn.functional``, whose formulas are the portable ones (Huber only
  where ``delta**2 / 2`` is finite, so that the two forms agree), and
  ``cross_entropy`` with class indices is an autograd function whose forward
  is the NumPy fast path and whose backward is ``softmax - one_hot`` written
  with differentiable torch operations (double backward works);
  ``cosine_similarity_loss`` along the last axis is one too (forward: the
  NumPy row statistics, unscaled; backward ``(b/|b| - cos a/|a|) / |a|``),
  where no vector needs the portable code's scaling (else that code runs).
* ``smooth_l1_loss``: ``F.smooth_l1_loss`` and its fused backward where they
  equal the portable code (beta a power of two >= 1 with ``beta**2 / 2``
  finite: see :func:`_native_smooth_l1`; the default beta = 1 gives the same
  bits), with and without autograd; for double backward the portable
  gradient formula (second derivative 0 at ``d == 0``, as the portable code).
  beta = 0 is the L1 loss.  Other betas: the elementwise function below.
* ``log_cosh_loss``, ``gaussian_nll_loss``, ``hinge_loss``,
  ``margin_ranking_loss`` (and smooth_l1 with other betas) with autograd:
  one autograd function, forward the loss reduced inside (no loss-sized
  tensor for 'mean'/'sum'), backward the portable code's gradients written
  as autograd composes them (log_cosh: ``tanh(x - y)``, which the portable
  code's two branches give to a few ulps), a block at a time into the
  gradient tensors, or differentiable on whole tensors for double backward.
  log_cosh's terms are ``log1p(2 sinh(a/2)**2)`` for every error (the
  portable form below 1, as accurate above 1 until sinh overflows; a block
  where it overflows is computed the portable way).
* ``kl_div_loss`` along the last axis: an autograd function, forward the
  NumPy rows (unreduced), backward ``-exp(t) g`` and ``g exp(t) + g y exp(t)``
  with the portable mask (0 where ``exp(t) == 0`` meets a non-finite
  ``t - x``), skipped for a block whose differences sum to a finite number.
* ``triplet_loss`` with p = 2 along the last axis: the unscaled squared
  distances per row in one blocked pass; where any sum overflows, is nan, or
  is small enough for subnormal squares to matter (zero distances with
  eps = 0), the portable scaled code runs.  Backward ``(a - p) / dp`` and
  ``(a - n) / dn`` times the upstream gradient where ``dp - dn + margin >= 0``
  (the portable clamp's tie rule), a block of rows at a time.
* ``nll_loss``: ``F.nll_loss`` with the class axis moved to position 1 (its
  mean divides by the number of targets, which the range check keeps valid;
  gradient ``-g`` scattered), float32/float64, where the moved tensor is
  2-D or contiguous.

Measured (``python benchmarks/bench.py --libraries torch --losses
smooth_l1_loss,log_cosh_loss,kl_div_loss,triplet_loss,nll_loss,binary_cross_entropy,mse_loss,gaussian_nll_loss,hinge_loss,margin_ranking_loss
--repeat 3 --portable --out '' --plot ''``, a 2-core machine shared with
other jobs, so only the ratios of one run compare), ours/peer before ->
after, forward and forward+backward: smooth_l1 2.17/11.08 -> 1.22/1.05
(the forward is the same ``F.smooth_l1_loss`` call as the peer's; two
reruns of it alone: 0.93, 0.96), log_cosh 3.75/5.13 -> 0.52/0.55, kl_div
2.34/2.42 -> 0.43/0.80, triplet 2.13/2.33 -> 0.14/0.37, gaussian 0.91/1.00
-> 0.26/0.35, hinge 0.72/1.56 -> 0.12/0.96, margin_ranking 0.96/1.35 ->
0.13/0.49, nll forward+backward 1.02 -> 1.03.  What remains:

* nll_loss forward: 5.18 -> 3.66 (0.23 ms against 0.06 ms).  The call
  itself is ``F.nll_loss`` (0.05 ms on 4096 x 32768); the portable code's
  checks before the dispatch (the class-index range check reads the
  targets' minimum and maximum, about 0.03 ms, plus the namespace and shape
  checks) and the dispatch cost more than that, so the ratio is bound by
  per-call overhead, not by the data.
* binary_cross_entropy forward+backward (code unchanged here): 1.90 and
  1.17 in the two runs, 1.29 in the last full run.  The backward computes
  the portable code's composition of the gradient (``g p - dz``,
  ``dz = g / (e + 1) e``), about 12 torch operations per block (125 ms on
  2**24 elements, the forward 128 ms, both while the machine was loaded),
  where ``F.binary_cross_entropy_with_logits`` differentiates
  ``sigmoid(x) - t`` in 3; the two round differently (not a few ulps apart
  where the gradient is near 0), so its kernel cannot be used.  Comparisons
  producing bool masks cost about 4 times an arithmetic operation here
  (27 us against 8 us per 32768 float32); fusing the gradient into the
  forward's blocks (sharing ``exp(-|x|)``) is what would move it.
* mse_loss forward+backward: ``F.mse_loss`` itself (its gradient
  ``2/n (x - y) g`` is the portable one bit for bit); timed alone,
  interleaved, 15 times each: best 207 ms (ours) against 218 ms (peer), so
  the 1.11x of the last full run is noise (1.23 -> 1.04 in the two runs
  here, same code).

Nothing here runs under ``torch.compile`` (which fuses the portable code),
under ``torch.func`` transforms, or on other devices: those calls return
``NotImplemented`` and the portable code runs.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .._common import reduce
from . import numpy as _np

_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64, torch.float16: np.float16}
_wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", lambda t: False)


def _plain(*tensors: Any) -> bool:
    """CPU tensors outside of torch.compile and torch.func."""
    if torch.compiler.is_compiling():
        return False
    return all(
        t is None
        or (t.device.type == "cpu" and not t.is_meta and not _wrapped(t) and t.layout == torch.strided)
        for t in tensors
    )


def _needs_grad(*tensors: Any) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _as_numpy(t: Any) -> Any:
    return None if t is None else t.detach().numpy()


def _numpy_out(out_dtype: Any) -> Any:
    """The NumPy dtype to compute ``out_dtype`` results in: bfloat16 (which
    NumPy lacks) is computed in float32 and rounded once at the end, as the
    portable reduction does."""
    if out_dtype == torch.bfloat16:
        return np.float32
    return _NUMPY_DTYPES.get(out_dtype)


def _numpy_result(result: Any, out_dtype: Any) -> Any:
    if result is NotImplemented:
        return result
    out = torch.from_numpy(np.ascontiguousarray(result) if result.ndim else result)
    return _finish(out, out_dtype)


def _viewable(t: Any) -> bool:
    return t is None or not isinstance(t, torch.Tensor) or not (t.is_conj() or t.is_neg())


def _call_numpy(name: str, out_dtype: Any, *args: Any) -> Any:
    """``anyloss._native.numpy.<name>(np, *args, out_dtype)`` with the tensors
    among ``args`` passed as zero-copy NumPy views; NotImplemented when that
    fast path is missing or declines."""
    return _numpy_call(getattr(_np, name, None), out_dtype, *args)


def _numpy_call(func: Any, out_dtype: Any, *args: Any) -> Any:
    """``func(np, *args, dtype)`` with the tensors among ``args`` (None
    allowed) as zero-copy NumPy views, the result as a tensor in
    ``out_dtype``; NotImplemented when ``func`` is None, a tensor cannot be
    viewed (bfloat16, say: NumPy has no such dtype) or ``func`` declines."""
    dtype = _numpy_out(out_dtype)
    if func is None or dtype is None or not all(_viewable(a) for a in args):
        return NotImplemented
    if any(isinstance(a, torch.Tensor) and a.is_floating_point() and a.dtype not in _NUMPY_DTYPES for a in args):
        return NotImplemented
    views = [_as_numpy(a) if isinstance(a, torch.Tensor) else a for a in args]
    return _numpy_result(func(np, *views, dtype), out_dtype)


def _finish(loss: Any, out_dtype: Any) -> Any:
    return loss if loss.dtype == out_dtype else loss.to(out_dtype)


# ------------------------------------------------------------------ elementwise


def mse_loss(xp, x, y, reduction, out_dtype):
    if not _plain(x, y):
        return NotImplemented
    if not _needs_grad(x, y):
        return _call_numpy("mse_loss", out_dtype, x, y, reduction)
    return _finish(F.mse_loss(x, y, reduction=reduction), out_dtype)


def l1_loss(xp, x, y, reduction, out_dtype):
    if not _plain(x, y):
        return NotImplemented
    if not _needs_grad(x, y):
        return _call_numpy("l1_loss", out_dtype, x, y, reduction)
    return _finish(F.l1_loss(x, y, reduction=reduction), out_dtype)


def huber_loss(xp, x, y, delta, reduction, out_dtype):
    if not _plain(x, y):
        return NotImplemented
    if not _needs_grad(x, y):
        return _call_numpy("huber_loss", out_dtype, x, y, delta, reduction)
    if not 0.5 * delta * delta < torch.finfo(x.dtype).max:
        return NotImplemented
    return _finish(F.huber_loss(x, y, reduction=reduction, delta=delta), out_dtype)


# elements per block of the blocked torch loops below (torch does not split
# an operation of this size among its threads; ours share the blocks)
_BLOCK = 1 << 15


def _blocked(task: Any, n: int) -> None:
    """``task(start, stop)`` over ``range(n)`` a block at a time, on threads."""
    _blocked_rows(task, n, 1)


def _bce_terms(x, t):
    """The portable unreduced loss with probabilities (same operations)."""
    has_log = x > 0
    log_p = torch.where(has_log, torch.log(torch.where(has_log, x, 1.0)), -100.0)
    has_log1m = x < 1
    log_1mp = torch.where(has_log1m, torch.log1p(-torch.where(has_log1m, x, 0.0)), -100.0)
    return -(t * log_p.clamp(min=-100.0) + (1.0 - t) * log_1mp.clamp(min=-100.0))


def _bce_grads(x, t, g, with_logits, need_x, need_t):
    """Gradients of the portable unreduced loss, ``g`` times its derivatives
    with respect to ``x`` and ``t``, written as the portable code's own
    backward formulas compose them (so the values are the same); ``g`` is a
    0-d tensor or has ``x``'s shape.  Differentiable."""
    dx = dt = None
    if with_logits:
        positive = x >= 0
        p = torch.where(positive, 1.0 - t, -t)
        zero = p == 0
        if need_x:
            e = torch.exp(torch.where(positive, -x, x))
            dz = g / (e + 1.0) * e  # log1p's, then exp's derivative
            dx = g * p + torch.where(positive, -dz, dz)
        if need_t:  # p's derivative is -1; a non-finite x meets p == 0 as 0
            dt = -(g * torch.where(zero & ~torch.isfinite(x), 0.0, x))
        return dx, dt
    ng = -g
    has_log = x > 0
    x_log = torch.where(has_log, x, 1.0)
    log_p = torch.where(has_log, torch.log(x_log), -100.0)
    has_log1m = x < 1
    x_log1m = torch.where(has_log1m, x, 0.0)
    log_1mp = torch.where(has_log1m, torch.log1p(-x_log1m), -100.0)
    if need_x:
        g_a = torch.where(log_p >= -100.0, ng * t, 0.0)
        g_b = torch.where(log_1mp >= -100.0, ng * (1.0 - t), 0.0)
        dx = torch.where(has_log, g_a / x_log, 0.0) + torch.where(has_log1m, -(g_b / (-x_log1m + 1.0)), 0.0)
    if need_t:
        dt = ng * log_p.clamp(min=-100.0) + -(ng * log_1mp.clamp(min=-100.0))
    return dx, dt


def _logits_grad(x, t, g, out):
    """``out <- g * p + where(x >= 0, -dz, dz)`` of :func:`_bce_grads` for a
    finite ``g``, in place: ``-|x|`` is ``where(x >= 0, -x, x)`` up to the
    sign of a zero, and ``(x >= 0) - t`` is ``p``."""
    sign = (x >= 0).to(x.dtype)
    p = torch.sub(sign, t)
    p.mul_(g)
    e = torch.abs(x).neg_().exp_()
    dz = torch.add(e, 1.0)
    torch.div(g, dz, out=dz)
    dz.mul_(e)
    dz.mul_(sign.mul_(-2.0).add_(1.0))  # -dz where x >= 0
    torch.add(p, dz, out=out)


class _BinaryCrossEntropy(torch.autograd.Function):
    """Binary cross entropy, reduced; the forward is the NumPy fast path (with
    logits) or the portable formula a block at a time (probabilities), the
    backward the portable code's derivatives, a block at a time (double
    backward: the same formulas, differentiable)."""

    @staticmethod
    def forward(ctx, x, t, w, with_logits, reduction):
        ctx.save_for_backward(x, t, w)
        ctx.with_logits, ctx.reduction = with_logits, reduction
        dtype = _NUMPY_DTYPES[x.dtype]
        if with_logits:
            loss = _np.binary_cross_entropy(
                np, _as_numpy(x), _as_numpy(t), _as_numpy(w), True, reduction, dtype
            )
            return torch.from_numpy(np.ascontiguousarray(loss) if loss.ndim else loss)
        n = x.numel()
        xf, tf = x.reshape(-1), t.reshape(-1)
        wf = None if w is None else w.reshape(-1)
        out = torch.empty(n, dtype=x.dtype) if reduction == "none" else None
        totals: list[float] = []
        lock = threading.Lock()

        def task(i, j):
            loss = _bce_terms(xf[i:j], tf[i:j])
            if wf is not None:
                loss = loss * wf[i:j]
            if out is not None:
                out[i:j] = loss
            else:
                value = float(torch.sum(loss, dtype=torch.float64))
                with lock:
                    totals.append(value)

        _blocked(task, n)
        if out is not None:
            return out.reshape(x.shape)
        total = math.fsum(totals)
        return torch.tensor(total / n if reduction == "mean" else total, dtype=x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x, t, w = ctx.saved_tensors
        need_x, need_t = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        reduction, with_logits = ctx.reduction, ctx.with_logits
        g = grad / x.numel() if reduction == "mean" else grad  # the mean's derivative
        if torch.is_grad_enabled():  # double backward: differentiable, whole arrays
            if w is not None:
                g = g * w
            dx, dt = _bce_grads(x, t, g, with_logits, need_x, need_t)
            return dx, dt, None, None, None
        n = x.numel()
        xf, tf = x.reshape(-1), t.reshape(-1)
        wf = None if w is None else w.reshape(-1)
        gf = g.reshape(-1) if g.ndim else g
        dx = torch.empty(n, dtype=x.dtype) if need_x else None
        dt = torch.empty(n, dtype=x.dtype) if need_t else None

        # With logits, a finite g and no target gradient: the same values in
        # fewer operations, in place (g * p is where(p == 0, 0, g) * p there).
        short = with_logits and not need_t and bool(torch.isfinite(g).all())

        def task(i, j):
            gb = gf[i:j] if gf.ndim else gf
            if wf is not None:
                gb = gb * wf[i:j]
            if short:
                _logits_grad(xf[i:j], tf[i:j], gb, dx[i:j])
                return
            a, b = _bce_grads(xf[i:j], tf[i:j], gb, with_logits, need_x, need_t)
            if a is not None:
                dx[i:j] = a
            if b is not None:
                dt[i:j] = b

        _blocked(task, n)
        shape = x.shape
        return (
            None if dx is None else dx.reshape(shape),
            None if dt is None else dt.reshape(shape),
            None, None, None,
        )


def binary_cross_entropy(xp, x, t, weights, with_logits, reduction, out_dtype):
    if not _plain(x, t, weights):
        return NotImplemented
    if not _needs_grad(x, t, weights):
        return _call_numpy("binary_cross_entropy", out_dtype, x, t, weights, with_logits, reduction)
    if weights is not None and weights.requires_grad:
        return NotImplemented
    if x.dtype not in (torch.float32, torch.float64) or x.numel() == 0 or t.dtype != x.dtype:
        return NotImplemented
    w = None if weights is None else weights.to(x.dtype)
    if any(not a.is_contiguous() for a in (x, t) + (() if w is None else (w,))):
        return NotImplemented
    loss = _BinaryCrossEntropy.apply(x, t, w, with_logits, reduction)
    return _finish(loss, out_dtype)


class _Cosine(torch.autograd.Function):
    """Unreduced cosine along the last axis of rows whose squared norms need
    no scaling; the forward is the NumPy row statistics, the backward
    ``(b / |b| - cos a / |a|) / |a|`` above eps, ``b / eps`` below it."""

    @staticmethod
    def forward(ctx, a, b, loss, above, na, nb, floor):
        ctx.save_for_backward(a, b, loss, above, na, nb)
        ctx.floor = floor
        return loss.clone()

    @staticmethod
    def backward(ctx, grad):
        a, b, loss, above, na, nb = ctx.saved_tensors
        floor = ctx.floor
        if torch.is_grad_enabled():  # double backward: recompute differentiably
            na = torch.linalg.vector_norm(a, dim=-1)
            nb = torch.linalg.vector_norm(b, dim=-1)
            dot = torch.sum(a * b, dim=-1)
            loss = torch.where(above, dot / (na * nb), dot / (floor if floor > 0 else 1.0))
        inverse = 1.0 / floor if floor > 0 else 1.0
        g = grad.unsqueeze(-1)
        mask = above.unsqueeze(-1)
        ra, rb, c = (1 / na).unsqueeze(-1), (1 / nb).unsqueeze(-1), loss.unsqueeze(-1)
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_a = torch.where(mask, (b * rb - a * (ra * c)) * ra, b * inverse) * g
        if ctx.needs_input_grad[1]:
            grad_b = torch.where(mask, (a * ra - b * (rb * c)) * rb, a * inverse) * g
        return grad_a, grad_b, None, None, None, None, None


def cosine_similarity_loss(xp, a, b, axis, floor, reduction, out_dtype):
    if not _plain(a, b):
        return NotImplemented
    if _needs_grad(a, b):
        if (
            a.dtype not in (torch.float32, torch.float64) or axis != a.ndim - 1 or a.numel() == 0
            or not a.is_contiguous() or not b.is_contiguous() or a.is_conj() or b.is_conj()
        ):
            return NotImplemented
        c = a.shape[-1]
        rows = _np.cosine_rows(_as_numpy(a).reshape(-1, c), _as_numpy(b).reshape(-1, c), floor)
        if rows is None:
            return NotImplemented  # huge, tiny or zero vectors: the scaled portable code
        shape = a.shape[:-1]
        stats = [torch.from_numpy(v).reshape(shape) for v in rows]
        return reduce(xp, _Cosine.apply(a, b, *stats, floor), reduction, out_dtype)
    return _call_numpy("cosine_similarity_loss", out_dtype, a, b, axis, floor, reduction)


# ------------------------------------------------------------------ cross entropy


class _CrossEntropy(torch.autograd.Function):
    """Unreduced cross entropy with class indices along the last axis; the
    forward is the NumPy fast path, the backward ``softmax - one_hot``."""

    @staticmethod
    def forward(ctx, logits, targets, smoothing):
        loss = _np.cross_entropy(
            np, logits.detach().numpy(), targets.numpy(), None, logits.ndim - 1,
            smoothing, False, "none", _NUMPY_DTYPES[logits.dtype], _NUMPY_DTYPES[logits.dtype],
        )
        ctx.save_for_backward(logits, targets)
        ctx.smoothing = smoothing
        return torch.from_numpy(np.ascontiguousarray(loss))

    @staticmethod
    def backward(ctx, grad):
        logits, targets = ctx.saved_tensors
        s = ctx.smoothing
        g = grad.unsqueeze(-1)
        probs = torch.softmax(logits, dim=-1)
        index = targets.unsqueeze(-1)
        if torch.is_grad_enabled():  # double backward: out-of-place only
            out = probs * g
            out = out.scatter_add(-1, index, -(1.0 - s) * g)
            if s > 0:
                out = out - (s / logits.shape[-1]) * g
        else:
            out = probs.mul_(g)
            out.scatter_add_(-1, index, g * -(1.0 - s))
            if s > 0:
                out.sub_(g * (s / logits.shape[-1]))
        return out, None, None


def cross_entropy(xp, logits, targets, weights, axis, smoothing, probabilities, reduction, out_dtype, dtype):
    if probabilities or not _plain(logits, targets, weights) or logits.dtype not in _NUMPY_DTYPES:
        return NotImplemented
    if logits.dtype != dtype or not logits.is_contiguous() or logits.numel() == 0:
        return NotImplemented
    if not _needs_grad(logits, weights):
        return _numpy_call(
            lambda m, x, y, w, r, o: _np.cross_entropy(m, x, y, w, axis, smoothing, False, r, o, _NUMPY_DTYPES[dtype]),
            out_dtype, logits, targets, None if weights is None else weights.to(dtype), reduction,
        )
    if axis != logits.ndim - 1 or (weights is not None and weights.requires_grad):
        return NotImplemented
    loss = _CrossEntropy.apply(logits, targets, smoothing)
    if weights is not None:
        loss = loss * weights.to(dtype)
    return reduce(xp, loss, reduction, out_dtype)


# ------------------------------------------------------------------ smooth L1


def _native_smooth_l1(beta: float, dtype: Any) -> bool:
    """Whether ``F.smooth_l1_loss`` computes the portable values and gradients.

    Its loss is ``0.5 * d * d / beta`` and its gradient ``d / beta`` times the
    upstream gradient; the portable code's are ``(0.5 * d) * (d / beta)`` and
    ``(g * r) * 0.5 + (g * (0.5 * d)) / beta`` with ``r = d / beta``.  For a
    power of two ``beta >= 1`` every division by ``beta`` is exact (no
    subnormal quotient can reach a result above the smallest normal number)
    and the two roundings are the same one; ``0.5 * beta**2`` must be finite
    so that ``0.5 * d * d`` cannot overflow below ``beta``.  Both give the
    upstream gradient times ``sign(d)`` for ``|d| >= beta``, ``|d| == beta``
    included, and 0 at ``d == 0``."""
    if dtype not in (torch.float32, torch.float64):
        return False
    return beta >= 1.0 and math.frexp(beta)[0] == 0.5 and 0.5 * beta * beta < torch.finfo(dtype).max


class _SmoothL1(torch.autograd.Function):
    """``F.smooth_l1_loss`` and its fused backward (see
    :func:`_native_smooth_l1`); for double backward the portable gradient
    formula instead, differentiable: its second derivative at ``d == 0`` is
    the portable code's 0 (the derivative of ``|d|`` has slope 0 there), not
    the native ``1 / beta``."""

    @staticmethod
    def forward(ctx, x, y, beta, reduction):
        ctx.save_for_backward(x, y)
        ctx.beta, ctx.reduction = beta, reduction
        return F.smooth_l1_loss(x, y, reduction=reduction, beta=beta)

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        need = ctx.needs_input_grad[:2]
        if torch.is_grad_enabled():
            g = grad / x.numel() if ctx.reduction == "mean" else grad
            dx, dy = _smooth_l1_grads((ctx.beta,), g, need, x, y)
            return dx, dy, None, None
        enum = {"none": 0, "mean": 1, "sum": 2}[ctx.reduction]
        dx = torch.ops.aten.smooth_l1_loss_backward(grad, x, y, enum, ctx.beta)
        return dx if need[0] else None, -dx if need[1] else None, None, None


def smooth_l1_loss(xp, x, y, beta, reduction, out_dtype):
    if not _plain(x, y) or not (_viewable(x) and _viewable(y)):
        return NotImplemented
    if beta == 0:  # the L1 loss, as in the portable code
        return l1_loss(xp, x, y, reduction, out_dtype)
    if _native_smooth_l1(beta, x.dtype) and y.dtype == x.dtype:
        if _needs_grad(x, y):
            return _finish(_SmoothL1.apply(x, y, beta, reduction), out_dtype)
        return _finish(F.smooth_l1_loss(x, y, reduction=reduction, beta=beta), out_dtype)
    return _elementwise_loss("smooth_l1_loss", (x, y), (beta,), reduction, out_dtype)


# ------------------------------------------------- elementwise losses with autograd
#
# Each loss has its portable terms (the same torch operations as the portable
# code, applied to a block) and the gradients of the portable code written as
# autograd composes them: the same values, a block at a time in no-grad mode,
# or on whole tensors with differentiable operations for double backward.

_LOG2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _log_cosh_portable(x, y):
    err = x - y
    abs_err = torch.abs(err)
    small = abs_err < 1.0
    half = 0.5 * torch.where(small, err, 0.0)
    big = torch.where(small, 1.0, abs_err)
    return torch.where(
        small,
        torch.log1p(2.0 * torch.square(torch.sinh(half))),
        big + torch.log1p(torch.exp(-2.0 * big)) - _LOG2,
    )


def _log_cosh_terms(params, x, y):
    """``log1p(2 sinh(a/2)^2)`` for every error ``a``: the portable code's
    form below 1, and above 1 (where the portable code uses
    ``|a| + log1p(exp(-2|a|)) - log 2``) just as accurate (a few ulps: the
    argument of ``log1p`` is at least 0.54 there) until ``sinh`` overflows;
    a block with an infinite (or nan) term is computed the portable way."""
    u = torch.sub(x, y).mul_(0.5)
    u = torch.sinh(u).square_().mul_(2.0).log1p_()
    if not math.isfinite(float(torch.sum(u))):
        return _log_cosh_portable(x, y)
    return u


def _log_cosh_grads(params, g, need, x, y, out=(None, None)):
    # The portable code's derivative is 2 sinh(a/2) cosh(a/2) / (1 + 2 sinh(a/2)^2)
    # below 1 and sign(a) (1 - 2 e / (1 + e)), e = exp(-2|a|), above: tanh(a)
    # to a few ulps, accurate on both sides (no cancellation), 1 at infinity.
    if torch.is_grad_enabled():  # double backward: out of place
        dx = g * torch.tanh(x - y)
        return dx if need[0] else None, -dx if need[1] else None
    dx = torch.tanh(x - y, out=out[0]).mul_(g)
    return dx if need[0] else None, torch.neg(dx, out=out[1]) if need[1] else None



def _gaussian_terms(params, x, y, v):
    full, floor = params
    v = v.clamp(min=floor)
    residual = y - x
    loss = 0.5 * torch.log(v) + (0.5 * residual) * (residual / v)
    return loss + _HALF_LOG_2PI if full else loss


def _gaussian_grads(params, g, need, x, y, v):
    _, floor = params
    vc = v.clamp(min=floor)
    r = y - x
    q = r / vc
    gh = g * (0.5 * r)
    dx = dy = dv = None
    if need[0] or need[1]:
        dr = (g * q) * 0.5 + gh / vc
        dx = -dr if need[0] else None
        dy = dr if need[1] else None
    if need[2]:
        dv = torch.where(v >= floor, (g * 0.5) / vc - gh * (q / vc), 0.0)
    return dx, dy, dv


def _smooth_l1_terms(params, x, y):
    (beta,) = params
    diff = torch.abs(x - y)
    ratio = (diff / beta).clamp(max=1.0)
    return torch.where(diff < beta, (0.5 * diff) * ratio, diff - 0.5 * beta)


def _smooth_l1_grads(params, g, need, x, y):
    (beta,) = params
    d = x - y
    diff = torch.abs(d)
    inside = diff < beta
    g_in = torch.where(inside, g, 0.0)
    g_out = torch.where(inside, 0.0, g)
    ratio = diff / beta
    g_diff = (g_in * ratio.clamp(max=1.0)) * 0.5 + torch.where(ratio <= 1.0, g_in * (0.5 * diff), 0.0) / beta
    dx = (g_diff + g_out) * torch.sgn(d)
    return dx if need[0] else None, -dx if need[1] else None


def _hinge_terms(params, x, t):
    return (1.0 - x * t).clamp(min=0.0)


def _hinge_grads(params, g, need, x, t):
    ng = -torch.where(1.0 - x * t >= 0.0, g, 0.0)
    return ng * t if need[0] else None, ng * x if need[1] else None


def _ranking_terms(params, x1, x2, y):
    (m,) = params
    return (m - y * (x1 - x2)).clamp(min=0.0)


def _ranking_grads(params, g, need, x1, x2, y):
    (m,) = params
    d = x1 - x2
    ng = -torch.where(m - y * d >= 0.0, g, 0.0)
    d1 = ng * y if need[0] or need[1] else None
    return d1 if need[0] else None, -d1 if need[1] else None, ng * d if need[2] else None


# name -> (terms, grads); the NumPy fast path of the same name, when there is
# one, computes the forward
_ELEMENTWISE = {
    "log_cosh_loss": (_log_cosh_terms, _log_cosh_grads),
    "gaussian_nll_loss": (_gaussian_terms, _gaussian_grads),
    "smooth_l1_loss": (_smooth_l1_terms, _smooth_l1_grads),
    "hinge_loss": (_hinge_terms, _hinge_grads),
    "margin_ranking_loss": (_ranking_terms, _ranking_grads),
}


def _blocked_loss(terms, params, inputs, reduction):
    """The portable terms a block at a time, reduced (the block sums added
    in float64)."""
    n = inputs[0].numel()
    flat = [a.reshape(-1) for a in inputs]
    if reduction == "none":
        out = torch.empty(n, dtype=inputs[0].dtype)

        def task(i, j):
            out[i:j] = terms(params, *(f[i:j] for f in flat))

        _blocked(task, n)
        return out.reshape(inputs[0].shape)
    totals: list[float] = []

    def task(i, j):
        totals.append(float(torch.sum(terms(params, *(f[i:j] for f in flat)))))

    _blocked(task, n)
    total = math.fsum(totals)
    return torch.tensor(total / n if reduction == "mean" else total, dtype=inputs[0].dtype)


def _blocked_grads(grads, params, g, need, inputs):
    """``grads`` a block at a time into fresh gradient tensors."""
    n = inputs[0].numel()
    flat = [a.reshape(-1) for a in inputs]
    gf = g.reshape(-1) if g.ndim else g
    outs = [torch.empty(n, dtype=inputs[0].dtype) if wanted else None for wanted in need]

    def task(i, j):
        blocks = [f[i:j] for f in flat]
        gb = gf[i:j] if gf.ndim else gf
        if grads is _log_cosh_grads:  # writes into the gradients' blocks
            grads(params, gb, need, *blocks, out=[None if o is None else o[i:j] for o in outs])
            return
        for out, part in zip(outs, grads(params, gb, need, *blocks)):
            if out is not None:
                out[i:j] = part

    _blocked(task, n)
    return [None if out is None else out.reshape(inputs[0].shape) for out in outs]


# Losses whose forward is faster as torch operations a block at a time than
# as the NumPy fast path (transcendental functions: torch's vectorized sinh,
# log1p and log against NumPy's scalar loops); measured on 2**24 float32
# elements, 'mean': log_cosh 100 ms (torch blocks) vs 207 ms (NumPy),
# gaussian_nll 80 vs 143 ms, hinge 77 vs 43 ms, margin_ranking 99 vs 43 ms.
_TORCH_FORWARD = {"log_cosh_loss", "gaussian_nll_loss"}


def _elementwise_forward(name, params, reduction, inputs, out_dtype):
    """The reduced loss in ``out_dtype``: the NumPy fast path when there is
    one (and it is the faster), else the portable terms a block at a time."""
    if name not in _TORCH_FORWARD:
        loss = _call_numpy(name, out_dtype, *inputs, *params, reduction)
        if loss is not NotImplemented:
            return loss
    with torch.no_grad():
        return _finish(_blocked_loss(_ELEMENTWISE[name][0], params, inputs, reduction), out_dtype)


class _Elementwise(torch.autograd.Function):
    """An elementwise loss, reduced; backward: the portable gradients."""

    @staticmethod
    def forward(ctx, name, params, reduction, *inputs):
        ctx.name, ctx.params, ctx.reduction = name, params, reduction
        ctx.save_for_backward(*inputs)
        return _elementwise_forward(name, params, reduction, inputs, inputs[0].dtype)

    @staticmethod
    def backward(ctx, grad):
        inputs = ctx.saved_tensors
        need = ctx.needs_input_grad[3:]
        grads = _ELEMENTWISE[ctx.name][1]
        g = grad / inputs[0].numel() if ctx.reduction == "mean" else grad
        if torch.is_grad_enabled():  # double backward: differentiable, whole tensors
            parts = grads(ctx.params, g, need, *inputs)
        else:
            parts = _blocked_grads(grads, ctx.params, g, need, inputs)
        return (None, None, None, *parts)


def _elementwise_loss(name, inputs, params, reduction, out_dtype):
    if not _plain(*inputs):
        return NotImplemented
    x = inputs[0]
    if x.dtype not in (torch.float32, torch.float64) or x.numel() == 0:
        return NotImplemented
    if any(a.dtype != x.dtype or not a.is_contiguous() or not _viewable(a) for a in inputs):
        return NotImplemented
    if not _needs_grad(*inputs):
        return _elementwise_forward(name, params, reduction, inputs, out_dtype)
    return _finish(_Elementwise.apply(name, params, reduction, *inputs), out_dtype)


def log_cosh_loss(xp, x, y, reduction, out_dtype):
    return _elementwise_loss("log_cosh_loss", (x, y), (), reduction, out_dtype)


def gaussian_nll_loss(xp, x, y, v, full, floor, reduction, out_dtype):
    return _elementwise_loss("gaussian_nll_loss", (x, y, v), (full, floor), reduction, out_dtype)


def hinge_loss(xp, x, t, reduction, out_dtype):
    return _elementwise_loss("hinge_loss", (x, t), (), reduction, out_dtype)


def margin_ranking_loss(xp, x1, x2, y, m, reduction, out_dtype):
    return _elementwise_loss("margin_ranking_loss", (x1, x2, y), (m,), reduction, out_dtype)


# ------------------------------------------------------------------ rows


def _blocked_rows(task: Any, rows: int, length: int) -> None:
    """``task(start, stop)`` over ``range(rows)``, a few rows (about
    ``_BLOCK`` elements) at a time, on threads."""
    step = max(1, _BLOCK // max(length, 1))

    def piece(start: int, stop: int) -> None:
        with torch.no_grad():
            for i in range(start, stop, step):
                task(i, min(i + step, stop))

    _np._spread(piece, rows, length)


def _kl_y(p, x, t, exact):
    """``t - x`` with 0 where ``p == 0`` meets a non-finite difference (the
    portable ``xlogy_like``); ``exact=False`` skips the mask for a block
    whose differences sum to a finite number (then none is non-finite)."""
    y = t - x
    if exact or not bool(torch.isfinite(torch.sum(y))):
        y = torch.where((p == 0) & ~torch.isfinite(y), 0.0, y)
    return y


class _KLDiv(torch.autograd.Function):
    """Unreduced KL divergence along the last axis of (rows, C) tensors; the
    forward the NumPy fast path (or the portable terms a block of rows at a
    time with torch operations), the backward the
    portable gradients: ``-exp(t) g`` for the inputs, ``g exp(t) + g y exp(t)``
    for the targets, both 0 where ``xlogy_like`` masked the term."""

    @staticmethod
    def forward(ctx, x, t):
        ctx.save_for_backward(x, t)
        rows, c = x.shape
        out = _call_numpy("kl_div_loss", x.dtype, x, t, 1, "none")  # the faster, when there
        if out is not NotImplemented:
            return out
        out = torch.empty(rows, dtype=x.dtype)

        def task(i, j):
            xb, tb = x[i:j], t[i:j]
            p = torch.exp(tb)
            torch.sum(p.mul_(_kl_y(p, xb, tb, False)), dim=-1, out=out[i:j])

        _blocked_rows(task, rows, c)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, t = ctx.saved_tensors
        need_x, need_t = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        g = grad.unsqueeze(-1)
        if torch.is_grad_enabled():  # double backward: differentiable, whole tensors
            return _kl_grads(x, t, g, need_x, need_t, True)
        rows, c = x.shape
        dx = torch.empty_like(x) if need_x else None
        dt = torch.empty_like(t) if need_t else None

        def task(i, j):
            a, b = _kl_grads(x[i:j], t[i:j], g[i:j], need_x, need_t, False)
            if dx is not None:
                dx[i:j] = a
            if dt is not None:
                dt[i:j] = b

        _blocked_rows(task, rows, c)
        return dx, dt


def _kl_grads(x, t, g, need_x, need_t, exact):
    p = torch.exp(t)
    y = t - x
    masked = exact or not bool(torch.isfinite(torch.sum(y)))
    if masked:
        mask = (p == 0) & ~torch.isfinite(y)
        y = torch.where(mask, 0.0, y)
        dy = torch.where(mask, 0.0, g * p)
    else:
        dy = g * p
    dx = -dy if need_x else None
    dt = dy + (g * y) * p if need_t else None
    return dx, dt


def kl_div_loss(xp, x, t, axis, reduction, out_dtype):
    if not _plain(x, t):
        return NotImplemented
    if not _needs_grad(x, t):
        fast = _call_numpy("kl_div_loss", out_dtype, x, t, axis, reduction)
        if fast is not NotImplemented:
            return fast
    if (
        x.dtype not in (torch.float32, torch.float64) or t.dtype != x.dtype or x.numel() == 0
        or axis != x.ndim - 1 or not x.is_contiguous() or not t.is_contiguous()
        or not (_viewable(x) and _viewable(t))
    ):
        return NotImplemented
    c = x.shape[-1]
    loss = _KLDiv.apply(x.reshape(-1, c), t.reshape(-1, c)).reshape(x.shape[:-1])
    return reduce(xp, loss, reduction, out_dtype)


# ------------------------------------------------------------------ triplet


def _sq_distances(a, b, out, i, j):
    u = a[i:j] - b[i:j]
    torch.sum(u.mul_(u), dim=-1, out=out[i:j])


def _triplet_distances(a, p, n, eps):
    """``sqrt(sum (a - p)^2 + eps)`` and the same for ``n``, per row of (rows,
    C) tensors, unscaled; None where the portable code's scaling matters: a
    sum that overflows (or is nan), or one so small that subnormal squares
    would lose digits in it (zero distances with eps = 0 included)."""
    rows, c = a.shape
    sp = torch.empty(rows, dtype=a.dtype)
    sn = torch.empty(rows, dtype=a.dtype)

    def task(i, j):
        _sq_distances(a, p, sp, i, j)
        _sq_distances(a, n, sn, i, j)

    _blocked_rows(task, rows, 2 * c)
    info = torch.finfo(a.dtype)
    low = info.tiny / info.eps * c
    sp.add_(eps)
    sn.add_(eps)
    both = torch.stack([sp, sn])
    if not bool(torch.isfinite(both).all()) or float(both.min()) < low:
        return None
    return sp.sqrt_(), sn.sqrt_()


class _Triplet(torch.autograd.Function):
    """Unreduced triplet loss (p = 2) along the last axis of (rows, C)
    tensors from the distances ``dp``, ``dn``; backward: the gradients of
    ``max(dp - dn + alpha, 0)`` (``(a - p) / dp`` and ``(a - n) / dn`` times
    the upstream gradient where the hinge is active, ties included)."""

    @staticmethod
    def forward(ctx, a, p, n, dp, dn, alpha, eps):
        gap = dp - dn + alpha
        ctx.save_for_backward(a, p, n, dp, dn, gap >= 0.0)
        ctx.eps = eps
        return gap.clamp(min=0.0)

    @staticmethod
    def backward(ctx, grad):
        a, p, n, dp, dn, active = ctx.saved_tensors
        need = ctx.needs_input_grad[:3]
        gm = torch.where(active, grad, 0.0)
        if torch.is_grad_enabled():  # double backward: the distances differentiably
            u, v = a - p, a - n
            dp = torch.sqrt(torch.sum(u * u, dim=-1) + ctx.eps)
            dn = torch.sqrt(torch.sum(v * v, dim=-1) + ctx.eps)
            cp, cn = (gm / dp).unsqueeze(-1), (gm / dn).unsqueeze(-1)
            gu, gv = u * cp, v * cn
            return (gu - gv if need[0] else None, -gu if need[1] else None, gv if need[2] else None, None, None, None, None)
        cp, cn = (gm / dp).unsqueeze(-1), (gm / dn).unsqueeze(-1)
        rows, c = a.shape
        outs = [torch.empty_like(a) if wanted else None for wanted in need]

        def task(i, j):
            gu = (a[i:j] - p[i:j]).mul_(cp[i:j]) if need[0] or need[1] else None
            gv = (a[i:j] - n[i:j]).mul_(cn[i:j]) if need[0] or need[2] else None
            if outs[0] is not None:
                torch.sub(gu, gv, out=outs[0][i:j])
            if outs[1] is not None:
                torch.neg(gu, out=outs[1][i:j])
            if outs[2] is not None:
                outs[2][i:j] = gv

        _blocked_rows(task, rows, 3 * c)
        return (*outs, None, None, None, None)


def triplet_loss(xp, a, pos, neg, axis, degree, alpha, floor, reduction, out_dtype):
    if not _plain(a, pos, neg):
        return NotImplemented
    grad = _needs_grad(a, pos, neg)
    if not grad:
        fast = _call_numpy("triplet_loss", out_dtype, a, pos, neg, axis, degree, alpha, floor, reduction)
        if fast is not NotImplemented:
            return fast
    tensors = (a, pos, neg)
    if (
        degree != 2 or axis != a.ndim - 1 or a.dtype not in (torch.float32, torch.float64) or a.numel() == 0
        or any(v.dtype != a.dtype or not v.is_contiguous() or not _viewable(v) for v in tensors)
    ):
        return NotImplemented
    c = a.shape[-1]
    a2, p2, n2 = (v.reshape(-1, c) for v in tensors)
    with torch.no_grad():
        distances = _triplet_distances(a2.detach(), p2.detach(), n2.detach(), floor)
    if distances is None:
        return NotImplemented  # the portable code's scaling is needed
    if grad:
        loss = _Triplet.apply(a2, p2, n2, *distances, alpha, floor)
    else:
        dp, dn = distances
        loss = (dp - dn + alpha).clamp(min=0.0)
    return reduce(xp, loss.reshape(a.shape[:-1]), reduction, out_dtype)


# ------------------------------------------------------------------ nll


def nll_loss(xp, inputs, targets, axis, reduction, out_dtype):
    """``F.nll_loss``: ``-inputs[target]`` along the class axis (moved to
    position 1, as it expects), the mean over all entries (no weights, no
    ignored index: the targets are checked to be in range), the same
    gradient (``-g`` scattered to the targets)."""
    if not _plain(inputs, targets) or inputs.dtype not in (torch.float32, torch.float64):
        return NotImplemented
    if out_dtype != inputs.dtype or inputs.numel() == 0 or not _viewable(inputs):
        return NotImplemented
    index = targets if targets.dtype == torch.int64 else targets.long()
    if inputs.ndim == 1:
        loss = F.nll_loss(inputs.unsqueeze(0), index.reshape(1), reduction=reduction)
        return loss.reshape(()) if reduction == "none" else loss
    x = inputs if axis == 1 else inputs.movedim(axis, 1)
    if x.ndim > 2 and not x.is_contiguous():
        return NotImplemented  # its backward wants a contiguous tensor
    return F.nll_loss(x, index, reduction=reduction)

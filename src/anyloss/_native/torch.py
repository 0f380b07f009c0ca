"""Fast paths for PyTorch tensors on the CPU.

* Without autograd (no input requires a gradient, or grad mode is off) the
  loss is computed by the NumPy fast paths on zero-copy views of the tensors:
  the same algorithm, a cache-sized block at a time, on reused buffers.
  PyTorch would allocate a fresh array-sized tensor per operation, and on a
  CPU each fresh buffer costs its page faults.
* With autograd: ``mse_loss``, ``l1_loss`` and ``huber_loss`` call
  ``torch.nn.functional``, whose formulas are the portable ones (Huber only
  where ``delta**2 / 2`` is finite, so that the two forms agree), and
  ``cross_entropy`` with class indices is an autograd function whose forward
  is the NumPy fast path and whose backward is ``softmax - one_hot`` written
  with differentiable torch operations (double backward works);
  ``cosine_similarity_loss`` along the last axis is one too (forward: the
  NumPy row statistics, unscaled; backward ``(b/|b| - cos a/|a|) / |a|``),
  where no vector needs the portable code's scaling (else that code runs).

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


def _via_numpy(func: Any, tensors: tuple[Any, ...], out_dtype: Any, *params: Any) -> Any:
    """Run the NumPy fast path ``func`` on views of ``tensors``; NotImplemented
    when it does not apply."""
    if out_dtype not in _NUMPY_DTYPES or any(t is not None and t.is_conj() for t in tensors):
        return NotImplemented
    result = func(np, *(_as_numpy(t) for t in tensors), *params, _NUMPY_DTYPES[out_dtype])
    if result is NotImplemented:
        return result
    return torch.from_numpy(np.ascontiguousarray(result) if result.ndim else result)


def _finish(loss: Any, out_dtype: Any) -> Any:
    return loss if loss.dtype == out_dtype else loss.to(out_dtype)


# ------------------------------------------------------------------ elementwise


def mse_loss(xp, x, y, reduction, out_dtype):
    if not _plain(x, y):
        return NotImplemented
    if not _needs_grad(x, y):
        return _via_numpy(_np.mse_loss, (x, y), out_dtype, reduction)
    return _finish(F.mse_loss(x, y, reduction=reduction), out_dtype)


def l1_loss(xp, x, y, reduction, out_dtype):
    if not _plain(x, y):
        return NotImplemented
    if not _needs_grad(x, y):
        return _via_numpy(_np.l1_loss, (x, y), out_dtype, reduction)
    return _finish(F.l1_loss(x, y, reduction=reduction), out_dtype)


def huber_loss(xp, x, y, delta, reduction, out_dtype):
    if not _plain(x, y):
        return NotImplemented
    if not _needs_grad(x, y):
        return _via_numpy(lambda m, a, b, r, o: _np.huber_loss(m, a, b, delta, r, o), (x, y), out_dtype, reduction)
    if not 0.5 * delta * delta < torch.finfo(x.dtype).max:
        return NotImplemented
    return _finish(F.huber_loss(x, y, reduction=reduction, delta=delta), out_dtype)


def smooth_l1_loss(xp, x, y, beta, reduction, out_dtype):
    if not _plain(x, y) or _needs_grad(x, y):
        return NotImplemented
    return _via_numpy(lambda m, a, b, r, o: _np.smooth_l1_loss(m, a, b, beta, r, o), (x, y), out_dtype, reduction)


# elements per block of the blocked torch loops below (torch does not split
# an operation of this size among its threads; ours share the blocks)
_BLOCK = 1 << 15


def _blocked(task: Any, n: int) -> None:
    """``task(start, stop)`` over ``range(n)`` a block at a time, on threads."""

    def piece(start: int, stop: int) -> None:
        with torch.no_grad():
            for i in range(start, stop, _BLOCK):
                task(i, min(i + _BLOCK, stop))

    _np._spread(piece, n, 1)


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
        return _via_numpy(
            lambda m, a, b, w, r, o: _np.binary_cross_entropy(m, a, b, w, with_logits, r, o),
            (x, t, weights), out_dtype, reduction,
        )
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
        loss = _Cosine.apply(a, b, *stats, floor)
        if reduction == "mean":
            loss = torch.mean(loss)
        elif reduction == "sum":
            loss = torch.sum(loss)
        return _finish(loss, out_dtype)
    return _via_numpy(
        lambda m, u, v, r, o: _np.cosine_similarity_loss(m, u, v, axis, floor, r, o),
        (a, b), out_dtype, reduction,
    )


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
        return _via_numpy(
            lambda m, x, y, w, r, o: _np.cross_entropy(m, x, y, w, axis, smoothing, False, r, o, _NUMPY_DTYPES[dtype]),
            (logits, targets, None if weights is None else weights.to(dtype)), out_dtype, reduction,
        )
    if axis != logits.ndim - 1 or (weights is not None and weights.requires_grad):
        return NotImplemented
    loss = _CrossEntropy.apply(logits, targets, smoothing)
    if weights is not None:
        loss = loss * weights.to(dtype)
    if reduction == "mean":
        loss = torch.mean(loss)
    elif reduction == "sum":
        loss = torch.sum(loss)
    return _finish(loss, out_dtype)

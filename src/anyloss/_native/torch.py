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


def binary_cross_entropy(xp, x, t, weights, with_logits, reduction, out_dtype):
    if not _plain(x, t, weights) or _needs_grad(x, t, weights):
        return NotImplemented
    return _via_numpy(
        lambda m, a, b, w, r, o: _np.binary_cross_entropy(m, a, b, w, with_logits, r, o),
        (x, t, weights), out_dtype, reduction,
    )


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

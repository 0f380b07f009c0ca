"""``linear_cross_entropy`` on PyTorch: an ``autograd.Function`` over chunks.

Each chunk's logits come from one ``addmm``; their cross entropy is
anyloss's ``cross_entropy`` on torch (torch's fused kernel where its values
meet our contract, the formula for z-loss and soft-capping), differentiated
by torch's autograd in the logits alone; the gradients of inputs, weight and
bias are then two matrix products added into preallocated buffers.  For
'mean' and 'sum' under autograd the forward pass computes the gradients with
the loss (the upstream gradient is one scalar, so scaling them later is
exact); for 'none' the backward pass recomputes each chunk under the
upstream gradient of its rows.  Only the gradients autograd asks for are
computed.  No ``N x V`` array is ever held.  Under ``torch.compile`` the
loop runs eagerly (a graph break).
"""

from __future__ import annotations

import torch

from .. import _native
from .._linear import ce_params, finish, mean_total, spans


def _loop(xp, x, w, b, t, cw, dtype, params, chunk, needs, upstream):
    """Per chunk: the loss rows (detached), and the gradients of
    ``sum(upstream * rows)`` for inputs, weight and bias where ``needs``
    (float32 buffers for half precision)."""
    need_x, need_w, need_b = needs
    grad = any(needs)
    w = w.detach().to(dtype)
    b = None if b is None else b.detach().to(dtype)
    dx = torch.empty(x.shape, dtype=dtype, device=x.device) if need_x else None
    dw = torch.zeros_like(w) if need_w else None
    db = torch.zeros_like(b) if need_b else None
    ce = ce_params(params)
    rows = []
    for start, stop in spans(x.shape[0], chunk):
        xc = x[start:stop].detach().to(dtype)
        z = xc @ w.T if b is None else torch.addmm(b, xc, w.T)
        with torch.set_grad_enabled(grad):
            z.requires_grad_(grad)
            loss = _native.call(xp, "cross_entropy", ce, "none", dtype, dtype, False,
                                z, t[start:stop], cw)
            if grad:
                g = upstream if upstream.ndim == 0 else upstream[start:stop].to(loss.dtype)
                (dz,) = torch.autograd.grad(loss, z, torch.broadcast_to(g, loss.shape))
        rows.append(loss.detach())
        del z, loss
        if need_x:
            torch.mm(dz, w, out=dx[start:stop])
        if need_w:
            dw.addmm_(dz.T, xc)
        if need_b:
            db += dz.sum(0)
    return rows, dx, dw, db


def _finish(xp, x, rows, t, cw, dtype, params, reduction, out_dtype):
    """The reduced loss from the chunks' rows, and the factor of a 'mean'."""
    if reduction == "none":
        out = torch.cat(rows) if rows else torch.zeros((0,), dtype=dtype, device=x.device)
        return finish(xp, out, None, reduction, out_dtype), None
    loss_sum = torch.cat(rows).sum() if rows else torch.zeros((), dtype=dtype, device=x.device)
    total = mean_total(xp, t, cw, params[-1], dtype)
    if reduction == "sum":
        return finish(xp, loss_sum, total, reduction, out_dtype), 1.0
    return finish(xp, loss_sum, total, reduction, out_dtype), \
        1.0 / torch.where(total == 0, torch.ones_like(total), total)


class _LinearCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, t, cw, xp, dtype, params, reduction, out_dtype, chunk):
        needs = tuple(ctx.needs_input_grad[:3])
        ctx.dtypes = (x.dtype, w.dtype, None if b is None else b.dtype)
        ctx.reduction, ctx.rest = reduction, (xp, dtype, params, chunk, needs)
        if reduction == "none":
            ctx.save_for_backward(x, w, b, t, cw)
            needs = (False, False, False)
        one = torch.ones((), dtype=dtype, device=x.device)
        rows, *grads = _loop(xp, x, w, b, t, cw, dtype, params, chunk, needs, one)
        loss, scale = _finish(xp, x, rows, t, cw, dtype, params, reduction, out_dtype)
        if reduction != "none":
            for g in grads:
                if g is not None and not (isinstance(scale, float) and scale == 1.0):
                    g.mul_(scale)
            ctx.save_for_backward(*grads)
        return loss

    @staticmethod
    def backward(ctx, grad):
        xp, dtype, params, chunk, needs = ctx.rest
        if ctx.reduction == "none":
            x, w, b, t, cw = ctx.saved_tensors
            _, *grads = _loop(xp, x, w, b, t, cw, dtype, params, chunk, needs, grad)
        else:
            grads = [None if g is None else grad.to(g.dtype) * g for g in ctx.saved_tensors]
        out = [None if g is None else g.to(d) for g, d in zip(grads, ctx.dtypes)]
        return (*out, None, None, None, None, None, None, None, None)


def _forward(xp, x, weight, bias, targets, class_weights, dtype, params, reduction, out_dtype, chunk):
    cw = None if class_weights is None else class_weights.detach().to(dtype)
    needs = torch.is_grad_enabled() and (
        x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    )
    if not needs:
        rows, *_ = _loop(xp, x, weight, bias, targets, cw, dtype, params, chunk,
                         (False, False, False), None)
        return _finish(xp, x, rows, targets, cw, dtype, params, reduction, out_dtype)[0]
    return _LinearCE.apply(x, weight, bias, targets, cw, xp, dtype, params, reduction, out_dtype, chunk)


# Under torch.compile the loop runs eagerly, a graph break: Dynamo traces no
# torch.autograd.grad, and the traced alternative would save every chunk.
forward = torch.compiler.disable(_forward, reason="linear_cross_entropy's chunk loop runs eagerly")

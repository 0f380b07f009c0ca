"""``linear_cross_entropy`` on PyTorch: an ``autograd.Function`` over chunks.

For 'mean' and 'sum' under autograd the forward pass computes each chunk's
loss and its gradients together (the upstream gradient is one scalar, so
scaling them later is exact); for 'none' the backward pass recomputes each
chunk under the upstream gradient of its rows.  Only the gradients autograd
asks for are computed.  No ``N x V`` array is ever held.
"""

from __future__ import annotations

from typing import Any

import torch

from .._linear import chunk_loss, finish, forward as portable_forward, spans


def _grads(xp, x, w, b, t, cw, dtype, params, chunk, needs, upstream):
    """Per chunk: the loss rows (detached), and the gradients of
    ``sum(upstream * rows)`` for inputs, weight and bias where ``needs``."""
    need_x, need_w, need_b = needs
    wl = w.detach().to(dtype).requires_grad_(need_w)
    bl = None if b is None else b.detach().to(dtype).requires_grad_(need_b)
    dx = torch.empty_like(x) if need_x else None
    dw = torch.zeros_like(wl) if need_w else None
    db = torch.zeros_like(bl) if need_b else None
    rows, totals = [], []
    for start, stop in spans(x.shape[0], chunk):
        with torch.enable_grad():
            xc = x[start:stop].detach().to(dtype).requires_grad_(need_x)
            loss, total = chunk_loss(xp, xc, wl, bl, t[start:stop], cw, dtype, params)
            g = upstream if upstream.ndim == 0 else upstream[start:stop].to(loss.dtype)
            wrt = [a for a, need in ((xc, need_x), (wl, need_w), (bl, need_b)) if need]
            got = iter(torch.autograd.grad(loss, wrt, grad_outputs=torch.broadcast_to(g, loss.shape)))
        if need_x:
            dx[start:stop] = next(got)
        if need_w:
            dw += next(got)
        if need_b:
            db += next(got)
        rows.append(loss.detach())
        totals.append(float(stop - start) if total is None else total)
    return rows, totals, dx, dw, db


class _LinearCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, t, cw, xp, dtype, params, reduction, out_dtype, chunk):
        needs = tuple(ctx.needs_input_grad[:3])
        ctx.dtypes = (x.dtype, w.dtype, None if b is None else b.dtype)
        ctx.reduction, ctx.rest = reduction, (xp, dtype, params, chunk, needs)
        if reduction == "none":
            ctx.save_for_backward(x, w, b, t, cw)
            return portable_forward(xp, x, w, b, t, cw, dtype, params, reduction, out_dtype, chunk)
        one = torch.ones((), dtype=dtype, device=x.device)
        rows, totals, dx, dw, db = _grads(xp, x, w, b, t, cw, dtype, params, chunk, needs, one)
        loss_sum = sum(r.sum() for r in rows) if rows else torch.zeros((), dtype=dtype, device=x.device)
        total = sum(torch.as_tensor(s, dtype=dtype, device=x.device) for s in totals) \
            if totals else torch.zeros((), dtype=dtype, device=x.device)
        scale = 1.0
        if reduction == "mean":
            scale = 1.0 / torch.where(total == 0, torch.ones_like(total), total)
        grads = [None if g is None else g * scale for g in (dx, dw, db)]
        ctx.save_for_backward(*grads)
        return finish(xp, loss_sum, total, reduction, out_dtype)

    @staticmethod
    def backward(ctx, grad):
        xp, dtype, params, chunk, needs = ctx.rest
        if ctx.reduction == "none":
            x, w, b, t, cw = ctx.saved_tensors
            _, _, dx, dw, db = _grads(xp, x, w, b, t, cw, dtype, params, chunk, needs, grad)
            grads = (dx, dw, db)
        else:
            grads = tuple(None if g is None else grad.to(g.dtype) * g for g in ctx.saved_tensors)
        out = [None if g is None else g.to(d) for g, d in zip(grads, ctx.dtypes)]
        return (*out, None, None, None, None, None, None, None, None)


def forward(xp, x, weight, bias, targets, class_weights, dtype, params, reduction, out_dtype, chunk):
    needs = torch.is_grad_enabled() and (
        x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    )
    cw = None if class_weights is None else class_weights.to(dtype)
    if not needs:
        return portable_forward(xp, x, weight, bias, targets, cw, dtype, params, reduction,
                                out_dtype, chunk)
    return _LinearCE.apply(x, weight, bias, targets, cw, xp, dtype, params, reduction, out_dtype, chunk)


"""``linear_cross_entropy`` on PyTorch: an ``autograd.Function`` over chunks.

Each chunk's logits come from one ``addmm`` into a buffer reused by every
chunk.  The plain cross entropy (class weights and ``ignore_index`` aside)
runs torch's ``log_softmax`` in that buffer and writes its gradient there,
``softmax - onehot`` scaled per row, so a chunk holds one ``chunk x V``
array; the other options run anyloss's ``cross_entropy`` on torch,
differentiated by torch's autograd in the logits alone.  The gradients of
inputs, weight and bias are then two matrix products added into
preallocated buffers.  For 'mean' and 'sum' under autograd the forward pass
computes the gradients with the loss (the upstream gradient is one scalar),
and the backward pass scales them in place and hands them over; for
'none' (or a second backward through a retained graph) it recomputes each
chunk under the upstream gradient of its rows.  Only the gradients autograd
asks for are computed.  No ``N x V`` array is ever held.  Under
``torch.compile`` the loop runs eagerly (a graph break).
"""

from __future__ import annotations

import torch

from .. import _linear, _native
from .._linear import ce_params, finish, mean_total, spans
from .torch import _check_range, _forward_ad, _wrapped


def _plain(params) -> bool:
    """Whether the chunks' cross entropy is the plain one (class weights and
    ``ignore_index`` aside): torch's log-softmax, with the gradient written
    into the logits' buffer."""
    smoothing, guard, softcap, z_loss, _ = params
    return smoothing == 0 and softcap is None and z_loss == 0 and not guard


def _plain_chunk(z, t, cw, ignore, upstream, grad):
    """The loss rows of logits ``z`` and, where ``grad``, the gradient of
    ``sum(upstream * rows)`` written over ``z``: ``log_softmax`` in place,
    its picked entries, then ``softmax - onehot`` (``exp_`` and one scatter)
    scaled per row by upstream (``None``: one), class weight and kept rows."""
    keep = None if ignore is None else t != ignore
    safe = t if keep is None else t.masked_fill(~keep, 0)
    torch.log_softmax(z, 1, out=z)
    idx = safe[:, None]
    rows = -z.gather(1, idx)[:, 0]
    scale = None if cw is None else cw[safe]
    if keep is not None:
        scale = keep.to(z.dtype) if scale is None else scale * keep
        rows = torch.where(keep, rows * scale, torch.zeros_like(rows))
    elif scale is not None:
        rows = rows * scale
    if grad:
        z.exp_()
        z.scatter_add_(1, idx, torch.full(idx.shape, -1.0, dtype=z.dtype, device=z.device))
        if upstream is not None:
            scale = upstream if scale is None else scale * upstream
        if scale is not None:
            z.mul_(scale[:, None] if scale.ndim else scale)
    return rows


def _loop(xp, x, w, b, t, cw, dtype, params, chunk, needs, upstream=None):
    """Per chunk: the loss rows (detached), and the gradients of
    ``sum(upstream * rows)`` for inputs, weight and bias where ``needs``
    (float32 buffers for half precision); ``upstream``: a 0-d or per-row
    tensor, ``None`` for one."""
    need_x, need_w, need_b = needs
    grad = any(needs)
    w = w.detach().to(dtype)
    b = None if b is None else b.detach().to(dtype)
    dx = torch.empty(x.shape, dtype=dtype, device=x.device) if need_x else None
    dw = torch.zeros_like(w) if need_w else None
    db = torch.zeros_like(b) if need_b else None
    if upstream is not None:
        upstream = upstream.to(dtype)
    plain = _plain(params)
    if plain and x.shape[0]:
        _check_range("linear_cross_entropy", t, w.shape[0], params[-1])
    ce = ce_params(params)
    rows = []
    # the plain chunks' logits, log-probabilities and gradient: one buffer
    buf = torch.empty((min(chunk, x.shape[0]), w.shape[0]), dtype=dtype, device=x.device) \
        if plain else None
    for start, stop in spans(x.shape[0], chunk):
        xc = x[start:stop].detach().to(dtype)
        if plain:
            z = buf[:stop - start]
            torch.mm(xc, w.T, out=z) if b is None else torch.addmm(b, xc, w.T, out=z)
        else:
            z = xc @ w.T if b is None else torch.addmm(b, xc, w.T)
        g = upstream if upstream is None or upstream.ndim == 0 else upstream[start:stop]
        if plain:
            rows.append(_plain_chunk(z, t[start:stop], cw, params[-1], g, grad))
            dz = z
        else:
            with torch.set_grad_enabled(grad):
                z.requires_grad_(grad)
                loss = _native.call(xp, "cross_entropy", ce, "none", dtype, dtype, False,
                                    z, t[start:stop], cw)
                if grad:
                    g = torch.ones((), dtype=dtype, device=x.device) if g is None else g
                    (dz,) = torch.autograd.grad(loss, z, torch.broadcast_to(g, loss.shape))
            rows.append(loss.detach())
            del z, loss
        if need_x:
            torch.mm(dz, w, out=dx[start:stop])
        if need_w:
            dw.addmm_(dz.T, xc)
        if need_b:
            db += dz.sum(0)
        z = dz = None  # before the next chunk's logits
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
        ctx.save_for_backward(x, w, b, t, cw)
        rows, *grads = _loop(xp, x, w, b, t, cw, dtype, params, chunk,
                             needs if reduction != "none" else (False, False, False))
        loss, ctx.scale = _finish(xp, x, rows, t, cw, dtype, params, reduction, out_dtype)
        ctx.grads = grads if reduction != "none" else None
        return loss

    @staticmethod
    def backward(ctx, grad):
        xp, dtype, params, chunk, needs = ctx.rest
        upstream = grad.to(dtype) if ctx.scale is None else grad.to(dtype) * ctx.scale
        if ctx.grads is not None:
            # the forward's gradients of the scalar loss, scaled in place and
            # handed over (autograd keeps them without a copy)
            grads, ctx.grads = ctx.grads, None
            for g in grads:
                if g is not None:
                    g.mul_(upstream)
        else:  # 'none', or a graph retained for a second backward: recomputed
            x, w, b, t, cw = ctx.saved_tensors
            _, *grads = _loop(xp, x, w, b, t, cw, dtype, params, chunk, needs, upstream)
        out = [None if g is None else g.to(d) for g, d in zip(grads, ctx.dtypes)]
        del grads
        return (*out, None, None, None, None, None, None, None, None)


def _forward(xp, x, weight, bias, targets, class_weights, dtype, params, reduction, out_dtype, chunk):
    """The loss by the chunk loop and its Function; under forward-mode AD and
    torch.func, whose transforms the Function does not define, the portable
    loop under torch's own autodiff."""
    if _forward_ad._current_level >= 0 or any(_wrapped(a) for a in (x, weight, bias) if a is not None):
        return _linear.forward(xp, x, weight, bias, targets, class_weights, dtype, params, reduction,
                               out_dtype, chunk)
    cw = None if class_weights is None else class_weights.detach().to(dtype)
    needs = torch.is_grad_enabled() and (
        x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    )
    if not needs:
        rows, *_ = _loop(xp, x, weight, bias, targets, cw, dtype, params, chunk,
                         (False, False, False))
        return _finish(xp, x, rows, targets, cw, dtype, params, reduction, out_dtype)[0]
    return _LinearCE.apply(x, weight, bias, targets, cw, xp, dtype, params, reduction, out_dtype, chunk)


# Under torch.compile the loop runs eagerly, a graph break: Dynamo traces no
# torch.autograd.grad, and the traced alternative would save every chunk.
forward = torch.compiler.disable(_forward, reason="linear_cross_entropy's chunk loop runs eagerly")

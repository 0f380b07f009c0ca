"""``linear_cross_entropy`` on MLX: an ``mx.custom_function`` with an eager
chunk loop.

MLX's lazy graph would keep every chunk's logits alive until the whole loss
is evaluated, and under ``mx.grad`` until the gradient is; so the forward
pass evaluates chunk by chunk on constants (``mx.stop_gradient``), and the
custom vjp recomputes each chunk with ``mx.vjp`` and evaluates its gradients
before the next.  ``mx.grad`` and ``mx.value_and_grad`` then see a peak of one
chunk.  The eager evaluation means this runs outside ``mx.compile``.
"""

from __future__ import annotations

import functools
from typing import Any

import mlx.core as mx

from .._linear import chunk_loss, finish, spans


@functools.lru_cache(maxsize=None)
def _function(dtype: Any, params: tuple[Any, ...], reduction: str, out_dtype: Any, chunk: int,
              has_bias: bool, has_cw: bool) -> Any:
    def unpack(arrays):
        x, w, t, *rest = arrays
        b = rest.pop(0) if has_bias else None
        cw = rest.pop(0) if has_cw else None
        return x, w.astype(dtype), None if b is None else b.astype(dtype), t, \
            None if cw is None else cw.astype(dtype)

    def rows(xc, w, b, tc, cw):
        loss, total = chunk_loss(mx, xc, w, b, tc, cw, dtype, params)
        return loss, (mx.array(xc.shape[0], dtype) if total is None else total)

    @mx.custom_function
    def loss(*arrays):
        x, w, b, t, cw = unpack([mx.stop_gradient(a) for a in arrays])
        parts, loss_sum, total = [], mx.zeros((), dtype), mx.zeros((), dtype)
        for start, stop in spans(x.shape[0], chunk):
            value, weight = rows(x[start:stop], w, b, t[start:stop], cw)
            if reduction == "none":
                parts.append(value)
                mx.eval(value)
            else:
                loss_sum, total = loss_sum + mx.sum(value), total + weight
                mx.eval(loss_sum, total)
        if reduction == "none":
            out = mx.concatenate(parts) if parts else mx.zeros((0,), dtype)
            return finish(mx, out, None, reduction, out_dtype)
        return finish(mx, loss_sum, total, reduction, out_dtype)

    @loss.vjp
    def loss_vjp(arrays, cotangent, output):
        x, w, b, t, cw = unpack([mx.stop_gradient(a) for a in arrays])
        g = mx.stop_gradient(cotangent).astype(dtype)
        dx, total = [], mx.zeros((), dtype)
        dw = mx.zeros_like(w)
        db = None if b is None else mx.zeros_like(b)
        for start, stop in spans(x.shape[0], chunk):
            tc = t[start:stop]
            gc = g if g.ndim == 0 else g[start:stop]

            def f(xc, wc, *bc):
                value, weight = rows(xc, wc, bc[0] if bc else None, tc, cw)
                return mx.sum(value * gc), weight

            primals = [x[start:stop], w] + ([] if b is None else [b])
            (_, weight), grads = mx.vjp(f, primals, [mx.ones((), dtype), mx.zeros((), dtype)])
            total = total + weight
            dx.append(grads[0])
            dw = dw + grads[1]
            if b is not None:
                db = db + grads[2]
            mx.eval(dx[-1], dw, total, *(() if db is None else (db,)))
        scale = 1.0
        if reduction == "mean":  # the denominator: the weight of the rows kept
            scale = 1.0 / mx.where(total == 0, mx.ones_like(total), total)
        dx = mx.concatenate(dx) if dx else mx.zeros(x.shape, dtype)
        out = [(dx * scale).astype(x.dtype), (dw * scale).astype(arrays[1].dtype), mx.zeros_like(t)]
        if b is not None:
            out.append((db * scale).astype(arrays[3].dtype))
        if cw is not None:
            out.append(mx.zeros_like(arrays[-1]))
        return tuple(out)

    return loss


def forward(xp, x, weight, bias, targets, class_weights, dtype, params, reduction, out_dtype, chunk):
    loss = _function(dtype, params, reduction, out_dtype, chunk, bias is not None,
                        class_weights is not None)
    arrays = [x, weight, targets] + ([bias] if bias is not None else []) + \
        ([class_weights] if class_weights is not None else [])
    return loss(*arrays)

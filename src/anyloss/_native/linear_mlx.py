"""``linear_cross_entropy`` on MLX: an ``mx.custom_function`` with eager
chunk loops.

Under ``mx.grad`` MLX keeps the graph of every array derived from a traced
input through ``mx.eval``, and in a vjp (run under "retain graph") of every
array at all, so a lazy or naively evaluated chunk loop would hold all its
chunks until the gradient is evaluated.  The loops therefore run on copies
of the inputs' values made through MLX's buffer protocol (arrays with no
graph), each chunk evaluated before the next:

- 'mean' and 'sum' under a gradient trace: the forward pass computes each
  chunk's loss and its gradients together (``mx.vjp`` in the logits, then
  two matrix products), and the vjp scales them by the one cotangent;
- 'none', or a vjp with no held gradients: the vjp recomputes each chunk
  under its rows' cotangents, copying each chunk's results (which cuts the
  retained graph) before the next.

Each chunk's cross entropy and its vjp are compiled (``mx.compile``).  The
custom function's jvp, and its vjp under a derivative of the gradient
(``jvp(grad(f))``, ``grad(grad(f))``), differentiate the portable loop
instead, whose chunks MLX keeps; inside ``mx.compile`` and ``mx.vmap``, where
nothing can be evaluated, the portable loop runs in their place.
"""

from __future__ import annotations

import collections
import functools
import io
import re
from typing import Any

import mlx.core as mx

from .. import _linear
from .._linear import chunk_logits, chunk_rows, finish, spans

# A chunk's logits hold about this many entries by default: a vjp keeps the
# whole graph of a chunk's cross entropy (some six chunk-sized arrays) alive.
CHUNK_ENTRIES = 1 << 20


def _values(a: Any) -> Any:
    """``a``'s values as a new array with no graph (evaluated first)."""
    mx.eval(a)
    if a.dtype == mx.bfloat16:  # the buffer protocol has no bfloat16
        return mx.array(memoryview(a.view(mx.uint16))).view(mx.bfloat16)
    return mx.array(memoryview(a))


def _depth(arrays: Any) -> int:
    """How many derivatives are being traced through ``arrays`` (0 outside
    any; 2 for ``jvp(grad(f))`` or ``grad(grad(f))``): each trace copies its
    inputs, and an evaluated array derived from them keeps that graph, so the
    longest run of copies from a source of the graph is the nesting."""
    probe = sum(mx.sum(a.reshape(-1)[:1]) for a in arrays)
    mx.eval(probe)
    dot = io.StringIO()
    mx.export_to_dot(dot, probe)
    graph = dot.getvalue()
    copies = set(re.findall(r'(\d+) \[label ="Copy"', graph))
    edges = collections.defaultdict(list)
    for source, target in re.findall(r'"?(\w+)"? -> "?(\w+)"?', graph):
        edges[source].append(target)

    def run(node: str) -> int:  # array -> Copy -> array -> ...
        return max((1 + run(out) for op in edges[node] if op in copies for out in edges[op]), default=0)

    return max((run(node) for node in re.findall(r'rank=source; "(\w+)"', graph)), default=0)


@functools.lru_cache(maxsize=None)
def _function(dtype: Any, params: tuple[Any, ...], reduction: str, out_dtype: Any, chunk: int,
              has_bias: bool, has_cw: bool) -> Any:
    def unpack(arrays):
        x, w, t, *rest = (_values(a) for a in arrays)
        b = rest.pop(0) if has_bias else None
        cw = rest.pop(0) if has_cw else None
        return x, w.astype(dtype), None if b is None else b.astype(dtype), t, \
            None if cw is None else cw.astype(dtype)

    def rows(z, tc, *cw):
        loss, total = chunk_rows(mx, z, tc, cw[0] if cw else None, params)
        return loss, (mx.array(z.shape[0], dtype) if total is None else total)

    def grad(z, tc, gc, *cw):
        """``sum(gc * rows)``, its gradient in the logits, and the rows' weight."""
        def f(z):
            value, weight = rows(z, tc, *cw)
            return mx.sum(value * gc), weight

        (value, weight), (dz,) = mx.vjp(f, [z], [mx.ones((), dtype), mx.zeros((), dtype)])
        return value, dz, weight

    # compiled: the cross entropy's elementwise steps fused, fewer chunk-sized arrays
    rows_compiled, grad_compiled = mx.compile(rows), mx.compile(grad)

    def chunks(x, w, b, t, cw, g, copy):
        """The loss sum and the gradients of ``sum(g * rows)``, chunk by chunk
        (each result copied where ``copy``: inside a vjp)."""
        keep = _values if copy else (lambda a: a)
        cws = () if cw is None else (cw,)
        dx, loss_sum, total = [], mx.zeros((), dtype), mx.zeros((), dtype)
        dw = mx.zeros_like(w)
        db = None if b is None else mx.zeros_like(b)
        for start, stop in spans(x.shape[0], chunk):
            xc = x[start:stop]
            gc = g if g.ndim == 0 else g[start:stop]
            value, dz, weight = grad_compiled(chunk_logits(mx, xc, w, b, dtype), t[start:stop], gc,
                                              *cws)
            loss_sum, total, dz = keep(loss_sum + value), keep(total + weight), keep(dz)
            del value, weight
            dx.append(keep(dz @ w))
            dw = keep(mx.addmm(dw, dz.T, xc))
            if b is not None:
                db = keep(db + mx.sum(dz, axis=0))
            mx.eval(dx[-1], dw, loss_sum, total, *(() if db is None else (db,)))
            del dz
        dx = mx.concatenate(dx) if dx else mx.zeros(x.shape, dtype)
        return loss_sum, total, dx, dw, db

    def scaled(grads, total, arrays):
        """The gradients of a 'mean' divided by its denominator, in the
        dtypes of the arrays they belong to, zero for targets and class
        weights."""
        scale = 1.0
        if reduction == "mean":  # the denominator: the weight of the rows kept
            scale = 1.0 / mx.where(total == 0, mx.ones_like(total), total)
        dx, dw, db = grads
        out = [(dx * scale).astype(arrays[0].dtype), (dw * scale).astype(arrays[1].dtype),
               mx.zeros_like(arrays[2])]
        if has_bias:
            out.append((db * scale).astype(arrays[3].dtype))
        if has_cw:
            out.append(mx.zeros_like(arrays[-1]))
        return out

    moving = (0, 1, 3) if has_bias else (0, 1)  # inputs, weight, bias: what has a gradient

    def floats(arrays):
        return [arrays[i] for i in moving]

    def held(arrays):
        """Whether the forward pass computes the gradients with the loss and
        holds them for the vjp: for 'mean' and 'sum' under one derivative.
        Under a derivative of a derivative the vjp differentiates
        :func:`plain` instead (the held gradients, computed on copies, have
        no derivative)."""
        return reduction != "none" and _depth(floats(arrays)) == 1

    @mx.custom_function
    def loss(*arrays):
        """The loss, then (for 'mean' and 'sum' under a gradient trace) its
        gradients, held for the vjp."""
        x, w, b, t, cw = unpack(arrays)
        if held(arrays):
            loss_sum, total, *grads = chunks(x, w, b, t, cw, mx.ones((), dtype), False)
            return (finish(mx, loss_sum, total, reduction, out_dtype), *scaled(grads, total, arrays))
        parts, loss_sum, total = [], mx.zeros((), dtype), mx.zeros((), dtype)
        cws = () if cw is None else (cw,)
        for start, stop in spans(x.shape[0], chunk):
            value, weight = rows_compiled(chunk_logits(mx, x[start:stop], w, b, dtype),
                                          t[start:stop], *cws)
            if reduction == "none":
                parts.append(value)
                mx.eval(value)
            else:
                loss_sum, total = loss_sum + mx.sum(value), total + weight
                mx.eval(loss_sum, total)
        if reduction == "none":
            out = mx.concatenate(parts) if parts else mx.zeros((0,), dtype)
            return (finish(mx, out, None, reduction, out_dtype),)
        return (finish(mx, loss_sum, total, reduction, out_dtype),)

    def plain(arrays, moving):
        """The portable loop on the arrays themselves (no copies), as a
        function of those at positions ``moving``: what MLX differentiates
        for a jvp, and for a vjp to be differentiated again."""
        def of(*values):
            full = list(arrays)
            for i, value in zip(moving, values):
                full[i] = value
            x, w, t, *rest = full
            b = rest.pop(0) if has_bias else None
            cw = rest.pop(0) if has_cw else None
            return _linear.forward(mx, x, w, b, t, cw, dtype, params, reduction, out_dtype, chunk)

        return of, [arrays[i] for i in moving]

    @loss.jvp
    def loss_jvp(arrays, tangents):
        """The loss's tangent by MLX's jvp of :func:`plain` (zero for the
        held gradients, which only the vjp reads)."""
        given = [i for i, tangent in enumerate(tangents) if tangent is not None]
        _, (tangent,) = mx.jvp(*plain(arrays, given), [tangents[i] for i in given])
        return (tangent, *(mx.zeros_like(a) for a in arrays)) if held(arrays) else (tangent,)

    @loss.vjp
    def loss_vjp(arrays, cotangents, outputs):
        g = cotangents[0]
        if len(outputs) > 1:  # the gradients held by the forward pass
            return tuple(held * g.astype(held.dtype) for held in outputs[1:])
        if _depth(floats(arrays)) > 1:  # a derivative of this gradient to come
            _, grads = mx.vjp(*plain(arrays, moving), [g])
            out = [mx.zeros_like(a) for a in arrays]
            for i, grad in zip(moving, grads):
                out[i] = grad
            return tuple(out)
        x, w, b, t, cw = unpack(arrays)
        _, total, *grads = chunks(x, w, b, t, cw, _values(g).astype(dtype), True)
        return tuple(scaled(grads, total, arrays))

    return loss


def forward(xp, x, weight, bias, targets, class_weights, dtype, params, reduction, out_dtype, chunk):
    """The loss by the custom function; inside ``mx.compile`` and
    ``mx.vmap``, where no chunk can be evaluated before the next, the
    portable loop under MLX's own transforms, in one chunk (a compiled graph
    is scheduled whole, and a shapeless trace cannot slice)."""
    try:
        mx.eval(x)
    except ValueError:  # a tracer of compile or vmap
        return _linear.forward(xp, x, weight, bias, targets, class_weights, dtype, params, reduction,
                               out_dtype, max(x.shape[0], 1))
    loss = _function(dtype, params, reduction, out_dtype, chunk, bias is not None,
                     class_weights is not None)
    arrays = [x, weight, targets] + ([bias] if bias is not None else []) + \
        ([class_weights] if class_weights is not None else [])
    return loss(*arrays)[0]

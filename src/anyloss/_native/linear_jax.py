"""``linear_cross_entropy`` on JAX: a ``jax.custom_vjp`` over ``lax.scan``.

The rows are split into ``N // chunk`` full chunks, scanned one at a time
(XLA cannot schedule them all at once), and a static remainder, so every
shape is static and no padding row is invented.  For 'mean' and 'sum' the
forward pass of the gradient computes each chunk's loss and its gradients
together (the cotangent is one scalar); for 'none' the backward pass
recomputes each chunk under its rows' cotangents.  Compiled once per static
arguments and shapes; works under ``jit``, ``grad`` and ``vmap``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from .._linear import chunk_loss, finish


def _split(a: Any, full: int, chunk: int) -> tuple[Any, Any]:
    """``a``'s rows as ``(full, chunk, ...)`` and the remainder."""
    k = full * chunk
    return jnp.reshape(a[:k], (full, chunk, *a.shape[1:])), a[k:]


@functools.lru_cache(maxsize=None)
def _compiled(dtype: Any, params: tuple[Any, ...], reduction: str, out_dtype: Any, chunk: int) -> Any:
    def rows(x, w, b, t, cw):
        loss, total = chunk_loss(jnp, x, w, b, t, cw, dtype, params)
        return loss, (jnp.asarray(x.shape[0], dtype) if total is None else total)

    def over_chunks(step, carry, *arrays):
        """``step(carry, *chunks) -> (carry, out)`` over the full chunks of
        ``arrays``' rows (scanned) and the remainder; outputs' rows joined."""
        n = arrays[0].shape[0]
        full = n // chunk
        outs = []
        if full:
            split = tuple(_split(a, full, chunk)[0] for a in arrays)
            carry, out = jax.lax.scan(lambda c, cs: step(c, *cs), carry, split)
            outs.append(jax.tree_util.tree_map(lambda o: jnp.reshape(o, (-1, *o.shape[2:])), out))
        if n > full * chunk:
            carry, out = step(carry, *(a[full * chunk:] for a in arrays))
            outs.append(out)
        if not outs:
            return carry, None
        return carry, jax.tree_util.tree_map(lambda *o: jnp.concatenate(o), *outs)

    def cast(w, b, cw):
        return (w.astype(dtype), None if b is None else b.astype(dtype),
                None if cw is None else cw.astype(dtype))

    def primal(x, w, b, t, cw):
        wc, bc, cwc = cast(w, b, cw)
        zero = jnp.zeros((), dtype)

        def step(carry, xc, tc):
            loss, total = rows(xc, wc, bc, tc, cwc)
            if reduction == "none":
                return carry, loss
            return (carry[0] + jnp.sum(loss), carry[1] + total), None

        carry, out = over_chunks(step, (zero, zero), x, t)
        if reduction == "none":
            return finish(jnp, out if out is not None else jnp.zeros((0,), dtype), None, reduction, out_dtype)
        return finish(jnp, carry[0], carry[1], reduction, out_dtype)

    def grads(x, w, b, t, cw, g):
        """Loss rows' sum, total, and the gradients of ``sum(g * rows)``."""
        wc, bc, cwc = cast(w, b, cw)

        def step(carry, xc, tc, gc):
            def f(xc, wc, bc):
                loss, total = rows(xc, wc, bc, tc, cwc)
                return jnp.sum(loss * gc), (jnp.sum(loss), total)

            (_, (s, total)), (dx, dw, db) = jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True)(
                xc, wc, bc)
            acc_s, acc_t, acc_w, acc_b = carry
            acc_b = None if db is None else acc_b + db
            return (acc_s + s, acc_t + total, acc_w + dw, acc_b), dx.astype(x.dtype)

        zero = jnp.zeros((), dtype)
        carry0 = (zero, zero, jnp.zeros_like(wc), None if bc is None else jnp.zeros_like(bc))
        if g.ndim == 0:
            carry, dx = over_chunks(lambda c, xc, tc: step(c, xc, tc, g), carry0, x, t)
        else:
            carry, dx = over_chunks(step, carry0, x, t, g.astype(dtype))
        if dx is None:
            dx = jnp.zeros_like(x)
        s, total, dw, db = carry
        return s, total, dx, dw.astype(w.dtype), None if db is None else db.astype(b.dtype)

    @jax.custom_vjp
    def loss(x, w, b, t, cw):
        return primal(x, w, b, t, cw)

    def fwd(x, w, b, t, cw):
        if reduction == "none":
            return primal(x, w, b, t, cw), (x, w, b, t, cw, None)
        s, total, dx, dw, db = grads(x, w, b, t, cw, jnp.ones((), dtype))
        value = finish(jnp, s, total, reduction, out_dtype)
        if reduction == "mean":
            scale = 1.0 / jnp.where(total == 0, jnp.ones_like(total), total)
            dx, dw = (dx * scale).astype(x.dtype), (dw * scale).astype(w.dtype)
            db = None if db is None else (db * scale).astype(b.dtype)
        return value, (None, None, None, None, None, (dx, dw, db))

    def bwd(res, g):
        x, w, b, t, cw, saved = res
        if saved is None:
            _, _, dx, dw, db = grads(x, w, b, t, cw, g)
        else:
            dx, dw, db = (None if a is None else (g * a).astype(a.dtype) for a in saved)
        return dx, dw, db, None, None

    loss.defvjp(fwd, bwd)
    return jax.jit(loss)


def forward(xp, x, weight, bias, targets, class_weights, dtype, params, reduction, out_dtype, chunk):
    return _compiled(dtype, params, reduction, out_dtype, chunk)(x, weight, bias, targets, class_weights)

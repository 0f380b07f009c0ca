"""Fast paths for JAX arrays.

Under ``jax.jit`` XLA already fuses the portable code, so a fast path here
only pays where the portable code's safeguards cost XLA extra passes.

* ``cosine_similarity_loss``: the portable code scales each vector by its
  largest magnitude (two max-reductions, then the scaled dot product and
  norms), so that huge or tiny norms neither overflow nor underflow.  Here the
  dot product and both squared norms are first computed unscaled, in one
  fused pass; when every squared norm is finite and at least ``n`` times the
  smallest normal number (``n`` the vector length: then the squares that
  underflow cannot matter), the unscaled values are as accurate as the scaled
  ones and give the result.  Otherwise (a zero vector, huge or tiny norms,
  a nan) ``jax.lax.cond`` runs the portable computation instead; under
  ``jax.jit`` only the chosen branch runs (under ``jax.vmap`` both run).
  The ``eps`` rule is the portable one (``||x1|| ||x2|| >= eps``, else the
  plain dot product over ``eps``), and so are the gradients.

* ``cross_entropy``: the portable code keeps tiny losses by leaving the
  maximum's term out of the sum, ``log1p(sum over j != max of exp(z_j))``
  with ``z = x - max``.  That masked sum is what costs: XLA's CPU
  reduction loop is no longer vectorized (4096 x 32768 float32 logits:
  ``sum(exp(z))`` 0.09 s, the masked sum with the count of tied maxima
  0.53 s, the count alone 0.5 s).  Here ``s = sum(exp(z))`` is computed
  plainly and ``log(s)`` is the value when every row has ``s >= 2``: then
  the rounding error of ``s`` relative to ``s - 1`` is at most twice that of
  the masked sum, so ``log(s)`` is as accurate as ``log1p(rest)``.
  Otherwise (some row has a probability above 1/2 at its maximum)
  ``jax.lax.cond`` runs the masked sum, and rows with ``s < 2`` use it;
  such a row has a single maximum (two would make ``s >= 2``), so the
  count of ties is not needed.  The derivative is given by a
  ``jax.custom_jvp`` as ``exp(z) / s`` (the portable code's derivative), so
  ``jax.grad`` neither differentiates through the ``cond`` nor evaluates it
  when only the gradient is used.  Measured under ``jax.jit`` on that input
  (2-core machine, other work running; ``benchmarks/bench.py``): forward
  0.17 s against the peer's 0.12 s (portable 0.62 s), forward+backward
  0.40 s against 0.35 s (portable 0.73 s).  What remains in the forward is
  the ``cond``: XLA gives it a logits-sized temporary (512 MiB peak extra
  memory, the peer none), and the plain sum alone takes 0.09 s.  With a
  confident row in the batch the forward takes about twice the peer's time,
  still below the portable code.
  ``jax.nn.logsumexp`` is not equal to the
  portable value (it rounds a loss below 6e-8 to 0), so it is not used.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from .._common import reduce, xlogy_like
from ..embedding import scaled_cosine


def _cosine_scaled(a: Any, b: Any, axis: int, floor: float) -> tuple[Any, ...]:
    """The portable computation (``embedding.scaled_cosine``): the loss,
    whether each row is above eps, and the reciprocal norms (of a zero
    vector: 1, as the portable code's safe divisors)."""
    cosine, above, norm_a, norm_b = scaled_cosine(jnp, a, b, axis, floor)
    below = jnp.sum(a * b, axis=axis) / (floor if floor > 0 else 1.0)
    return jnp.where(above, cosine, below), above, 1 / norm_a, 1 / norm_b


def _cosine_rows(a: Any, b: Any, axis: int, floor: float) -> tuple[Any, ...]:
    """Loss, above-eps mask and reciprocal norms per row, unscaled where that
    is exact enough, scaled otherwise."""
    info = jnp.finfo(a.dtype)
    # below this a squared norm may have lost accuracy to underflowing squares
    low = float(info.tiny) * a.shape[axis]
    dot = jnp.sum(a * b, axis=axis)
    aa = jnp.sum(jnp.square(a), axis=axis)
    bb = jnp.sum(jnp.square(b), axis=axis)
    ordinary = jnp.all((aa >= low) & (aa <= info.max) & (bb >= low) & (bb <= info.max))

    def unscaled(a, b, dot, aa, bb):
        norm_a, norm_b = jnp.sqrt(aa), jnp.sqrt(bb)  # both > 0 here
        norms = norm_a * norm_b
        above = norms >= floor
        # below eps: the plain dot product over eps, as the portable code
        loss = jnp.where(above, dot / norms, dot / (floor if floor > 0 else 1.0))
        return loss, above, 1 / norm_a, 1 / norm_b

    def scaled(a, b, dot, aa, bb):
        return _cosine_scaled(a, b, axis, floor)

    return jax.lax.cond(ordinary, unscaled, scaled, a, b, dot, aa, bb)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _cosine(a: Any, b: Any, axis: int, floor: float) -> Any:
    return _cosine_rows(a, b, axis, floor)[0]


@functools.partial(_cosine.defjvp, symbolic_zeros=True)
def _cosine_jvp(axis, floor, primals, tangents):
    # d cos / da = (b / |b| - cos a / |a|) / |a| above eps, b / eps below it
    a, b = primals
    da, db = tangents
    loss, above, ra, rb = _cosine_rows(a, b, axis, floor)
    inverse = 1.0 / floor if floor > 0 else 1.0
    mask = jnp.expand_dims(above, axis)
    ra_, rb_, c_ = (jnp.expand_dims(v, axis) for v in (ra, rb, loss))
    out = jnp.zeros_like(loss)
    if not isinstance(da, SymbolicZero):
        grad_a = jnp.where(mask, (b * rb_ - a * (ra_ * c_)) * ra_, b * inverse)
        out = out + jnp.sum(da * grad_a, axis=axis)
    if not isinstance(db, SymbolicZero):
        grad_b = jnp.where(mask, (a * ra_ - b * (rb_ * c_)) * rb_, a * inverse)
        out = out + jnp.sum(db * grad_b, axis=axis)
    return loss, out


def cosine_similarity_loss(xp, a, b, axis, floor, reduction, out_dtype):
    if a.dtype not in (jnp.float32, jnp.float64) or a.size == 0:
        return NotImplemented
    info = jnp.finfo(a.dtype)
    if not float(info.tiny) * a.shape[axis] < float(info.max):
        return NotImplemented
    return reduce(xp, _cosine(a, b, axis, floor), reduction, out_dtype)


def _logsumexp_rows(x: Any, m: Any, axis: int) -> tuple[Any, Any]:
    """``log(sum(exp(x - m)))`` along ``axis`` (``m`` the maximum, kept
    dimension) as accurate as the portable ``log1p(rest)``, and the plain
    sum ``s``."""
    s = jnp.sum(jnp.exp(x - m), axis=axis)

    def plain(x, m, s):
        return jnp.log(s)

    def masked(x, m, s):
        z = x - m
        # the maximum's term left out; a nan (from an infinite maximum) stays
        rest = jnp.sum(jnp.where(z == 0, jnp.zeros_like(z), jnp.exp(z)), axis=axis)
        return jnp.where(s >= 2, jnp.log(s), jnp.log1p(rest))

    return jax.lax.cond(jnp.all(s >= 2), plain, masked, x, m, s), s


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _logsumexp(x: Any, m: Any, axis: int) -> Any:
    return _logsumexp_rows(x, m, axis)[0]


@_logsumexp.defjvp
def _logsumexp_jvp(axis, primals, tangents):
    # m is a constant (the portable code stops its gradient)
    x, m = primals
    dx, _ = tangents
    out, s = _logsumexp_rows(x, m, axis)
    return out, jnp.sum(jnp.exp(x - m) / jnp.expand_dims(s, axis) * dx, axis=axis)


def cross_entropy(xp, logits, targets, weights, axis, smoothing, probabilities, reduction, out_dtype, dtype):
    if dtype not in (jnp.float32, jnp.float64) or logits.size == 0:
        return NotImplemented
    x = logits.astype(dtype)
    m = jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    logsumexp = _logsumexp(x, m, axis)
    if probabilities:
        z = x - m
        score = jnp.sum(xlogy_like(jnp, targets.astype(dtype), z), axis=axis)
    else:
        # x_y - m: the same rounding as picking from x - m, without forming it
        picked = jnp.take_along_axis(x, jnp.expand_dims(targets, axis), axis=axis)
        score = jnp.squeeze(picked - m, axis=axis)
    if smoothing > 0:
        mean = jnp.sum((x - m) * (1.0 / x.shape[axis]), axis=axis)
        loss = logsumexp - (1.0 - smoothing) * score - smoothing * mean
    else:
        loss = logsumexp - score
    if weights is not None:
        loss = loss * weights.astype(dtype)
    return reduce(xp, loss, reduction, out_dtype)


def _bce_portable(x: Any, t: Any) -> Any:
    """The portable binary cross entropy with logits, element by element."""
    positive = x >= 0
    softplus = jnp.log1p(jnp.exp(jnp.where(positive, -x, x)))
    return xlogy_like(jnp, jnp.where(positive, 1.0 - t, -t), x) + softplus


def _bce_grads(x: Any, t: Any) -> tuple[Any, Any]:
    """The portable code's derivatives with respect to ``x`` and ``t``."""
    positive = x >= 0
    p = jnp.where(positive, 1.0 - t, -t)
    e = jnp.exp(jnp.where(positive, -x, x))
    s = e / (1.0 + e)
    dx = jnp.where(positive, p - s, p + s)
    dt = -jnp.where((p == 0) & ~jnp.isfinite(x), jnp.zeros_like(x), x)
    return dx, dt


def _bce_reduce(loss: Any, mean: bool) -> Any:
    return jnp.mean(loss) if mean else jnp.sum(loss)


def _bce_value(x: Any, t: Any, w: Any, mean: bool) -> Any:
    # p = 1 - t for x > 0 and -t for x < 0, from sign(x) rather than a
    # compare and select: XLA's CPU backend fuses a reduction only with
    # operations its fused kernels support (no compare, select or clamp) and
    # otherwise writes the rest out to memory.  p * x equals the portable
    # term except where 0 * inf gives nan (an infinite logit with the
    # matching target); the sum is then nan and the portable code runs.
    p = jnp.maximum(jnp.sign(x), 0.0) - t
    loss = p * x + jnp.log1p(jnp.exp(-jnp.abs(x)))
    if w is not None:
        loss = loss * w
    plain = _bce_reduce(loss, mean)

    def exact():
        loss = _bce_terms(x, t)
        return _bce_reduce(loss if w is None else loss * w, mean)

    return jax.lax.cond(jnp.isnan(plain), exact, lambda: plain)


def _bce_terms(x: Any, t: Any) -> Any:
    """The portable values, 0 * inf = 0 included, still without compares,
    selects or clamps (so that XLA fuses this branch as well)."""
    big = float(jnp.finfo(x.dtype).max)
    sign = jnp.sign(x)
    p = jnp.maximum(sign, 0.0) - t
    size = jnp.minimum(jnp.abs(x), big)
    # p * x as p * c + p * (x - c), c = x clipped to the finite range:
    # infinite is 0 for finite x and 1 for infinite x, where size is the
    # largest finite number: a nonzero p times it three times overflows to
    # +-inf, while 0 times it stays 0.  (size, not the constant, so that XLA
    # cannot fold big * big * big to inf.)
    infinite = jnp.sign(jnp.abs(x) - size)
    beyond = ((p * (sign * infinite)) * size) * size * size
    return (p * (sign * size) + beyond) + jnp.log1p(jnp.exp(-jnp.abs(x)))


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def _bce(x: Any, t: Any, w: Any, mean: bool) -> Any:
    return _bce_value(x, t, w, mean)


@functools.partial(_bce.defjvp, symbolic_zeros=True)
def _bce_jvp(mean, primals, tangents):
    x, t, w = primals
    dx, dt, dw = tangents
    value = _bce_value(x, t, w, mean)
    grad_x, grad_t = _bce_grads(x, t)
    out = jnp.zeros_like(x)
    if not isinstance(dx, SymbolicZero):
        out = out + grad_x * dx
    if not isinstance(dt, SymbolicZero):
        out = out + grad_t * dt
    if w is not None:
        out = out * w
        if not isinstance(dw, SymbolicZero):
            out = out + _bce_portable(x, t) * dw
    return value, _bce_reduce(out, mean)


def binary_cross_entropy(xp, x, t, weights, with_logits, reduction, out_dtype):
    # reduction 'none': XLA fuses the portable code already
    if not with_logits or reduction == "none" or x.dtype not in (jnp.float32, jnp.float64):
        return NotImplemented
    w = None if weights is None else weights.astype(x.dtype)
    return reduce(xp, _bce(x, t, w, reduction == "mean"), "none", out_dtype)

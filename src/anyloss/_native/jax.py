"""Fast paths for JAX arrays.

Under ``jax.jit`` XLA already fuses the portable code, so a fast path here
only pays where the portable code's safeguards cost XLA extra passes.  What
decides it on the CPU: XLA hands reductions to YNNPACK fusions, which take
arithmetic, ``exp``/``log``/``log1p``/``expm1``/``sqrt``, ``abs``, ``sign``,
``maximum``/``minimum`` and division, but no compare, select or clamp
(``where``, ``isnan``, ``clip``, ``sinh``).  A reduction over such an
operation gets its input written out to memory first (a full-size
temporary, and a second pass).  And a ``jax.lax.cond`` reserves the
temporaries of both branches: XLA's ``memory_analysis()`` counts the
fallback's buffers although it rarely runs.  So each fast path below
computes a select-free form in one fused pass, checks on the small result
whether that form is exact for this input, and otherwise runs the portable
computation through ``jax.lax.cond`` in blocks of ``_BLOCK`` elements
(``_blocked``), whose temporaries stay small.  Under ``jax.jit`` only the
chosen branch runs; under ``jax.vmap`` both run (and the result is still
the right one).  Where the forward form changes, a ``jax.custom_jvp`` gives
the portable derivative, so ``jax.grad`` never differentiates the cheap
form (second derivatives differentiate the rule, i.e. the portable
derivative).

* ``kl_div_loss``: the portable term is ``exp(t) (t - x)`` with 0 where
  ``exp(t) == 0`` and ``t - x`` is not finite (t = -inf: 0 * log 0 = 0).
  The plain product differs from it only there, and is nan there, so a row
  without nan is the portable row: ``sum(exp(t) * (t - x))`` (the peer's
  form), and the guarded rows (blocked) when some row is nan.  Derivative:
  the portable one in t; in x ``-exp(t)``, which is the portable derivative
  also where exp(t) = 0 (both 0; the portable select would in addition turn
  an infinite or nan cotangent into 0 there, which the product, written
  without reading x, does not).

* ``log_cosh_loss``: ``cosh(a) - 1 = u^2 / (2 (1 + u))`` with
  ``u = expm1(|a|)``: no cancellation for any error, so one formula (two
  transcendentals, no select) replaces the portable code's two branches
  (``sinh`` below 1, ``exp``/``log1p`` above, both evaluated).  ``|a|`` is
  capped at 20, where the loss is ``|a| - log 2`` to the last bit in float32
  and float64, and the rest is added back (``+ (|a| - 20)``), so nothing
  overflows.  Measured against mpmath (errors from 1e-18 to 300, around 1
  and 20): at most 5.5 ulps in float32 and 4.7 in float64 (the portable
  forms: 5.8 and 5.5), within 7 ulps of the portable values.  Derivative:
  the portable one.

* ``triplet_loss`` with ``p = 2``: the portable distance scales the
  differences by their largest magnitude (a max-reduction, a division, then
  the sum: two passes).  Here ``sum((u - v)^2) + eps`` is computed unscaled
  in one pass, and its square root is the distance when every row's total
  is finite and at least ``_exact_sums_floor`` (see below); otherwise the
  scaled form runs (blocked).  The derivative is ``((u - v) / s) * r`` per
  row with ``s = 1, r = 1 / d`` (unscaled) or ``s = scale,
  r = 1 / sqrt(scaled sum)`` (scaled), the portable derivative.  eps
  that the dtype cannot hold as a normal number, and other ``p``, are left
  to the portable code.

* ``cosine_similarity_loss``: likewise the dot product and both squared
  norms are first computed unscaled (three fused reductions, as the peer);
  when every squared norm is finite and at least ``_exact_sums_floor``,
  they give the result.  Otherwise (a zero vector, huge or tiny norms, a
  nan) the portable scaled computation runs (blocked).  The ``eps`` rule is
  the portable one (``||x1|| ||x2|| >= eps``, else the plain dot product over
  ``eps``), and so are the gradients.

  ``_exact_sums_floor``: XLA on the CPU flushes results below the smallest
  normal number ``tiny`` to zero, so each of ``n`` squares may lose up to
  ``tiny``; a sum of at least ``n tiny / eps`` has lost at most an ulp.
  (With ``n tiny`` as the bound, a vector of 999 entries 9.9e-20 and one
  whose square is ``2 n tiny`` gave a cosine of 1.0 instead of 0.84.)

* ``cross_entropy``: the portable code keeps tiny losses by leaving the
  maximum's term out of the sum, ``log1p(sum over j != max of exp(z_j))``
  with ``z = x - max``, which needs a compare in the reduction.  Here
  ``s = sum(exp(z))`` is computed plainly and ``log(s)`` is the value when
  every row has ``s >= 2``: then the rounding error of ``s`` relative to
  ``s - 1`` is at most twice that of the masked sum, so ``log(s)`` is as
  accurate as ``log1p(rest)``.  Otherwise (some row has a probability above
  1/2 at its maximum) ``jax.lax.cond`` runs the masked sum, and rows with
  ``s < 2`` use it; such a row has a single maximum (two would make
  ``s >= 2``), so the count of ties is not needed, and the mask is
  ``sign(-z)`` (1 below the maximum, 0 at it), a product rather than a
  select: the branch fuses and reserves nothing (it reserved a
  logits-sized 512 MiB with ``where``).  The derivative is given by a
  ``jax.custom_jvp`` as ``exp(z) / s`` (the portable code's derivative).
  ``jax.nn.logsumexp`` is not equal to the portable value (it rounds a loss
  below 6e-8 to 0), so it is not used.  With a confident row in the batch
  the forward makes three passes over the logits against the peer's two
  (measured 0.38 s against 0.27 s, portable 1.09 s).

* ``binary_cross_entropy`` with logits: ``p = max(sign(x), 0) - t``, so
  that the reduction fuses; ``p * x`` differs from the portable term only
  where ``0 * inf`` makes it nan, and then a select-free exact form runs
  (``_bce_terms``).  The gradient's ``p - s`` / ``p + s`` is written with
  ``s`` used once (two selects of one value made XLA write ``s`` out).

* ``nll_loss`` has no fast path: the portable code compiles to the same HLO
  as the peer (forward and gradient), so its ratios are timing noise.

Measured with ``python benchmarks/bench.py --libraries jax --losses
kl_div_loss,triplet_loss,log_cosh_loss,cross_entropy,binary_cross_entropy,
cosine_similarity_loss,nll_loss --repeat 3 --out '' --plot ''`` (2-core
machine shared with other work; ours/peer, forward and forward+backward,
before these changes in brackets): cross_entropy 1.03 / 0.92 (0.97 / 0.88),
binary_cross_entropy 1.04 / 0.97 (1.00 / 1.08), cosine_similarity_loss
1.03 / 1.22 (0.97 / 0.92), nll_loss 1.22 (0.2 ms) / 0.96, kl_div_loss
0.97 / 0.97 (4.90 / 1.08), log_cosh_loss 0.51 / 0.93 (1.68 / 0.91),
triplet_loss 0.98 / 1.05 (3.77 / 1.44).  Peak extra memory of the forwards:
cross_entropy 80 KiB (512 MiB before), cosine_similarity_loss 385 KiB
(128 MiB), kl_div_loss 192 KiB (128 MiB), triplet_loss 257 KiB (128 MiB),
log_cosh_loss 4 B (64 MiB; the peer 64 MiB); what remains is the blocked
fallbacks' reservation.  Run-to-run noise on this machine is about 10 %:
cosine_similarity_loss forward+backward read 1.15, 0.90 and 1.22 in three
interleaved runs of 11 rounds (the code before: 1.13, 1.06, 1.12); its
compiled gradient has the peer's passes (three fused reductions and one
elementwise pass).  With ``--portable`` the forward ratios read 1.4 to 1.6
(kl_div_loss, cross_entropy, binary_cross_entropy, cosine_similarity_loss):
the benchmark times the portable call right before ours in each round, and
whatever runs after a call that freed large temporaries is slowed (with the
peer placed there instead: peer 28.9 ms, ours 21.4 ms for
binary_cross_entropy).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from .._common import reduce, xlogy_like
from ..classification import cross_entropy_from_parts
from ..embedding import scaled_cosine

# Elements per block of a blocked fallback (see ``_blocked``).
_BLOCK = 1 << 14


def _floating(*arrays: Any) -> bool:
    """Whether the arrays are non-empty float32 or float64 arrays (the
    dtypes the fast paths are written for)."""
    return all(a.dtype in (jnp.float32, jnp.float64) and a.size > 0 for a in arrays)


def _blocked(fn: Any, arrays: tuple[Any, ...], axis: int) -> Any:
    """``fn(*arrays)``, a reduction along ``axis`` (a pytree of arrays shaped
    like the arrays without ``axis``), computed block by block along another
    axis.

    The fallbacks below hold compares and selects, which XLA's CPU backend
    does not fuse into a reduction: the elementwise part is written out, and
    a ``jax.lax.cond`` reserves that memory even when the branch never runs.
    In blocks of ``_BLOCK`` elements the temporaries stay small (and in the
    cache).  The last block is moved back to end at the array's end, so it
    may recompute some rows; they get the same values.
    """
    shape = arrays[0].shape
    other = 1 if axis == 0 else 0  # its position in the output is 0 either way
    if len(shape) < 2:
        return fn(*arrays)
    size = shape[other]
    per = max(1, _BLOCK // (arrays[0].size // size))
    if per >= size:
        return fn(*arrays)
    steps = -(-size // per)
    parts = [jax.ShapeDtypeStruct(a.shape[:other] + (per,) + a.shape[other + 1 :], a.dtype) for a in arrays]
    out = jax.eval_shape(fn, *parts)
    start_out = jax.tree_util.tree_map(
        lambda o: jnp.zeros((size,) + o.shape[1:], o.dtype), out
    )

    def body(i, out):
        start = jnp.minimum(i * per, size - per)
        block = fn(*(jax.lax.dynamic_slice_in_dim(a, start, per, axis=other) for a in arrays))
        return jax.tree_util.tree_map(
            lambda o, b: jax.lax.dynamic_update_slice_in_dim(o, b, start, axis=0), out, block
        )

    return jax.lax.fori_loop(0, steps, body, start_out)


def _jvp_of(fn: Any, primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> Any:
    """The tangent of ``fn`` (the portable computation) at ``primals``, for
    the tangents that are not symbolic zeros."""
    live = [i for i, d in enumerate(tangents) if not isinstance(d, SymbolicZero)]

    def restricted(*args: Any) -> Any:
        full = list(primals)
        for i, a in zip(live, args):
            full[i] = a
        return fn(*full)

    if not live:
        out = jax.eval_shape(fn, *primals)  # pragma: no cover
        return jnp.zeros(out.shape, out.dtype)  # pragma: no cover
    return jax.jvp(restricted, [primals[i] for i in live], [tangents[i] for i in live])[1]


def _cosine_scaled(a: Any, b: Any, axis: int, floor: float) -> tuple[Any, ...]:
    """The portable computation (``embedding.scaled_cosine``): the loss,
    whether each row is above eps, and the reciprocal norms (of a zero
    vector: 1, as the portable code's safe divisors)."""
    cosine, above, norm_a, norm_b = scaled_cosine(jnp, a, b, axis, floor)
    below = jnp.sum(a * b, axis=axis) / (floor if floor > 0 else 1.0)
    return jnp.where(above, cosine, below), above, 1 / norm_a, 1 / norm_b


def _exact_sums_floor(dtype: Any, n: int) -> float:
    """The smallest sum of ``n`` squares (or products) that is exact to an ulp
    whatever underflowed.

    XLA on the CPU flushes results below the smallest normal number
    (``tiny``) to zero, so each of the ``n`` terms may lose up to ``tiny``:
    at most an ulp of a sum of at least ``n * tiny / eps``.
    """
    info = jnp.finfo(dtype)
    return float(info.tiny) * n / float(info.eps)


def _cosine_rows(a: Any, b: Any, axis: int, floor: float) -> tuple[Any, ...]:
    """Loss, above-eps mask and reciprocal norms per row, unscaled where that
    is exact enough, scaled otherwise."""
    info = jnp.finfo(a.dtype)
    # below this a squared norm may have lost accuracy to underflowing squares
    low = _exact_sums_floor(a.dtype, a.shape[axis])
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
        return _blocked(lambda a, b: _cosine_scaled(a, b, axis, floor), (a, b), axis)

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
    if not _exact_sums_floor(a.dtype, a.shape[axis]) < float(jnp.finfo(a.dtype).max):
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
        # The maximum's term left out: sign(-z) is 1 below the maximum and 0
        # at it (z <= 0), so each term is exp(z) or 0 exactly, and a nan
        # (from an infinite maximum) stays.  A multiplication rather than a
        # select, which XLA's CPU backend would not fuse into the sum.
        rest = jnp.sum(jnp.exp(z) * jnp.sign(-z), axis=axis)
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
    mean = jnp.sum((x - m) * (1.0 / x.shape[axis]), axis=axis) if smoothing > 0 else None
    return cross_entropy_from_parts(xp, logsumexp, score, mean, smoothing, weights, reduction, out_dtype, dtype)


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
    # p - s for x >= 0, p + s below, with s used once: XLA writes a value
    # that two selects use out to memory rather than compute it twice.
    dx = p - jnp.where(positive, 1.0, -1.0) * s
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


# ------------------------------------------------------------------- kl_div_loss


def _kl_portable(x: Any, t: Any, axis: int) -> Any:
    """The portable rows: ``exp(t) (t - x)`` with 0 where ``exp(t) == 0`` and
    ``t - x`` is not finite."""
    return jnp.sum(xlogy_like(jnp, jnp.exp(t), t - x), axis=axis)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _kl_rows(x: Any, t: Any, axis: int) -> Any:
    # The plain product differs from the guarded one only where exp(t) is 0
    # and t - x is not finite, and there it is nan: a row without nan is the
    # portable row.
    rows = jnp.sum(jnp.exp(t) * (t - x), axis=axis)
    return jax.lax.cond(
        jnp.any(jnp.isnan(rows)),
        lambda: _blocked(functools.partial(_kl_portable, axis=axis), (x, t), axis),
        lambda: rows,
    )


@functools.partial(_kl_rows.defjvp, symbolic_zeros=True)
def _kl_rows_jvp(axis, primals, tangents):
    x, t = primals
    dx, dt = tangents
    # In t: the portable derivative.  In x: -exp(t), as the portable code's,
    # without reading x (whose only use there is the select that makes the
    # derivative 0 rather than -0 where exp(t) = 0).
    tangent = _jvp_of(lambda t: _kl_portable(x, t, axis), (t,), (dt,))
    if not isinstance(dx, SymbolicZero):
        tangent = tangent - jnp.sum(jnp.exp(t) * dx, axis=axis)
    return _kl_rows(x, t, axis), tangent


def kl_div_loss(xp, x, t, axis, reduction, out_dtype):
    if not _floating(x):
        return NotImplemented
    return reduce(xp, _kl_rows(x, t, axis), reduction, out_dtype)


# ----------------------------------------------------------------- log_cosh_loss

# At and above this |error| the loss is |error| - log 2 in float32 and float64:
# log1p(exp(-2 |error|)) < 5e-18 is below half an ulp of |error| - log 2.
_LOG_COSH_LINEAR = 20.0


def _log_cosh_portable(x: Any, y: Any) -> Any:
    err = x - y
    small = jnp.abs(err) < 1.0
    half = 0.5 * jnp.where(small, err, jnp.zeros_like(err))
    big = jnp.where(small, jnp.ones_like(err), jnp.abs(err))
    return jnp.where(
        small,
        jnp.log1p(2.0 * jnp.square(jnp.sinh(half))),
        big + jnp.log1p(jnp.exp(-2.0 * big)) - math.log(2.0),
    )


@jax.custom_jvp
def _log_cosh(x: Any, y: Any) -> Any:
    # cosh(a) - 1 = u^2 / (2 (1 + u)) with u = expm1(|a|) >= 0: no
    # cancellation anywhere, so one formula serves small and large errors.
    # |a| is capped where the loss has become |a| - log 2; the rest is added
    # back exactly as a - c.
    a = jnp.abs(x - y)
    c = jnp.minimum(a, _LOG_COSH_LINEAR)
    u = jnp.expm1(c)
    return jnp.log1p(u * u / (2.0 + 2.0 * u)) + (a - c)


@functools.partial(_log_cosh.defjvp, symbolic_zeros=True)
def _log_cosh_jvp(primals, tangents):
    return _log_cosh(*primals), _jvp_of(_log_cosh_portable, primals, tangents)


def log_cosh_loss(xp, x, y, reduction, out_dtype):
    if not _floating(x):
        return NotImplemented
    return reduce(xp, _log_cosh(x, y), reduction, out_dtype)


# ------------------------------------------------------------------ triplet_loss


def _distance_scaled(u: Any, v: Any, axis: int, floor: float) -> tuple[Any, Any, Any]:
    """The portable 2-norm of ``u - v`` (``embedding._distance`` with p = 2):
    the distance, the scale and ``1 / sqrt`` of the scaled sum."""
    d = u - v
    root = math.sqrt(floor)
    scale = jax.lax.stop_gradient(jnp.maximum(jnp.max(jnp.abs(d), axis=axis, keepdims=True), root))
    scale = jnp.where(scale == 0, jnp.ones_like(scale), scale)
    inner = jnp.sum(jnp.square(jnp.abs(d) / scale), axis=axis)
    scale = jnp.squeeze(scale, axis=axis)
    inner = inner + jnp.square(root / scale)
    norm = jnp.sqrt(inner)
    return scale * norm, scale, 1.0 / norm


def _distance_rows(u: Any, v: Any, axis: int, floor: float) -> tuple[Any, Any, Any]:
    """``(sum (u - v)^2 + eps) ** 0.5`` along ``axis`` as the portable code
    computes it, with a scale ``s`` and factor ``r`` such that the
    derivative is ``((u - v) / s) * r``."""
    info = jnp.finfo(u.dtype)
    low = _exact_sums_floor(u.dtype, u.shape[axis])
    total = jnp.sum(jnp.square(u - v), axis=axis) + floor
    # Squares that underflowed are harmless when the row's total is at least
    # ``low`` (as for cosine_similarity_loss).  Otherwise (and for overflow)
    # the portable scaled sums run.
    plain = jnp.all((total >= low) & (total <= float(info.max)))

    def unscaled():
        dist = jnp.sqrt(total)
        return dist, jnp.ones_like(dist), 1.0 / dist

    def scaled():
        return _blocked(lambda a, b: _distance_scaled(a, b, axis, floor), (u, v), axis)

    return jax.lax.cond(plain, unscaled, scaled)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _distance(u: Any, v: Any, axis: int, floor: float) -> Any:
    return _distance_rows(u, v, axis, floor)[0]


@functools.partial(_distance.defjvp, symbolic_zeros=True)
def _distance_jvp(axis, floor, primals, tangents):
    u, v = primals
    du, dv = tangents
    dist, s, r = _distance_rows(u, v, axis, floor)
    if isinstance(du, SymbolicZero):
        dd = -dv
    elif isinstance(dv, SymbolicZero):
        dd = du
    else:
        dd = du - dv
    g = (u - v) / jnp.expand_dims(s, axis)
    return dist, jnp.sum(g * dd, axis=axis) * r


def triplet_loss(xp, a, pos, neg, axis, degree, alpha, floor, reduction, out_dtype):
    if degree != 2 or not _floating(a):
        return NotImplemented
    info = jnp.finfo(a.dtype)
    # eps as the dtype holds it must not have lost digits itself
    if not _exact_sums_floor(a.dtype, a.shape[axis]) < float(info.max) or (
        floor != 0 and not float(info.tiny) <= floor <= float(info.max)
    ):
        return NotImplemented
    gap = _distance(a, pos, axis, floor) - _distance(a, neg, axis, floor)
    loss = jnp.maximum(gap + alpha, 0.0)
    return reduce(xp, loss, reduction, out_dtype)

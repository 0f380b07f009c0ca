"""Fast paths for MLX arrays (float32 compute dtype; float16/bfloat16 inputs
arrive cast to float32 and are cast back by ``reduce``).  Each is the
portable algorithm, safeguards included, as fused ``mx.compile`` kernels
inside an ``mx.custom_function`` whose VJP gives the portable code's
derivatives; none reads array values, so all run under ``mx.compile`` and
``mx.vmap`` too (tests/test_native_mlx_losses.py, tests/test_native_mlx.py).

Where the time goes on the CPU build (measured with ``mx.eval`` per op,
16M float32 elements, this 2-core machine): a pass of a simple op costs
55-70 ms (memory), ``mx.exp`` about 300 ms and ``mx.log1p`` about 280 ms,
but ``mx.log`` and ``mx.power`` only 100-150 ms.  MLX's ``exp`` is a
polynomial in ``2 ** (u * 1.442695f)`` (not vectorized in this build, by
its cost); ``_exp`` below computes the same power of
two of the same rounded product with ``std::pow`` (within 1 ulp of
``mx.exp`` on all of float32, its 0 and inf cut-offs included), and
``_log1p`` is ``log(1 + w)`` corrected for the rounding of ``1 + w``.
Kernels are traced per shape: a shapeless trace broadcasts every operand,
and the broadcasts count towards the depth (11) at which MLX stops fusing.

* ``cross_entropy``: the portable ``log1p(rest)`` with ``rest`` summed from
  one kernel, ``exp(x - m)`` with the first maximum's term (index from
  ``argmax``) set to ``exp(0) - 1 = 0``; the other maxima add 1 each, so
  ties are the portable code's ``count - 1``, with no data-dependent branch
  (``mx.logsumexp`` would round ``1 + rest``, and costs 2.2 s on
  4096x32768 against 0.7 s for this kernel).  Its VJP reuses the kernel's
  output: ``exp(x - m) * g`` on every class, the maxima's included.  The
  score, smoothing, probability targets and weights are the portable ops.
* ``binary_cross_entropy`` with logits: ``c * y + log1p(exp(-|x|))`` with
  ``c = 1 - t`` or ``-t`` and the guarded ``y`` (0 where an infinite logit
  meets ``c = 0``); gradients ``c -/+ sigmoid(-|x|)`` and ``-y``.  The
  targets' gradient at a kept infinite logit is ``-x`` (-inf); the portable
  code's is nan, MLX's VJP of ``where`` multiplying inf by the mask.
* ``log_cosh_loss``: ``q = expm1(min(|a|, 44))`` from ``exp`` and ``log``
  (Kahan), then ``log1p(q**2 / (2 + 2q))`` below 1 (the portable
  ``2 sinh(a/2)**2``) and ``|a| - log 2 + log1p(1 / (1 + q)**2)`` above;
  gradient ``tanh(a) = s / (s + 2)``, ``s = q (q + 2)`` (two kernels, each
  within MLX's fusion depth).
* ``smooth_l1_loss`` (beta > 0), ``gaussian_nll_loss``, ``kl_div_loss``'s
  per-element term: the portable expressions in one kernel; the gradients
  multiply by 0/1 masks where MLX's VJPs of ``where``/``maximum``/
  ``minimum`` do, so that ``0 * inf`` is nan exactly where the portable
  gradient is nan.

Values agree with the portable code to a few ulps; gradients that are a
difference of terms (softmax - target, sigmoid - t, ``exp(t) (1 + t - x)``)
to a few ulps of the terms; second derivatives through the custom VJPs are
the portable ones (tests).

Measured (``python benchmarks/bench.py --libraries mlx --losses ...
--repeat 3 --portable --out '' --plot ''``, ours/``mlx.nn.losses``,
forward / forward+backward; portable in brackets): cross_entropy 0.71
(1.48) / 1.38 (1.73), binary_cross_entropy 1.14 (1.70) / 1.24 (3.15),
log_cosh 1.10 (2.17) / 1.21 (2.95), kl_div 0.56 (1.46) / 1.01 (2.56),
gaussian_nll 0.59 (1.36) / 1.94 (1.98), smooth_l1 0.72 (1.19) / 1.25
(1.34).  What bounds forward+backward: kernels compiled with ``mx.compile``
and called from a custom VJP while ``mx.grad`` traces are not fused (a
kernel of 6 arithmetic ops: 64 MiB and 65 ms called directly, 128 MiB and
165-195 ms as a VJP under ``mx.grad``), so each VJP costs one pass per op,
like the peer's autodiff, whose formulas have fewer ops (no safeguards).
cross_entropy's backward (3.4 GiB peak against 1.0 GiB) keeps the terms,
the gather's scatter and the sum of the two gradients.

Not done: cosine_similarity_loss (2.8x / 2.1x).  The plain statistics
(``sum(a*b)``, ``sum(a*a)``, ``sum(b*b)``, 0.34-0.41 s against the peer's
0.40 s in one measurement) equal the scaled ones where every row has
``||a||^2, ||b||^2`` in ``[2**-60, 2**100]`` and ``||a|| ||b||`` clearly
above eps; checking that needs an eval (allowed under ``mx.grad``, refused
with ``ValueError`` under ``mx.compile``/``mx.vmap``, where the portable code
would run); anyloss never reads an MLX array's values (an eval is a device
sync on a GPU), so the choice cannot be made cheaply.  Both ways that avoid
it were measured on 16384 x 1024 float32 and cost more than the peer's 0.26 s
by themselves: the statistics in float64 (no product of float32 values
overflows or underflows there), 0.48-0.63 s; the scaled form with its fewest
passes (``max``/``min`` reductions 24 ms each, ``a / s`` 77 ms per input,
batched-matmul dot products 70 ms each), about 0.46 s.  nll_loss forward is 0.3 ms of Python overhead (argument
checks), the same with or without a fast path.
"""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx

from .._common import reduce, xlogy_like
from ..classification import cross_entropy_from_parts

_LOG2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
# The float32 constant MLX's own exp multiplies by (log2(e), rounded).
_LOG2E = 1.442695


def _kernel(fn: Any) -> Any:
    # Traced per shape: a shapeless trace broadcasts every operand
    # explicitly, and the broadcasts count towards the depth at which MLX
    # stops fusing (11), which splits the kernels into several passes.
    return mx.compile(fn)


def _all_float32(*arrays: Any) -> bool:
    return all(a is None or a.dtype == mx.float32 for a in arrays)


# ------------------------------------------------------------------- building blocks
# Used inside compiled kernels only.


def _exp(u: Any) -> Any:
    """MLX's own ``exp`` (to within one ulp), at a third of its cost on the
    CPU.

    MLX evaluates ``exp(u)`` as ``2 ** (u * 1.442695f)``: the product in
    float32, then a polynomial for the power of two, whose fused
    multiply-adds are library calls on CPUs built without FMA.  ``power``
    (``std::pow``) computes the same power of two of the same rounded
    product; below ``-87.68`` MLX gives 0 (the exponent field runs out) and
    above 88 infinity, and so does this.
    """
    z = u * _LOG2E
    e = mx.where(z + 0.5 < -126.0, 0.0, mx.power(2.0, z))
    return mx.where(u > 88.0, math.inf, e)


def _exp_nonpositive(u: Any) -> Any:
    """:func:`_exp` for ``u <= 0`` (or nan)."""
    z = u * _LOG2E
    return mx.where(z + 0.5 < -126.0, 0.0, mx.power(2.0, z))


def _log1p(w: Any) -> Any:
    """``log1p(w)`` for finite ``w > -1``, from ``log``: ``log(1 + w)`` times
    ``w / ((1 + w) - 1)``, which corrects the rounding of ``1 + w`` (a few
    ulps; ``std::log`` costs a fraction of ``std::log1p``)."""
    v = 1.0 + w
    return mx.where(v == 1.0, w, mx.log(v) * (w / (v - 1.0)))


# ------------------------------------------------------------- binary cross entropy


def _bce_value(x: Any, t: Any) -> Any:
    positive = x >= 0
    c = mx.where(positive, 1.0 - t, -t)
    y = mx.where((c == 0) & ~mx.isfinite(x), 0.0, x)
    return c * y + _log1p(_exp_nonpositive(-mx.abs(x)))


def _bce_grad_x(x: Any, t: Any, g: Any) -> Any:
    e = _exp_nonpositive(-mx.abs(x))
    sigmoid = e / (1.0 + e)
    return g * mx.where(x >= 0, (1.0 - t) - sigmoid, sigmoid - t)


def _bce_grad_t(x: Any, t: Any, g: Any) -> Any:
    c = mx.where(x >= 0, 1.0 - t, -t)
    return g * -mx.where((c == 0) & ~mx.isfinite(x), 0.0, x)


def _two_argument_function(value: Any, grad_x: Any, grad_t: Any) -> Any:
    """``value(x, t)`` as a custom function whose VJP is ``grad_x(x, t, g)``
    and ``grad_t(x, t, g)``, each its own compiled kernel, so that a
    gradient nobody asks for is never computed (MLX evaluates lazily)."""
    value_kernel, grad_x_kernel, grad_t_kernel = _kernel(value), _kernel(grad_x), _kernel(grad_t)

    @mx.custom_function
    def function(x: Any, t: Any) -> Any:
        return value_kernel(x, t)

    @function.vjp
    def function_vjp(primals: Any, cotangent: Any, output: Any) -> tuple[Any, Any]:
        x, t = primals
        return grad_x_kernel(x, t, cotangent), grad_t_kernel(x, t, cotangent)

    return function


_bce = _two_argument_function(_bce_value, _bce_grad_x, _bce_grad_t)


def binary_cross_entropy(xp, x, t, weights, with_logits, reduction, out_dtype):
    if not with_logits or not _all_float32(x, t):
        return NotImplemented
    loss = _bce(x, t)
    if weights is not None:
        loss = loss * weights.astype(x.dtype)
    return reduce(xp, loss, reduction, out_dtype)


# ------------------------------------------------------------------- cross entropy


def _rest_terms(x: Any, m: Any, k: Any, classes: Any) -> Any:
    # exp(x - m), with exp(0) - 1 = 0 for the first maximum (k), written
    # (x - m) * 0 so that an infinite maximum gives nan (inf - inf) there.
    return mx.where(classes == k, (x - m) * 0.0, _exp_nonpositive(x - m))


def _rest_terms_grad(x: Any, m: Any, k: Any, classes: Any, terms: Any, g: Any) -> Any:
    # The portable derivative of exp(x - m) - [x is a maximum]: exp(x - m)
    # everywhere, 1 at the maximum, written (x - m) + 1 there so that a
    # non-finite maximum gives nan.
    return mx.where(classes == k, (x - m) + 1.0, terms) * g


_rest_terms_kernel = _kernel(_rest_terms)
_rest_terms_grad_kernel = _kernel(_rest_terms_grad)


@mx.custom_function
def _ce_rest_terms(x: Any, m: Any, k: Any, classes: Any) -> Any:
    """The terms of the portable code's ``rest`` (``sum(exp(x - m) - [x ==
    m]) + count - 1``): ``exp(x - m)`` with the first maximum's (index
    ``k``) left out; the other maxima's ``exp(0) = 1`` stand for their count.

    ``m``, ``k`` and ``classes`` (the class indices along the axis) are
    constants for autodiff.  The VJP reuses the terms (no second ``exp``):
    ``exp(x - m) * g`` on every class, the maxima's included, as in the
    portable code; differentiated again, it uses this VJP once more, so
    second derivatives are the portable code's too.
    """
    return _rest_terms_kernel(x, m, k, classes)


@_ce_rest_terms.vjp
def _ce_rest_terms_vjp(primals: Any, cotangent: Any, output: Any) -> tuple[Any, ...]:
    x, m, k, classes = primals
    gx = _rest_terms_grad_kernel(x, m, k, classes, output, cotangent)
    return gx, mx.zeros_like(m), mx.zeros_like(k), mx.zeros_like(classes)


def cross_entropy(xp, logits, targets, weights, axis, smoothing, probabilities, reduction, out_dtype, dtype):
    n = logits.shape[axis]
    if dtype != mx.float32 or logits.size == 0 or n > 2**24:
        return NotImplemented
    x = logits.astype(dtype) if logits.dtype != dtype else logits
    # The first maximum and its index (argmax takes a nan where there is
    # one, so m is the portable max(x) on every row).
    k = mx.stop_gradient(mx.argmax(x, axis=axis, keepdims=True))
    m = mx.stop_gradient(mx.take_along_axis(x, k, axis=axis))
    shape = [1] * x.ndim
    shape[axis] = n
    classes = mx.arange(n, dtype=mx.float32).reshape(shape)
    # indices as float32 are exact (n <= 2**24)
    terms = _ce_rest_terms(x, m, k.astype(mx.float32), classes)
    logsumexp = mx.log1p(mx.sum(terms, axis=axis))
    if probabilities or smoothing > 0:
        z = x - m
    if probabilities:
        score = mx.sum(xlogy_like(xp, targets.astype(dtype), z), axis=axis)
    else:
        picked = mx.take_along_axis(x, mx.expand_dims(targets, axis), axis=axis)
        score = mx.squeeze(picked - m, axis=axis)
    mean = mx.sum(z * (1.0 / n), axis=axis) if smoothing > 0 else None
    return cross_entropy_from_parts(xp, logsumexp, score, mean, smoothing, weights, reduction, out_dtype, dtype)


# ----------------------------------------------------------------- elementwise losses
# Each is one fused kernel for the value and one per gradient, inside an
# ``mx.custom_function``; the gradients are the portable code's derivatives.


def _log_cosh_q(x: Any, y: Any) -> Any:
    # q = expm1(m) for m = |x - y| clipped at 44 (where exp(-2m) stops
    # counting and q**2 stays finite), from exp and log (Kahan's
    # (u - 1) m / log u, exact to a few ulps also for small m).
    m = mx.minimum(mx.abs(x - y), 44.0)
    u = mx.power(2.0, m * _LOG2E)  # MLX's exp(m), 0 <= m <= 44
    return mx.where(u == 1.0, m, (u - 1.0) * (m / mx.log(u)))


def _log_cosh_value(x: Any, y: Any, q: Any) -> Any:
    # Small errors: log1p(cosh(a) - 1) with cosh(a) - 1 = q**2 / (2 + 2q)
    # (the portable code's 2 sinh(a/2)**2); others: m - log 2 +
    # log1p(exp(-2m)) with exp(-2m) = 1 / (1 + q)**2, as in the portable
    # code.  log1p(w) as log(v) - ((v - 1) - w) / v, v = 1 + w: the log of
    # the rounded sum, corrected by its rounding error (no branch).
    m = mx.abs(x - y)
    small = m < 1.0
    p = 1.0 + q
    w = mx.where(small, q * (q / (2.0 + 2.0 * q)), 1.0 / (p * p))
    v = 1.0 + w
    lg = mx.log(v) - ((v - 1.0) - w) / v
    return mx.where(small, lg, lg + (m - _LOG2))


def _log_cosh_grad(x: Any, y: Any, q: Any, g: Any) -> Any:
    # tanh(a), the portable derivative of both branches, as
    # expm1(2m) / (expm1(2m) + 2) with expm1(2m) = q (q + 2).
    a = x - y
    s = q * (q + 2.0)
    d = s / (s + 2.0)
    return g * mx.where(a < 0, -d, d)


_log_cosh_q_kernel = _kernel(_log_cosh_q)
_log_cosh_value_kernel = _kernel(_log_cosh_value)
_log_cosh_grad_kernel = _kernel(_log_cosh_grad)


@mx.custom_function
def _log_cosh(x: Any, y: Any) -> Any:
    return _log_cosh_value_kernel(x, y, _log_cosh_q_kernel(x, y))


@_log_cosh.vjp
def _log_cosh_vjp(primals: Any, cotangent: Any, output: Any) -> tuple[Any, Any]:
    x, y = primals
    gx = _log_cosh_grad_kernel(x, y, _log_cosh_q_kernel(x, y), cotangent)
    return gx, -gx


def log_cosh_loss(xp, x, y, reduction, out_dtype):
    if not _all_float32(x, y):
        return NotImplemented
    return reduce(xp, _log_cosh(x, y), reduction, out_dtype)


def _smooth_l1_value(x: Any, y: Any, beta: Any) -> Any:
    diff = mx.abs(x - y)
    ratio = mx.minimum(diff / beta, 1.0)
    return mx.where(diff < beta, (0.5 * diff) * ratio, diff - 0.5 * beta)


def _smooth_l1_grad(x: Any, y: Any, beta: Any, g: Any) -> Any:
    # The portable code's chain rule, masks multiplied in as MLX's VJPs of
    # where and minimum do (so that 0 * inf is nan where theirs is):
    # quadratic part 0.5 ratio + 0.5 diff [q < 1] / beta, linear part 1.
    a = x - y
    diff = mx.abs(a)
    q = diff / beta
    quadratic = (diff < beta).astype(g.dtype)
    g_a = g * quadratic
    g_b = g * (1.0 - quadratic)
    inner = (g_a * mx.minimum(q, 1.0)) * 0.5 + ((g_a * (0.5 * diff)) * (q < 1.0)) / beta
    return (inner + g_b) * mx.sign(a)


_smooth_l1_value_kernel = _kernel(_smooth_l1_value)
_smooth_l1_grad_kernel = _kernel(_smooth_l1_grad)


@mx.custom_function
def _smooth_l1(x: Any, y: Any, beta: Any) -> Any:
    return _smooth_l1_value_kernel(x, y, beta)


@_smooth_l1.vjp
def _smooth_l1_vjp(primals: Any, cotangent: Any, output: Any) -> tuple[Any, Any, Any]:
    x, y, beta = primals
    gx = _smooth_l1_grad_kernel(x, y, beta, cotangent)
    return gx, -gx, mx.zeros_like(beta)


def smooth_l1_loss(xp, x, y, beta, reduction, out_dtype):
    if beta == 0 or not _all_float32(x, y):
        return NotImplemented
    return reduce(xp, _smooth_l1(x, y, mx.array(beta, mx.float32)), reduction, out_dtype)


def _gaussian_value(x: Any, y: Any, v: Any, floor: Any, offset: Any) -> Any:
    v = mx.maximum(v, floor)
    r = y - x
    return (0.5 * mx.log(v) + (0.5 * r) * (r / v)) + offset


def _gaussian_grad_r(x: Any, y: Any, v: Any, floor: Any, g: Any) -> Any:
    # d/dr of (0.5 r) (r / v)
    v = mx.maximum(v, floor)
    r = y - x
    return (g * (r / v)) * 0.5 + (g * (0.5 * r)) / v


def _gaussian_grad_x(x: Any, y: Any, v: Any, floor: Any, g: Any) -> Any:
    return -_gaussian_grad_r(x, y, v, floor, g)


def _gaussian_grad_v(x: Any, y: Any, v: Any, floor: Any, g: Any) -> Any:
    # 0.5 / v from the log, -((0.5 r) r) / v**2 from the quotient (MLX's VJP
    # of a division); times [v > floor] (MLX's maximum passes a tie's
    # gradient to the floor).
    w = mx.maximum(v, floor)
    r = y - x
    d = (g * 0.5) / w + -(((g * (0.5 * r)) * r) / mx.square(w))
    return d * (v > floor)


_gaussian_value_kernel = _kernel(_gaussian_value)
_gaussian_grad_x_kernel = _kernel(_gaussian_grad_x)
_gaussian_grad_r_kernel = _kernel(_gaussian_grad_r)
_gaussian_grad_v_kernel = _kernel(_gaussian_grad_v)


@mx.custom_function
def _gaussian(x: Any, y: Any, v: Any, floor: Any, offset: Any) -> Any:
    return _gaussian_value_kernel(x, y, v, floor, offset)


@_gaussian.vjp
def _gaussian_vjp(primals: Any, cotangent: Any, output: Any) -> tuple[Any, ...]:
    x, y, v, floor, offset = primals
    return (
        _gaussian_grad_x_kernel(x, y, v, floor, cotangent),
        _gaussian_grad_r_kernel(x, y, v, floor, cotangent),
        _gaussian_grad_v_kernel(x, y, v, floor, cotangent),
        mx.zeros_like(floor),
        mx.zeros_like(offset),
    )


def gaussian_nll_loss(xp, x, y, v, full, floor, reduction, out_dtype):
    if not _all_float32(x, y, v):
        return NotImplemented
    offset = mx.array(_HALF_LOG_2PI if full else 0.0, mx.float32)
    loss = _gaussian(x, y, v, mx.array(floor, mx.float32), offset)
    return reduce(xp, loss, reduction, out_dtype)


def _kl_terms(x: Any, t: Any) -> Any:
    p = _exp(t)
    d = t - x
    return p * mx.where((p == 0) & ~mx.isfinite(d), 0.0, d)


def _kl_grad_x(x: Any, t: Any, g: Any) -> Any:
    return -(g * _exp(t))


def _kl_grad_t(x: Any, t: Any, g: Any) -> Any:
    p = _exp(t)
    d = t - x
    return g * p + (g * mx.where((p == 0) & ~mx.isfinite(d), 0.0, d)) * p


_kl = _two_argument_function(_kl_terms, _kl_grad_x, _kl_grad_t)


def kl_div_loss(xp, x, t, axis, reduction, out_dtype):
    if not _all_float32(x, t):
        return NotImplemented
    return reduce(xp, mx.sum(_kl(x, t), axis=axis), reduction, out_dtype)

"""The portable math of every loss, written once against the Array API.

Each formula takes the namespace, the checked arrays (floating arrays already
in the compute dtype, class indices as given) and the loss's static
parameters, and returns the unreduced loss.  :func:`evaluate` is the whole
computation of a call: cast, formula, per-example weights, reduction.  The
front doors call it when no fast path takes the call; the JAX and MLX fast
paths compile it; the PyTorch and NumPy ones import the formulas they use.
Nothing here reads array values, so every formula traces under ``jax.jit``,
``mx.compile`` and ``torch.compile``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from ._common import (
    astype, at_least, at_most, gather, is_namespace, reduce, scan, stop_gradient, take, xlogy_like,
)

LOG2 = math.log(2.0)
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

# Beyond this |error| log cosh is |error| - log 2 to the last bit in float32
# and float64 (log1p(exp(-40)) is below half an ulp of 20 - log 2).
LOG_COSH_LINEAR = 20.0


def _on_device(xp: Any, like: Any) -> dict[str, Any]:
    """The keyword that creates an array where ``like`` lives (PyTorch: its
    device; the other namespaces create arrays where their inputs are)."""
    return {"device": like.device} if is_namespace(xp, "torch") else {}


# Masks combine by logical_and/logical_or, never by ``&`` and ``|``: under
# mx.vmap, MLX's bitwise operators read garbage for the second and later
# slices when one operand is not mapped (an arange, a constant mask).
def _and(xp: Any, *masks: Any) -> Any:
    return functools.reduce(xp.logical_and, masks)


def _or(xp: Any, *masks: Any) -> Any:
    return functools.reduce(xp.logical_or, masks)


def _nonzero(xp: Any, x: Any) -> Any:
    """``x`` with zeros replaced by ones, for dividing by a norm."""
    return xp.where(x == 0, xp.ones_like(x), x)


def _scale(xp: Any, s: Any) -> Any:
    """A largest magnitude to divide by: 1 where it is 0 (nothing to scale)
    or infinite (the infinite entry then carries through as itself)."""
    return xp.where(xp.logical_or(s == 0, s == math.inf), xp.ones_like(s), s)


# ---------------------------------------------------------------- classification


def shifted_logsumexp(xp: Any, z: Any, axis: int) -> Any:
    """``logsumexp(z)`` along ``axis`` for ``z`` whose maximum is 0.

    The terms at the maximum contribute exactly 1 each, so the sum is
    ``1 + rest`` and its log is ``log1p(rest)``: a confident, correct
    prediction keeps its tiny loss instead of rounding ``log(1 + 1e-9)`` to 0.
    The gradient is unchanged (``exp(z) - 1`` at the maximum has slope 1).
    """
    at_max = astype(xp, z == 0, z.dtype)
    rest = xp.sum(xp.exp(z) - at_max, axis=axis) + (xp.sum(at_max, axis=axis) - 1.0)
    return xp.log1p(rest)


def cross_entropy(
    xp: Any,
    logits: Any,
    targets: Any,
    class_weights: Any,
    axis: int,
    smoothing: float,
    probabilities: bool,
    guard: bool,
    softcap: float | None,
    z_loss: float,
    ignore_index: int | None,
) -> Any:
    """Cross entropy from the shifted logits ``z = x - max`` (a constant for
    autodiff), with ``lse = log sum exp z`` kept exact for confident rows.

    Without class weights, ``lse - (1 - s) z_y - s mean(z)`` (MLX's form;
    ``z_y`` is ``sum(p z)`` for probabilities, with ``0 * z = 0``).  With
    class weights ``w``, PyTorch's: ``(1 - s) w_y (lse - z_y) + s/C sum_c w_c
    (lse - z_c)``, and ``sum_c w_c t'_c (lse - z_c)`` with ``t' = (1 - s) t +
    s/C`` for probabilities.  Soft-capping replaces ``x`` by ``c tanh(x / c)``
    first; z-loss adds ``z_loss lse(x)^2`` (weighted as its row).  Ignored
    rows are masked before anything is gathered and give 0 (and a zero
    gradient, even for a NaN logit).  With class weights or ignore_index the
    result is ``(loss, total)``: 'mean' divides by the total weight of the
    rows kept.  ``guard``: indices whose range was not checked give NaN where
    out of range.
    """
    smooth = not (isinstance(smoothing, float) and smoothing == 0)  # an array may be 0
    x, keep = logits, None
    if ignore_index is not None:  # masked before any operation touches the logits
        keep = targets != ignore_index
        targets = xp.where(keep, targets, xp.zeros_like(targets))
        x = xp.where(xp.expand_dims(keep, axis=axis), x, xp.zeros_like(x))
    if softcap is not None:
        x = softcap * xp.tanh(x / softcap)
    top = stop_gradient(xp, xp.max(x, axis=axis, keepdims=True))
    z = x - top
    lse = shifted_logsumexp(xp, z, axis)
    n = z.shape[axis]
    row_weight = None
    if class_weights is not None:
        shape = [1] * z.ndim
        shape[axis] = n
        w = xp.reshape(class_weights, tuple(shape))
        if probabilities:
            t = targets if not smooth else (1.0 - smoothing) * targets + smoothing / n
            wt = w * t
            loss = lse * xp.sum(wt, axis=axis) - xp.sum(xlogy_like(xp, wt, z), axis=axis)
        else:
            row_weight = take(xp, class_weights, targets)
            loss = (1.0 - smoothing) * row_weight * (lse - gather(xp, z, targets, axis, guard))
            if smooth:
                # s/C sum_c w_c (lse - z_c), the sum over c of (w_c / C) z_c: the
                # sum of z itself may overflow
                spread = lse * xp.sum(w / n, axis=axis) - xp.sum((w / n) * z, axis=axis)
                loss = loss + smoothing * spread
    else:
        if probabilities:
            score = xp.sum(xlogy_like(xp, targets, z), axis=axis)
        else:
            score = gather(xp, z, targets, axis, guard)
        loss = lse - score
        if smooth:
            # The mean as a sum of z / n: the sum of z itself may overflow.
            mean = xp.sum(z * (1.0 / n), axis=axis)
            loss = lse - (1.0 - smoothing) * score - smoothing * mean
    if z_loss > 0:
        log_z = lse + xp.squeeze(top, axis=axis)
        extra = z_loss * xp.square(log_z)
        loss = loss + (extra if row_weight is None else row_weight * extra)
    if keep is not None:
        loss = xp.where(keep, loss, xp.zeros_like(loss))
    if probabilities or (class_weights is None and keep is None):
        return loss
    total = row_weight if row_weight is not None else astype(xp, keep, loss.dtype)
    if row_weight is not None and keep is not None:
        total = xp.where(keep, total, xp.zeros_like(total))
    return loss, xp.sum(total)


def binary_cross_entropy(xp: Any, x: Any, t: Any, pos_weight: Any, with_logits: bool) -> Any:
    """``-(w t log p + (1 - t) log(1 - p))``, ``w`` the positive class's weight
    (1 without ``pos_weight``; broadcast along the last axis).

    With logits: ``(1 - t) x + (1 + (w - 1) t) log1p(exp(-x))`` for ``x >= 0``
    and ``-w t x + (1 + (w - 1) t) log1p(exp(x))`` below, with ``0 * x = 0``
    so that an infinite logit with its matching target has loss 0.  With
    probabilities each log is clipped at -100 (MLX, PyTorch); the stand-ins
    keep the gradient finite at p = 0 and 1, and a NaN probability stays NaN.
    """
    wt = t if pos_weight is None else pos_weight * t
    if with_logits:
        positive = x >= 0
        softplus = xp.log1p(xp.exp(xp.where(positive, -x, x)))
        if pos_weight is not None:
            softplus = (1.0 - t + wt) * softplus
        return xlogy_like(xp, xp.where(positive, 1.0 - t, -wt), x) + softplus
    zero, one = x == 0, x == 1
    log_p = xp.where(zero, -100.0, at_least(xp, xp.log(xp.where(zero, xp.ones_like(x), x)), -100.0))
    log_1mp = xp.where(
        one, -100.0, at_least(xp, xp.log1p(-xp.where(one, xp.zeros_like(x), x)), -100.0)
    )
    return -(wt * log_p + (1.0 - t) * log_1mp)


def nll_loss(
    xp: Any, inputs: Any, targets: Any, class_weights: Any, axis: int, guard: bool,
    ignore_index: int | None,
) -> Any:
    """``-w_y x_y``; ignored rows give 0 and, with class weights or
    ignore_index, ``(loss, total weight of the rows kept)`` (see
    :func:`cross_entropy`), by :func:`weighted_rows` after the gather."""
    keep = None
    if ignore_index is not None:
        keep = targets != ignore_index
        targets = xp.where(keep, targets, xp.zeros_like(targets))
    loss = -gather(xp, inputs, targets, axis, guard)
    if class_weights is None and keep is None:
        return loss
    return weighted_rows(xp, loss, targets, class_weights, keep)


def weighted_rows(xp: Any, loss: Any, targets: Any, class_weights: Any, keep: Any) -> Any:
    """Row losses times their class's weight, 0 where not ``keep``, and the
    total weight of the rows kept: ``(loss, total)``.  The mask comes first,
    on the row values (one pass over N, not N x C), so a NaN an ignored row
    holds reaches neither the loss nor a gradient."""
    if keep is not None:
        loss = xp.where(keep, loss, xp.zeros_like(loss))
    total = xp.ones_like(loss)
    if class_weights is not None:
        total = take(xp, class_weights, targets)
        loss = total * loss
    if keep is not None:
        total = xp.where(keep, total, xp.zeros_like(total))
    return loss, xp.sum(total)


def kl_div_loss(xp: Any, x: Any, t: Any, axis: int) -> Any:
    """``sum(exp(t) (t - x))`` with ``0 * log 0 = 0`` (t = -inf contributes 0)."""
    return xp.sum(xlogy_like(xp, xp.exp(t), t - x), axis=axis)


def hinge_loss(xp: Any, x: Any, t: Any) -> Any:
    return at_least(xp, 1.0 - x * t, 0.0)


# -------------------------------------------------------------------- regression


def l1_loss(xp: Any, x: Any, y: Any) -> Any:
    return xp.abs(x - y)


def mse_loss(xp: Any, x: Any, y: Any) -> Any:
    return xp.square(x - y)


def smooth_l1_loss(xp: Any, x: Any, y: Any, beta: float) -> Any:
    """``0.5 d^2 / beta`` below beta, ``d - beta / 2`` above, as
    ``0.5 d (d / beta)`` so that ``d^2`` cannot overflow for a large beta.
    The minimum (a no-op where the branch is used) keeps compilers from
    reassociating the product back into ``d^2 (0.5 / beta)``."""
    diff = xp.abs(x - y)
    if isinstance(beta, (int, float)) and beta == 0:  # a number (an array beta of 0 takes the linear branch)
        return diff
    ratio = at_most(xp, diff / beta, 1.0)
    return xp.where(diff < beta, (0.5 * diff) * ratio, diff - 0.5 * beta)


def huber_loss(xp: Any, x: Any, y: Any, delta: float) -> Any:
    """``q (|a| - q / 2)`` with ``q = min(|a|, delta)``: one select-free
    form for both branches (``|a|^2 / 2`` within delta, ``delta (|a| - delta
    / 2)`` beyond).  Inductor miscompiles the equal ``q^2 / 2 + delta (|a| -
    q)`` for a symbolic delta (``torch.compile(dynamic=True)``, torch 2.13)."""
    abs_err = xp.abs(x - y)
    q = at_most(xp, abs_err, delta)
    return q * (abs_err - 0.5 * q)


def log_cosh_loss(xp: Any, x: Any, y: Any) -> Any:
    """``log cosh(a)`` as ``log1p(u^2 / (2 (1 + u)))`` with ``u = expm1(|a|)``.

    ``cosh(a) - 1 = u^2 / (2 (1 + u))`` has no cancellation for any error, so
    small errors keep their loss (1e-4 gives 5e-9) with one select-free
    formula.  ``|a|`` is capped at 20, where the loss has become
    ``|a| - log 2``, and the rest is added back, so nothing overflows.
    """
    a = xp.abs(x - y)
    c = at_most(xp, a, LOG_COSH_LINEAR)
    u = xp.expm1(c)
    return xp.log1p(u * u / (2.0 + 2.0 * u)) + (a - c)


def gaussian_nll_loss(xp: Any, x: Any, y: Any, v: Any, full: bool, floor: float) -> Any:
    """``(log v + r^2 / v) / 2`` with ``v = max(vars, eps)``, as
    ``(r / 2)(r / v)``: the square alone may overflow."""
    v = at_least(xp, v, floor)
    residual = y - x
    loss = 0.5 * xp.log(v) + (0.5 * residual) * (residual / v)
    return loss + HALF_LOG_2PI if full else loss


# --------------------------------------------------------------------- embedding


def scaled_cosine(xp: Any, a: Any, b: Any, axis: int, floor: float) -> tuple[Any, Any]:
    """The cosine of ``a`` and ``b`` along ``axis``, each vector scaled by its
    largest magnitude first, and whether ``||a|| ||b|| >= floor``.  Nothing
    overflows or underflows on the way; the scales are constants for
    autodiff (their derivative would bring ``1 / scale^2``)."""
    scale_a = stop_gradient(xp, xp.max(xp.abs(a), axis=axis, keepdims=True))
    scale_b = stop_gradient(xp, xp.max(xp.abs(b), axis=axis, keepdims=True))
    ua = a / _scale(xp, scale_a)  # largest entry of magnitude 1 (or all zero)
    ub = b / _scale(xp, scale_b)
    dot = xp.sum(ua * ub, axis=axis)
    norm_ua = xp.sqrt(_nonzero(xp, xp.sum(xp.square(ua), axis=axis)))
    norm_ub = xp.sqrt(_nonzero(xp, xp.sum(xp.square(ub), axis=axis)))
    scale_a, scale_b = xp.squeeze(scale_a, axis=axis), xp.squeeze(scale_b, axis=axis)
    # ||a|| ||b|| >= eps through square roots, so two huge norms cannot
    # overflow; NaN (from a NaN or infinite entry) counts as above.
    root_scale = xp.sqrt(scale_a) * xp.sqrt(scale_b)
    root_floor = math.sqrt(floor) if isinstance(floor, (int, float)) else xp.sqrt(floor)  # a number, or an array eps
    above = ~(root_scale < root_floor / xp.sqrt(norm_ua * norm_ub))
    return dot / (norm_ua * norm_ub), above


def cosine_similarity_loss(xp: Any, a: Any, b: Any, axis: int, floor: float) -> Any:
    """``a . b / max(||a|| ||b||, eps)``: the scaled cosine where the norms'
    product reaches eps; below it the plain dot product over eps (which also
    gives the right gradient at a zero vector)."""
    cosine, above = scaled_cosine(xp, a, b, axis, floor)
    masked = xp.expand_dims(above, axis=axis)
    a_below = xp.where(masked, xp.zeros_like(a), a)
    b_below = xp.where(masked, xp.zeros_like(b), b)
    if isinstance(floor, (int, float)):
        floor = floor if floor > 0 else 1.0
    else:  # an array eps
        floor = xp.where(floor > 0, floor, xp.ones_like(floor))
    below = xp.sum(a_below * b_below, axis=axis) / floor
    return xp.where(above, cosine, below)


def distance(xp: Any, diff: Any, p: float, eps: float, axis: int) -> Any:
    """``(sum |diff|^p + eps) ** (1/p)`` along ``axis``.

    Written as ``s (sum (|diff|/s)^p + eps/s^p) ** (1/p)`` with ``s`` the
    largest of ``|diff|`` and ``eps ** (1/p)``: the powers lie in ``[0, 1]``,
    so large differences do not overflow and tiny ones do not underflow.  The
    value does not depend on ``s``, a constant for autodiff.
    """
    magnitude = xp.abs(diff)
    if p == 1:
        return xp.sum(magnitude, axis=axis) + eps
    floor = eps ** (1.0 / p)
    scale = stop_gradient(xp, at_least(xp, xp.max(magnitude, axis=axis, keepdims=True), floor))
    scale = _scale(xp, scale)  # all-zero differences with eps = 0, or an infinite one
    scaled = magnitude / scale
    scale = xp.squeeze(scale, axis=axis)
    if p == 2:
        return scale * xp.sqrt(xp.sum(xp.square(scaled), axis=axis) + xp.square(floor / scale))
    inner = xp.sum(xp.pow(scaled, p), axis=axis) + xp.pow(floor / scale, p)
    return scale * xp.pow(inner, 1.0 / p)


def triplet_loss(
    xp: Any, a: Any, pos: Any, neg: Any, axis: int, p: float, margin: float, eps: float
) -> Any:
    gap = distance(xp, a - pos, p, eps, axis) - distance(xp, a - neg, p, eps, axis)
    return at_least(xp, gap + margin, 0.0)


def margin_ranking_loss(xp: Any, x1: Any, x2: Any, y: Any, margin: float) -> Any:
    return at_least(xp, margin - y * (x1 - x2), 0.0)


# ------------------------------------------------------------- focal and poly-1


def _tiny(xp: Any, dtype: Any) -> float:
    """The smallest normal number of ``dtype``: a floor for a factor that may
    underflow (XLA on the CPU flushes subnormals to zero)."""
    return float(xp.finfo(dtype).smallest_normal)


def _take_class(xp: Any, values: Any, indices: Any, guard: bool) -> Any:
    """``values[indices]`` for a 1-d ``values`` (one entry per class) and
    class indices of any shape; with ``guard`` an index out of range reads
    entry 0 (the loss it multiplies is NaN there already)."""
    if guard:
        n = values.shape[0]
        indices = xp.where(xp.logical_and(indices >= 0, indices < n), indices, xp.zeros_like(indices))
    picked = xp.take(values, xp.reshape(indices, (-1,)), axis=0)
    return xp.reshape(picked, tuple(indices.shape))


def sigmoid_focal_loss(xp: Any, x: Any, t: Any, alpha: Any, gamma: float) -> Any:
    """torchvision's ``alpha_t (1 - p_t)^gamma BCE(x, t)`` with ``p = sigmoid(x)``.

    With ``a = |x|`` and ``c`` the target on the side the logit leans away
    from (``1 - t`` for ``x >= 0``, ``t`` below): ``BCE = c a + log1p(e^{-a})``
    and ``1 - p_t = (c + (1 - c) e^{-a}) / (1 + e^{-a})``: sums of positive
    terms, so both keep their relative precision and nothing overflows.  The
    power is taken of ``1 - p_t`` floored at the smallest normal number, so
    that ``(1 - p_t)^gamma`` has a finite gradient for every ``gamma > 0``
    where ``1 - p_t`` underflows (a saturated, right logit; the loss there is
    below the floor anyway).  ``0 * inf = 0`` in the BCE for infinite logits.
    """
    positive = x >= 0
    a = xp.where(positive, x, -x)  # |x| with slope 1 at 0 from either side
    c = xp.where(positive, 1.0 - t, t)
    e = xp.exp(-a)
    loss = xlogy_like(xp, c, a) + xp.log1p(e)
    if gamma != 0:
        m = at_least(xp, (c + (1.0 - c) * e) / (1.0 + e), _tiny(xp, x.dtype))
        loss = loss * (m if gamma == 1 else xp.pow(m, gamma))
    if alpha is None:
        return loss
    return loss * ((1.0 - alpha) + (2.0 * alpha - 1.0) * t)


def _focal_factor(xp: Any, ce: Any, gamma: float) -> Any:
    """``(1 - p)^gamma`` from ``ce = -log p``: ``1 - p = -expm1(-ce)`` keeps
    its precision for ``p`` near 1, and the floor at the smallest normal
    number keeps the gradient finite where it underflows (``ce == 0``)."""
    m = at_least(xp, -xp.expm1(-ce), _tiny(xp, ce.dtype))
    return m if gamma == 1 else xp.pow(m, gamma)


def softmax_focal_loss(
    xp: Any, logits: Any, targets: Any, class_weights: Any, axis: int, gamma: float, guard: bool
) -> Any:
    """``-w_y (1 - p_y)^gamma log p_y``: ``-log p_y`` is the cross entropy
    (exact for a confident, right prediction), and the factor is taken from it."""
    ce = cross_entropy(xp, logits, targets, None, axis, 0.0, False, guard, None, 0.0, None)
    return softmax_focal_of_ce(xp, ce, targets, class_weights, gamma, guard)


def softmax_focal_of_ce(
    xp: Any, ce: Any, targets: Any, class_weights: Any, gamma: float, guard: bool
) -> Any:
    """:func:`softmax_focal_loss` from the cross entropy ``ce`` of the same
    call (a fast path may compute it with its library's kernel, e.g.
    :func:`cross_entropy_plain`: a loss far below eps is then rounded)."""
    loss = ce if gamma == 0 else ce * _focal_factor(xp, ce, gamma)
    if class_weights is not None:
        loss = loss * _take_class(xp, class_weights, targets, guard)
    return loss


def poly1_cross_entropy(
    xp: Any, logits: Any, targets: Any, axis: int, epsilon: float, probabilities: bool, guard: bool
) -> Any:
    """``CE + epsilon (1 - p_t)`` (PolyLoss, optax's numbers).  For class
    indices ``1 - p_y = -expm1(-CE)``; for probabilities ``t``,
    ``CE = -sum(t log p)`` and ``1 - p_t = sum(t (1 - p))``, with
    ``1 - p = -expm1(log p)`` and ``0 log 0 = 0``."""
    if not probabilities:
        ce = cross_entropy(xp, logits, targets, None, axis, 0.0, False, guard, None, 0.0, None)
        return poly1_of_ce(xp, ce, epsilon)
    t = astype(xp, targets, logits.dtype)
    z = logits - stop_gradient(xp, xp.max(logits, axis=axis, keepdims=True))
    log_p = z - xp.expand_dims(shifted_logsumexp(xp, z, axis), axis=axis)
    ce = -xp.sum(xlogy_like(xp, t, log_p), axis=axis)
    return ce + epsilon * xp.sum(t * -xp.expm1(log_p), axis=axis)


def poly1_of_ce(xp: Any, ce: Any, epsilon: float) -> Any:
    """:func:`poly1_cross_entropy` for class indices from their cross entropy
    ``ce`` (see :func:`softmax_focal_of_ce`)."""
    return ce + epsilon * -xp.expm1(-ce)


# ------------------------------------------------------------------ segmentation


def _sigmoid(xp: Any, x: Any) -> Any:
    """``1 / (1 + e^{-x})`` without overflow: ``e^{x} / (1 + e^{x})`` below 0."""
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, xp.ones_like(e), e) / (1.0 + e)


def dice_loss(
    xp: Any, x: Any, targets: Any, axis: int, alpha: float, beta: float, smooth: float,
    from_logits: bool, probabilities: bool, guard: bool,
) -> Any:
    """The Tversky loss ``1 - (TP + s) / (TP + alpha FP + beta FN + s)`` per
    sample (axis 0) and class, the sums over the other axes, then the mean
    over classes.  From optax's three sums ``TP``, ``P = sum(p)`` and
    ``T = sum(t)``, as ``E / (TP + E + s)`` with ``E = alpha (P - TP) + beta (T - TP)``
    floored at 0 (a near-perfect prediction's ``E`` is rounded to about eps,
    absolutely, as in optax, but never negative).  A class absent from targets
    and predictions with ``smooth == 0`` (0 / 0) has loss 0.  ``guard``: a
    sample with a class index out of range (unchecked) has loss NaN."""
    n = x.shape[axis]
    if not from_logits:
        p = x
    elif n == 1:
        p = _sigmoid(xp, x)
    else:
        ez = xp.exp(x - stop_gradient(xp, xp.max(x, axis=axis, keepdims=True)))
        p = ez / xp.sum(ez, axis=axis, keepdims=True)
    if probabilities:
        t = astype(xp, targets, p.dtype)
    elif n == 1:
        t = xp.expand_dims(astype(xp, targets, p.dtype), axis=axis)
    else:
        shape = [1] * x.ndim
        shape[axis] = n
        classes = xp.reshape(xp.arange(n, **_on_device(xp, targets)), tuple(shape))
        t = astype(xp, xp.expand_dims(targets, axis=axis) == classes, p.dtype)
    if guard and not probabilities:
        top = 1 if n == 1 else n - 1
        valid = xp.expand_dims(xp.logical_and(targets >= 0, targets <= top), axis=axis)
        t = xp.where(valid, t, xp.full_like(t, math.nan))
    tp = p * t
    spatial = tuple(i for i in range(x.ndim) if i not in (0, axis))
    if spatial:
        tp, p, t = xp.sum(tp, axis=spatial), xp.sum(p, axis=spatial), xp.sum(t, axis=spatial)
    errors = at_least(xp, alpha * (p - tp) + beta * (t - tp), 0.0)
    denominator = tp + errors + smooth
    if smooth == 0:
        denominator = xp.where(denominator == 0, xp.ones_like(denominator), denominator)
    return xp.mean(errors / denominator, axis=1)


# ------------------------------------------------------------------------ margin


def multi_margin_loss(
    xp: Any, x: Any, t: Any, class_weights: Any, p: int, margin: float, guard: bool
) -> Any:
    """``w_y sum_{i != y} max(0, margin - x_y + x_i)^p / C`` over the last
    axis (PyTorch's multi_margin_loss), as the sum over every class less the
    target's own term computed the same way: a mask of the target class costs
    XLA on the CPU four passes more; a loss below about eps margin^p is
    rounded (the sum's rounding)."""
    n = x.shape[-1]
    picked = xp.expand_dims(gather(xp, x, t, x.ndim - 1, guard), axis=-1)

    def hinge(v: Any) -> Any:
        h = at_least(xp, (margin - picked) + v, 0.0)
        return xp.square(h) if p == 2 else h

    # The sum of non-negative terms is at least each of them: never negative.
    loss = (xp.sum(hinge(x), axis=-1) - xp.squeeze(hinge(picked), axis=-1)) / n
    if class_weights is not None:
        loss = loss * _take_class(xp, class_weights, t, guard)
    return loss


def soft_margin_loss(xp: Any, x: Any, t: Any) -> Any:
    """``log(1 + exp(-t x))`` as a softplus that does not overflow."""
    z = -(t * x)
    return at_least(xp, z, 0.0) + xp.log1p(xp.exp(-xp.abs(z)))


def multilabel_soft_margin_loss(xp: Any, x: Any, t: Any, class_weights: Any) -> Any:
    """The mean over the last axis of ``w_c BCE(x_c, t_c)`` with logits."""
    return multilabel_of_bce(xp, binary_cross_entropy(xp, x, t, None, True), class_weights)


def multilabel_of_bce(xp: Any, bce: Any, class_weights: Any) -> Any:
    """:func:`multilabel_soft_margin_loss` from the elementwise cross entropy
    with logits ``bce`` (a fast path's plain form, e.g. :func:`bce_logits_plain`)."""
    if class_weights is not None:
        bce = bce * class_weights
    return xp.sum(bce, axis=-1) / bce.shape[-1]


def squared_hinge_loss(xp: Any, x: Any, t: Any) -> Any:
    return xp.square(hinge_loss(xp, x, t))


# ------------------------------------------------------------------- contrastive


def unit_rows(xp: Any, x: Any) -> Any:
    """Each row of ``x`` over its norm, scaled by its largest magnitude first
    so that the squares neither overflow nor underflow.  A zero row stays
    zero with a finite gradient (the identity).  The scale is a constant for
    autodiff (its derivative cancels)."""
    scale = stop_gradient(xp, xp.max(xp.abs(x), axis=-1, keepdims=True))
    u = x / _scale(xp, scale)
    return u / xp.sqrt(_nonzero(xp, xp.sum(xp.square(u), axis=-1, keepdims=True)))


def cosine_logits(xp: Any, a: Any, b: Any, temperature: float) -> Any:
    """``cos(a_i, b_j) / temperature`` for every row ``i`` of ``a`` and ``j`` of
    ``b``; ``b`` is ``a`` (NT-Xent): one pass of unit rows, and the product of
    one array with its own transpose (NumPy's BLAS takes the symmetric kernel)."""
    ua = unit_rows(xp, a)
    ub = ua if b is a else unit_rows(xp, b)
    return xp.matmul(ua, xp.matrix_transpose(ub)) * (1.0 / temperature)


def info_nce_loss(
    xp: Any, q: Any, k: Any, temperature: float, symmetric: bool, rows: Any = None
) -> Any:
    """The cross entropy of each query's cosine logits against all keys, its
    own key (same row) the target; with ``symmetric`` averaged with each
    key's cross entropy against all queries.  The target's logit is taken
    from the same matrix as the logsumexp, so a confident match keeps its
    tiny, non-negative loss.  ``rows``: another form of those cross
    entropies, ``rows(xp, logits, targets, axis)`` (a fast path's)."""
    rows = rows or _cross_entropy_rows
    logits = cosine_logits(xp, q, k, temperature)
    own = xp.arange(q.shape[0], **_on_device(xp, logits))
    loss = rows(xp, logits, own, 1)
    if symmetric:
        loss = 0.5 * (loss + rows(xp, logits, own, 0))
    return loss


def _cross_entropy_rows(xp: Any, logits: Any, targets: Any, axis: int) -> Any:
    return cross_entropy(xp, logits, targets, None, axis, 0.0, False, False, None, 0.0, None)


def cross_entropy_plain_rows(xp: Any, logits: Any, targets: Any, axis: int) -> Any:
    """:func:`cross_entropy_plain` of checked class indices, no option."""
    return cross_entropy_plain(xp, logits, targets, axis, 0.0, False, False)


def _softplus(xp: Any, x: Any) -> Any:
    return at_least(xp, x, 0.0) + xp.log1p(xp.exp(-xp.abs(x)))


def ntxent_loss(xp: Any, e: Any, labels: Any, temperature: float) -> Any:
    """optax's NT-Xent: over every ordered pair ``(i, j)``, ``i != j``, of
    equal labels, the mean of ``-log(e^{s_ij} / (e^{s_ij} + sum_neg e^{s_ik}))``
    with ``s`` the cosine logits and the negatives the rows of other labels.

    Each pair's loss is ``softplus(logsumexp_neg(s_i) - s_ij)`` (exact when the
    pair is confident); the negatives' logsumexp is shifted by their maximum,
    and the masked entries never reach ``exp`` or ``log``, so a row without
    negatives (loss 0) keeps finite gradients.  No pair at all gives 0."""
    return ntxent_of_logits(xp, cosine_logits(xp, e, e, temperature), labels)


def ntxent_of_logits(xp: Any, s: Any, labels: Any) -> Any:
    """:func:`ntxent_loss` of the cosine logits ``s`` (``n x n``)."""
    n = s.shape[0]
    idx = xp.arange(n, **_on_device(xp, s))
    same = xp.expand_dims(labels, axis=1) == xp.expand_dims(labels, axis=0)
    positive = xp.logical_and(same, xp.expand_dims(idx, axis=1) != xp.expand_dims(idx, axis=0))
    negative = ~same
    low = xp.full_like(s, -math.inf)
    has_negative = xp.any(negative, axis=1, keepdims=True)
    top = stop_gradient(xp, xp.max(xp.where(negative, s, low), axis=1, keepdims=True))
    top = xp.where(has_negative, top, xp.zeros_like(top))
    total = xp.sum(xp.exp(xp.where(negative, s - top, low)), axis=1, keepdims=True)
    log_negatives = xp.log(xp.where(has_negative, total, xp.ones_like(total))) + top
    pairs = xp.where(xp.logical_and(positive, has_negative), _softplus(xp, log_negatives - s), xp.zeros_like(s))
    count = xp.sum(astype(xp, positive, s.dtype))
    return xp.sum(pairs) / at_least(xp, count, 1.0)


# ------------------------------------------------------------------------ pairs


def cosine_embedding_loss(
    xp: Any, a: Any, b: Any, y: Any, axis: int, margin: float, floor: float
) -> Any:
    """``1 - cos`` where ``y == 1``, ``max(0, cos - margin)`` where ``y == -1``,
    0 elsewhere (PyTorch), with the cosine of :func:`cosine_similarity_loss`:
    the scaled cosine where ``||a|| ||b|| >= eps``, else ``a . b / eps``.  The
    plain dot product needs no masking of the inputs (one select per pair,
    none per element): below eps it cannot overflow, and above it its
    gradient is multiplied by 0."""
    cosine, above = scaled_cosine(xp, a, b, axis, floor)
    below = xp.sum(a * b, axis=axis) / (floor if floor > 0 else 1.0)
    return _cosine_pair_terms(xp, xp.where(above, cosine, below), y, margin)


def _cosine_pair_terms(xp: Any, cosine: Any, y: Any, margin: float) -> Any:
    zeros = xp.zeros_like(cosine)
    similar = xp.where(y == 1, 1.0 - cosine, zeros)
    return similar + xp.where(y == -1, at_least(xp, cosine - margin, 0.0), zeros)


def hinge_embedding_loss(xp: Any, x: Any, y: Any, margin: float) -> Any:
    """``x`` where ``y == 1``, ``max(0, margin - x)`` where ``y == -1``; other
    targets get both terms, as in PyTorch."""
    zeros = xp.zeros_like(x)
    hinge = xp.where(y != 1, at_least(xp, margin - x, 0.0), zeros)
    return hinge + xp.where(y != -1, x, zeros)


def hinge_embedding_nested(xp: Any, x: Any, y: Any, margin: float) -> Any:
    """:func:`hinge_embedding_loss` with one select inside the other, the same
    values: XLA's CPU fusion of a mean takes it whole (not a sum of two
    selects), where MLX's compiled CPU kernels run it several times slower."""
    hinge = at_least(xp, margin - x, 0.0)
    return xp.where(y == 1, x, hinge + xp.where(y == -1, xp.zeros_like(x), x))


# ------------------------------------------------------------------ forecasting

#: Keras's ``backend.epsilon()``: the floor of MAPE's ``|target|`` and of MSLE's arguments.
KERAS_EPSILON = 1e-7


def _poisson_rate_terms(xp: Any, x: Any, t: Any, log_input: bool, eps: float, times: Any) -> Any:
    """``exp(x) - t x`` (log rates) or ``x - t log(x + eps)`` (rates), the
    product taken by ``times(xp, t, log_rate)``."""
    if log_input:
        return xp.exp(x) - times(xp, t, x)
    return x - times(xp, t, xp.log(x + eps))


def poisson_nll_loss(xp: Any, x: Any, t: Any, log_input: bool, full: bool, eps: float) -> Any:
    """``exp(x) - t x`` (log rates) or ``x - t log(x + eps)`` (rates), with
    ``0 log 0 = 0``; ``full`` adds Stirling's ``t log t - t + log(2 pi t) / 2``
    where ``t > 1`` (PyTorch)."""
    loss = _poisson_rate_terms(xp, x, t, log_input, eps, xlogy_like)
    if full:
        above = t > 1
        safe = xp.where(above, t, xp.ones_like(t))  # no log of t <= 0, even unused
        log_t = xp.log(safe)
        stirling = safe * (log_t - 1.0) + 0.5 * log_t + HALF_LOG_2PI
        loss = loss + xp.where(above, stirling, xp.zeros_like(stirling))
    return loss


def mape_loss(xp: Any, p: Any, t: Any) -> Any:
    """``100 |t - p| / max(|t|, 1e-7)`` (Keras)."""
    return 100.0 * (xp.abs(t - p) / at_least(xp, xp.abs(t), KERAS_EPSILON))


def msle_loss(xp: Any, p: Any, t: Any) -> Any:
    """``(log1p(a) - log1p(b))^2`` with ``a, b`` the arguments floored at 1e-7
    (Keras), as ``log1p(|a - b| / (1 + min(a, b)))^2``: no cancellation
    between the logs of close values, and no overflow."""
    a, b = at_least(xp, p, KERAS_EPSILON), at_least(xp, t, KERAS_EPSILON)
    return xp.square(xp.log1p(xp.abs(a - b) / (1.0 + xp.minimum(a, b))))


def msle_logs(xp: Any, p: Any, t: Any) -> tuple[Any, Any]:
    """The two logs of :func:`msle_loss`, ``log1p`` of each argument floored
    at 1e-7: the loss is their squared difference in the native form (Keras's,
    and the PyTorch idiom's), which differs from the formula only by the
    cancellation between the logs of close values, in losses far below eps."""
    return xp.log1p(at_least(xp, p, KERAS_EPSILON)), xp.log1p(at_least(xp, t, KERAS_EPSILON))


# ------------------------------------------------------------------- divergence

# Below this |x - t| the Jensen-Shannon term uses its tanh form, above it its exp form.
JS_SWITCH = 2.0
# Beyond this |x - t| the exp form's corrections are below every dtype's ulp.
JS_FAR = 200.0


def js_div_loss(xp: Any, x: Any, t: Any, axis: int) -> Any:
    """``(1/2) sum (p + q) k(|x - t|)`` over ``axis``, ``p = e^x``, ``q = e^t``.

    Per class, ``p log(2p / (p + q)) + q log(2q / (p + q))`` is ``(p + q)``
    times ``k(a) = log 2 - H(sigmoid(a))`` (``H`` the binary entropy), which
    lies in ``[0, log 2]``: every term is non-negative, the sum is bounded by
    ``log 2``, and equal inputs give exactly 0.  ``k`` is taken without
    cancellation: ``s a / 2 - log cosh(a / 2)`` with ``s = tanh(a / 2)`` for
    small ``a`` (both from ``u = expm1(a / 2)``; the logs' arguments are
    positive: XLA's float64 ``log1p`` is off by 100 ulps near -0.4),
    ``log 2 - log1p(v) - a v / (1 + v)`` with ``v = e^{-a}`` above.  A class
    absent from one distribution (``-inf``) gives ``q log 2`` or ``p log 2``;
    absent from both, 0; the gradients stay finite."""
    # -inf as the lowest finite number: both -inf give d = 0, not nan (a clamp,
    # not a select: PyTorch's selects cost as much as ten arithmetic passes)
    lowest = -float(xp.finfo(x.dtype).max)
    a = xp.abs(at_least(xp, t, lowest) - at_least(xp, x, lowest))
    near = at_most(xp, a, JS_SWITCH)
    u = xp.expm1(0.5 * near)
    s = u * (u + 2.0) / (u * (u + 2.0) + 2.0)
    k_near = (0.5 * near) * s - xp.log1p(u * u / (2.0 + 2.0 * u))
    far = at_most(xp, at_least(xp, a, JS_SWITCH), JS_FAR)
    v = xp.exp(-far)
    k_far = (LOG2 - xp.log1p(v)) - far * v / (1.0 + v)
    # the form by a 0/1 weight (1/2 at the switch, where both are exact); both finite
    near_weight = 0.5 * (xp.sign(JS_SWITCH - a) + 1.0)
    k = near_weight * k_near + (1.0 - near_weight) * k_far
    return 0.5 * xp.sum((xp.exp(x) + xp.exp(t)) * k, axis=axis)


def js_div_select(xp: Any, x: Any, t: Any, axis: int) -> Any:
    """The value of :func:`js_div_loss` (no gradient is taken through this
    form) with a select between the two forms of ``k(a)``, the near one as
    ``h tau + log1p(-tau^2) / 2`` with ``tau = tanh(h)``, ``h = a / 2``
    (``log cosh h = -log1p(-tau^2) / 2``; ``1 - tau^2 >= 0.42`` below the
    switch); the far one needs no clamp (``a`` is finite).  Eight primitives
    fewer than the formula (a select costs PyTorch less than the 0/1
    weight's four passes), within a few ulps of it."""
    lowest = -float(xp.finfo(x.dtype).max)
    a = xp.abs(at_least(xp, t, lowest) - at_least(xp, x, lowest))
    h = 0.5 * at_most(xp, a, JS_SWITCH)
    tau = xp.tanh(h)
    k_near = h * tau + 0.5 * xp.log1p(-(tau * tau))
    v = xp.exp(-a)
    k_far = (LOG2 - xp.log1p(v)) - a * v / (1.0 + v)
    k = xp.where(a < JS_SWITCH, k_near, k_far)
    return 0.5 * xp.sum((xp.exp(x) + xp.exp(t)) * k, axis=axis)


def js_div_slopes(xp: Any, x: Any, t: Any) -> tuple[Any, Any]:
    """The derivatives of :func:`js_div_loss` in each ``x`` and ``t``:
    ``(1/2) p log(p / m)`` and ``(1/2) q log(q / m)`` (the terms through
    ``m`` cancel), each to about an ulp of itself, and 0 at a class absent
    (``-inf``) from the distribution.

    With ``d = log q - log p`` and ``a = |d|``, ``log(p / m) = log(2 / (1 +
    e^d))`` is ``r = -log1p(expm1(-a) / 2)`` (in ``[0, log 2]``, to a
    relative ulp) where ``d <= 0``, and ``r - a`` where ``d > 0`` (the two
    log-ratios differ by ``d``); ``log(q / m)`` the other way round: one
    ``expm1``, no overflow."""
    lowest = -float(xp.finfo(x.dtype).max)
    d = at_least(xp, t, lowest) - at_least(xp, x, lowest)
    a = xp.abs(d)
    r = -xp.log1p(0.5 * xp.expm1(-a))
    below = r - a
    q_more = d > 0
    return (0.5 * xp.exp(x) * xp.where(q_more, below, r),
            0.5 * xp.exp(t) * xp.where(q_more, r, below))


# ---------------------------------------------------------------------- sequence


def _logsumexp_terms(xp: Any, floor: float, *terms: Any) -> Any:
    """``log(sum(exp(terms)))`` elementwise, ``-inf`` where every term is.

    The shift is the terms' maximum (a constant for autodiff), floored at the
    dtype's most negative number so that an all ``-inf`` position subtracts
    no ``-inf``; there the sum is 0 and is raised to 1/2 (a clamp, gradient
    0) before its log, so the value is ``-inf`` and the gradient 0, not NaN.
    Elsewhere the sum is at least 1 and the clamp does nothing.
    """
    top = terms[0]
    for term in terms[1:]:
        top = xp.maximum(top, term)
    top = stop_gradient(xp, top)
    shift = at_least(xp, top, floor)
    total = xp.exp(terms[0] - shift)
    for term in terms[1:]:
        total = total + xp.exp(term - shift)
    return xp.log(at_least(xp, total, 0.5)) + top


def _take_labels(xp: Any, log_probs: Any, labels: Any) -> Any:
    """``log_probs[n, t, labels[n, k]]`` laid out ``(T, N, K)``, from ``(N, T, C)``
    and ``(N, K)``.

    Whole rows of the frames are taken (``take`` of row ``n C + label`` of
    the ``(N C, T)`` transposed log-probabilities): its gradient adds rows,
    where a gather of single elements scatters them one by one (XLA on the
    CPU takes 10x longer for that).  Dask has no ``take`` along an array of
    indices without computing them: a one-hot mask there.
    """
    n, t, c = log_probs.shape
    k = labels.shape[1]
    if hasattr(xp, "take_along_axis"):
        rows = xp.reshape(xp.permute_dims(log_probs, (0, 2, 1)), (n * c, t))
        first = xp.reshape(xp.arange(n, dtype=labels.dtype, **_on_device(xp, labels)) * c, (n, 1))
        picked = xp.take(rows, xp.reshape(first + labels, (n * k,)), axis=0)
        return xp.permute_dims(xp.reshape(picked, (n, k, t)), (2, 0, 1))
    mask = xp.reshape(labels, (n, 1, k, 1)) == xp.reshape(xp.arange(c, **_on_device(xp, labels)), (1, 1, 1, c))
    picked = xp.where(mask, xp.expand_dims(log_probs, axis=2), xp.zeros((), dtype=log_probs.dtype))
    return xp.permute_dims(xp.sum(picked, axis=-1), (1, 0, 2))


def ctc_loss(
    xp: Any, logits: Any, targets: Any, input_lengths: Any, target_lengths: Any,
    blank: int, zero_infinity: bool, per_target: bool, guard: bool, likelihood: Any = None,
) -> Any:
    """``-log p(targets | logits)`` per sequence: the sum over every alignment
    of the frames to the targets with blanks (Graves et al., 2006).

    ``alpha[s]`` is the log-probability of the frames so far ending at
    position ``s`` of the extended labels ``blank, y_1, blank, ..., y_L,
    blank`` (``K = 2S + 1`` positions); a frame moves it by 0 or 1, or by 2
    onto a label that differs from the one two back, and adds the frame's
    log-probability of that position's class.  Frames past a sequence's input
    length take no move and add nothing (``alpha`` frozen); positions past
    ``2L`` never reach the two that are read, ``2L`` and ``2L - 1``.  The time
    loop is :func:`~anyloss._common.scan`; every log-sum-exp is
    :func:`_logsumexp_terms`, so an unreachable position is ``-inf`` with
    gradient 0 and an infeasible sequence has loss ``inf`` (0 with
    ``zero_infinity``) and gradient 0.  ``per_target``: each loss divided by
    its target length, at least 1 (PyTorch's 'mean').  ``guard``: labels or
    lengths whose range was not checked give NaN where out of range.
    ``likelihood``: another form of :func:`ctc_log_likelihood` (a fast path's).
    """
    n, t, c = logits.shape
    s = targets.shape[1]
    k = 2 * s + 1
    dtype = logits.dtype
    index = xp.arange(0).dtype
    on = _on_device(xp, logits)
    z = logits - stop_gradient(xp, xp.max(logits, axis=-1, keepdims=True))
    log_probs = z - xp.log(xp.sum(xp.exp(z), axis=-1, keepdims=True))
    frames = astype(xp, input_lengths, index)
    lengths = astype(xp, target_lengths, index)
    targets = astype(xp, targets, index)
    blanks = xp.full((n, s), blank, dtype=index, **on)
    inside = xp.reshape(xp.arange(s, **on), (1, s)) < xp.reshape(lengths, (n, 1))
    labels = xp.where(inside, targets, blanks)  # padding read as blanks
    if guard:
        wrong = xp.logical_and(inside, xp.logical_or(targets < 0, targets >= c))
        labels = xp.where(wrong, blanks, labels)
    extended = xp.reshape(xp.stack([blanks, labels], axis=-1), (n, 2 * s))
    extended = xp.concat([extended, xp.full((n, 1), blank, dtype=index, **on)], axis=1)
    two_back = xp.concat([extended[:, : min(k, 2)], extended[:, : k - 2]], axis=1)
    zero = xp.zeros((), dtype=dtype)
    impossible = xp.full((), -math.inf, dtype=dtype)
    skip = xp.where(xp.logical_and(extended != blank, extended != two_back), zero, impossible)
    emissions = _take_labels(xp, log_probs, extended)
    loss = -(likelihood or ctc_log_likelihood)(xp, emissions, skip, frames, lengths, guard)
    if zero_infinity:
        loss = xp.where(loss == math.inf, xp.zeros_like(loss), loss)
    if per_target:
        loss = loss / astype(xp, at_least(xp, lengths, 1), dtype)
    if guard:
        bad = _or(xp, xp.any(wrong, axis=1), lengths < 0, lengths > s, frames < 0, frames > t)
        loss = xp.where(bad, xp.full_like(loss, math.nan), loss)
    return loss


def ctc_log_likelihood(xp: Any, emissions: Any, skip: Any, frames: Any, lengths: Any, guard: bool) -> Any:
    """``log p(targets | logits)`` per sequence from the emissions ``(T, N, K)``
    (each frame's log-probability of each extended label), ``skip`` ``(N, K)``
    (0 where a move by 2 lands, else ``-inf``), the frame counts and the
    target lengths: the recursion of :func:`ctc_loss` over the frames."""
    t, n, k = emissions.shape
    dtype = emissions.dtype
    on = _on_device(xp, emissions)
    floor = float(xp.finfo(dtype).min)
    zero = xp.zeros((), dtype=dtype)
    impossible = xp.full((), -math.inf, dtype=dtype)
    # Per frame, (T, N, K) and (T, N, 1): the emissions (0 past the input
    # length) and the gate on moves (-inf past it).
    live = xp.reshape(xp.arange(t, **on), (t, 1, 1)) < xp.reshape(frames, (1, n, 1))
    emissions = xp.where(live, emissions, zero)
    gates = xp.where(live, zero, impossible)
    none_one = xp.full((n, min(k, 1)), -math.inf, dtype=dtype, **on)
    none_two = xp.full((n, min(k, 2)), -math.inf, dtype=dtype, **on)

    def step(alpha: Any, emission: Any, gate: Any) -> Any:
        moving = alpha + gate
        one = xp.concat([none_one, moving[:, : k - 1]], axis=1)
        two = xp.concat([none_two, moving[:, : max(k - 2, 0)]], axis=1) + skip
        return _logsumexp_terms(xp, floor, alpha, one, two) + emission

    # Before the first frame: all the probability one step before position 0.
    start = xp.where(xp.reshape(xp.arange(k, **on), (1, k)) == 0, xp.zeros((n, k), dtype=dtype, **on), impossible)
    alpha = scan(xp, step, start, (emissions, gates))
    last = gather(xp, alpha, 2 * lengths, 1, guard)
    before = gather(xp, alpha, at_least(xp, 2 * lengths - 1, 0), 1, guard)
    before = xp.where(lengths > 0, before, impossible)
    return _logsumexp_terms(xp, floor, last, before)


def _pad_last(xp: Any, x: Any, left: int, right: int, fill: float) -> Any:
    """``x`` (2-d) with ``left`` and ``right`` columns of ``fill`` added: one
    ``pad`` where the namespace has it (MLX, NumPy), else a concatenation."""
    if hasattr(xp, "pad"):
        return xp.pad(x, ((0, 0), (left, right)), constant_values=fill)
    n = x.shape[0]
    full = lambda m: xp.full((n, m), fill, dtype=x.dtype, **_on_device(xp, x))
    return xp.concat([full(left), x, full(right)], axis=1)


def logaddexp3(xp: Any, a: Any, b: Any, c: Any) -> Any:
    """``log(e^a + e^b + e^c)`` as two ``logaddexp``: exact at ``-inf``."""
    return xp.logaddexp(a, xp.logaddexp(b, c))


def logaddexp3_ordered(xp: Any, a: Any, b: Any, c: Any, exp: Any) -> Any:
    """:func:`logaddexp3` as ``hi + log(1 + exp(mid - hi) + exp(lo - hi))``
    from the three sorted: two ``exp`` and one ``log`` where two ``logaddexp``
    take two of each, and ``-inf`` where all three are (values only: its
    derivative at ties and at ``-inf`` is not the function's)."""
    top, low = xp.maximum(a, b), xp.minimum(a, b)
    hi, lo, mid = xp.maximum(top, c), xp.minimum(low, c), xp.maximum(low, xp.minimum(top, c))
    return xp.where(hi == -math.inf, hi, hi + xp.log(1.0 + exp(mid - hi) + exp(lo - hi)))


def ctc_alphas(xp: Any, emissions: Any, skip: Any, add: Any = logaddexp3) -> Any:
    """The forward variables of :func:`ctc_log_likelihood`, ``(T + 1, N, K)``:
    before the first frame, then after each frame (every frame taken, the
    frame counts applied by the caller); each move ``add`` (a form of
    :func:`logaddexp3`), exact at ``-inf`` (its value; its gradient is
    :func:`ctc_path_weights`, not autodiff)."""
    t, n, k = emissions.shape
    positions = xp.reshape(xp.arange(k, **_on_device(xp, emissions)), (1, k))
    zeros = xp.zeros((n, k), dtype=emissions.dtype, **_on_device(xp, emissions))
    alpha = xp.where(positions == 0, zeros, xp.full_like(zeros, -math.inf))
    out = [alpha]
    for i in range(t):
        back = _pad_last(xp, alpha, 2, 0, -math.inf)
        alpha = add(xp, alpha, back[:, 1 : k + 1], back[:, :k] + skip) + emissions[i]
        out.append(alpha)
    return xp.stack(out)


def ctc_final(xp: Any, alphas: Any, frames: Any, lengths: Any, guard: bool) -> Any:
    """``log p`` per sequence from :func:`ctc_alphas`: after its frames, at
    the last two positions of its extended labels (the last one alone for
    an empty target)."""
    n, k = alphas.shape[1:]
    taken = gather(xp, alphas, xp.broadcast_to(xp.reshape(frames, (n, 1)), (n, k)), 0, guard)
    last = gather(xp, taken, 2 * lengths, 1, guard)
    before = gather(xp, taken, at_least(xp, 2 * lengths - 1, 0), 1, guard)
    before = xp.where(lengths > 0, before, xp.full_like(before, -math.inf))
    return xp.logaddexp(last, before)


def ctc_path_weights(
    xp: Any, emissions: Any, skip: Any, frames: Any, lengths: Any, alphas: Any, log_p: Any,
    add: Any = logaddexp3,
) -> Any:
    """The derivative of :func:`ctc_log_likelihood` in the emissions, ``(T, N, K)``:
    ``exp(alpha_t + beta_t - log p)`` over the frames taken, where ``beta_t(s)``
    is the log-probability of the frames after ``t`` from position ``s`` to
    the end (the backward recursion, each move ``add``); 0 past the
    frames and for an infeasible sequence (``log p = -inf``)."""
    t, n, k = emissions.shape
    on = _on_device(xp, emissions)
    positions = xp.reshape(xp.arange(k, **on), (1, k))
    twice = xp.reshape(2 * lengths, (n, 1))
    zeros = xp.zeros((n, k), dtype=emissions.dtype, **on)
    final = xp.where(xp.logical_or(positions == twice, positions == twice - 1), zeros, xp.full_like(zeros, -math.inf))
    skip_ahead = _pad_last(xp, skip[:, 2:], 0, min(k, 2), -math.inf)  # the move from s onto s + 2
    ended = [xp.reshape(frames, (n, 1)) <= i + 1 for i in range(t)]
    beta = final
    betas = [final] * t
    for i in range(t - 2, -1, -1):
        b = beta + emissions[i + 1]
        ahead = _pad_last(xp, b, 0, 2, -math.inf)
        beta = xp.where(ended[i], final, add(xp, b, ahead[:, 1 : k + 1], ahead[:, 2:] + skip_ahead))
        betas[i] = beta
    live = xp.reshape(xp.arange(t, **on), (t, 1, 1)) < xp.reshape(frames, (1, n, 1))
    feasible = log_p > -math.inf
    shift = xp.reshape(xp.where(feasible, log_p, xp.zeros_like(log_p)), (1, n, 1))
    weights = xp.exp(alphas[1:] + xp.stack(betas) - shift) if t else xp.zeros_like(emissions)
    return xp.where(xp.logical_and(live, xp.reshape(feasible, (1, n, 1))), weights, xp.zeros_like(weights))


# ----------------------------------------------------------------- plain forms
#
# Cheaper forms of a formula without its safeguard, each with the condition
# under which it equals the formula (to a few ulps).  A fast path computes the
# plain form, tests the condition (a 0-d bool: on the host, or with the
# library's conditional) and runs the formula above only where it fails.


def exact_sums_floor(xp: Any, dtype: Any, n: int) -> float:
    """The least sum of ``n`` squares that is exact to an ulp: each square
    below the smallest normal number may be flushed to zero (XLA on the CPU
    does), losing up to ``tiny`` each."""
    info = xp.finfo(dtype)
    return float(n * info.smallest_normal / info.eps)


def cosine_plain(xp: Any, a: Any, b: Any, axis: int, floor: float) -> tuple[Any, Any]:
    """``a . b / max(||a|| ||b||, eps)`` from the unscaled sums, and whether
    that is :func:`cosine_similarity_loss`: every squared norm finite and
    large enough for its squares to be exact (no zero, huge or tiny vector)."""
    dot = xp.sum(a * b, axis=axis)
    aa = xp.sum(xp.square(a), axis=axis)
    bb = xp.sum(xp.square(b), axis=axis)
    low, high = exact_sums_floor(xp, a.dtype, a.shape[axis]), float(xp.finfo(a.dtype).max)
    exact = xp.all(_and(xp, aa >= low, aa <= high, bb >= low, bb <= high))
    loss = dot / at_least(xp, xp.sqrt(aa) * xp.sqrt(bb), floor)
    return loss, exact


def cosine_embedding_plain(
    xp: Any, a: Any, b: Any, y: Any, axis: int, margin: float, floor: float
) -> tuple[Any, Any]:
    """:func:`cosine_embedding_loss` from :func:`cosine_plain`'s cosine, and
    whether that is the formula (the same condition)."""
    cosine, exact = cosine_plain(xp, a, b, axis, floor)
    return _cosine_pair_terms(xp, cosine, y, margin), exact


def triplet_plain(
    xp: Any, a: Any, pos: Any, neg: Any, axis: int, margin: float, eps: float
) -> tuple[Any, Any]:
    """The triplet loss with p = 2 from the unscaled ``sqrt(sum d^2 + eps)``,
    and whether that is :func:`triplet_loss`: every sum finite and large
    enough for its squares to be exact."""
    sp = xp.sum(xp.square(a - pos), axis=axis) + eps
    sn = xp.sum(xp.square(a - neg), axis=axis) + eps
    low, high = exact_sums_floor(xp, a.dtype, a.shape[axis]), float(xp.finfo(a.dtype).max)
    exact = xp.all(_and(xp, sp >= low, sp <= high, sn >= low, sn <= high))
    return at_least(xp, xp.sqrt(sp) - xp.sqrt(sn) + margin, 0.0), exact


def kl_div_plain(xp: Any, x: Any, t: Any, axis: int) -> tuple[Any, Any]:
    """``sum(exp(t) (t - x))`` without the ``0 log 0`` guard, and whether that
    is :func:`kl_div_loss`: no row is nan (the guard changes only the nan
    that ``0 * inf`` makes)."""
    loss = xp.sum(xp.exp(t) * (t - x), axis=axis)
    return loss, ~xp.any(xp.isnan(loss))


def poisson_nll_plain(xp: Any, x: Any, t: Any, log_input: bool, eps: float) -> Any:
    """:func:`poisson_nll_loss` without ``full``, its product plain (no
    ``0 log 0`` rule): the formula, bit for bit, wherever it is not NaN; a
    NaN marks ``0 * inf`` (or a NaN input)."""
    return _poisson_rate_terms(xp, x, t, log_input, eps, lambda xp, a, b: a * b)


def bce_logits_plain(xp: Any, x: Any, t: Any) -> Any:
    """Binary cross entropy with logits as ``(step(x) - t) x + log1p(exp(-|x|))``
    (select-free: the same terms as :func:`binary_cross_entropy`), without
    the ``0 * x = 0`` rule.  It is the formula, bit for bit, wherever it is
    not NaN; a NaN marks ``0 * inf`` (or a NaN input), so a caller checks the
    loss, or its sum, and runs the formula where one is NaN."""
    coefficient = astype(xp, x >= 0, x.dtype) - t
    return coefficient * x + xp.log1p(xp.exp(-xp.abs(x)))


def bce_logits_relu(xp: Any, x: Any, t: Any, pos_weight: Any) -> Any:
    """:func:`binary_cross_entropy` with logits as ``(1 - t) max(x, 0) +
    w t max(-x, 0) + (1 - t + w t) log1p(exp(-|x|))``: the formula's terms
    bit for bit wherever ``x`` is finite (one of the first two is 0), with
    no select or compare (XLA's CPU reduction fusion takes it whole), and
    without the ``0 * x = 0`` rule: NaN for an infinite logit whose
    coefficient is 0."""
    wt = t if pos_weight is None else pos_weight * t
    softplus = xp.log1p(xp.exp(-xp.abs(x)))
    if pos_weight is not None:
        softplus = (1.0 - t + wt) * softplus
    return (1.0 - t) * xp.maximum(x, 0.0) + wt * xp.maximum(-x, 0.0) + softplus


def sigmoid_focal_plain(xp: Any, x: Any, t: Any, alpha: Any, gamma: float) -> Any:
    """:func:`sigmoid_focal_loss` without the ``0 * inf = 0`` rule of its
    cross entropy (``c |x|`` as a plain product, five primitives fewer).  It
    is the formula, bit for bit, wherever it is not NaN; a NaN marks an
    infinite logit with its matching target (or a NaN input), as in
    :func:`bce_logits_plain`.  Select-free (``c`` by a 0/1 step, both of its
    products exact): a select on a random mask costs NumPy a branch per element."""
    step = astype(xp, x >= 0, x.dtype)
    a = xp.abs(x)
    c = step * (1.0 - t) + (1.0 - step) * t
    e = xp.exp(-a)
    loss = c * a + xp.log1p(e)
    if gamma != 0:
        m = at_least(xp, (c + (1.0 - c) * e) / (1.0 + e), _tiny(xp, x.dtype))
        loss = loss * (m if gamma == 1 else xp.pow(m, gamma))
    if alpha is None:
        return loss
    return loss * ((1.0 - alpha) + (2.0 * alpha - 1.0) * t)


def hinge_embedding_plain(xp: Any, x: Any, y: Any, margin: float) -> Any:
    """:func:`hinge_embedding_loss` select-free: each term times its 0/1 mask
    (a product by 1 or 0 is exact, as is adding 0).  It is the formula, bit
    for bit, wherever it is not NaN; a NaN marks an infinite input times a
    mask of 0 (or a NaN input)."""
    hinge = astype(xp, y != 1, x.dtype) * at_least(xp, margin - x, 0.0)
    return hinge + astype(xp, y != -1, x.dtype) * x


def sigmoid_focal_by_softplus(
    xp: Any, x: Any, t: Any, alpha: Any, gamma: float, softplus: Any, sigmoid: Any
) -> Any:
    """:func:`sigmoid_focal_loss` by a library's exact ``softplus`` and
    ``sigmoid`` kernels, without a select: ``BCE = t softplus(-x) + (1 - t)
    softplus(x)`` and ``1 - p_t = t sigmoid(-x) + (1 - t) sigmoid(x)``, sums
    of non-negative terms (to a few ulps of the formula).  NaN where the
    formula's ``0 * inf = 0`` rule applies (an infinite logit with its
    matching target), as :func:`sigmoid_focal_plain`."""
    u = 1.0 - t
    nx = -x
    loss = t * softplus(nx) + u * softplus(x)
    if gamma != 0:
        m = at_least(xp, t * sigmoid(nx) + u * sigmoid(x), _tiny(xp, x.dtype))
        loss = loss * (m if gamma == 1 else xp.pow(m, gamma))
    if alpha is None:
        return loss
    return loss * ((1.0 - alpha) + (2.0 * alpha - 1.0) * t)


def smooth_l1_plain(xp: Any, x: Any, y: Any, beta: float) -> Any:
    """:func:`smooth_l1_loss` select-free, as Huber's form over beta:
    ``(q / 2)(q / beta) + (|d| - q)`` with ``q = min(|d|, beta)``.  Below beta
    it is the formula bit for bit; above, ``beta / 2 + (|d| - beta)`` is
    ``|d| - beta / 2`` to an ulp; NaN where the formula is NaN.  A select
    costs NumPy a branch per element on a random mask."""
    diff = xp.abs(x - y)
    if beta == 0:
        return diff
    q = at_most(xp, diff, beta)
    return (0.5 * q) * (q / beta) + (diff - q)


def log_cosh_plain(xp: Any, x: Any, y: Any) -> tuple[Any, Any]:
    """``log cosh(a)`` as ``log1p(sinh(a)^2) / 2`` (``cosh^2 = 1 + sinh^2``:
    no cancellation, and no ``abs``, cap or select), and whether that is
    :func:`log_cosh_loss`: every ``|a|`` at most 20, where ``sinh(a)^2`` and
    the gradient's ``1 / (1 + sinh(a)^2)`` are far from overflow and underflow."""
    twice = double_log_cosh(xp, x - y)
    return 0.5 * twice, xp.all(twice <= DOUBLE_LOG_COSH_LIMIT)


#: ``2 log cosh(20)``: :func:`double_log_cosh` at the largest ``|a|`` of the plain form.
DOUBLE_LOG_COSH_LIMIT = math.log1p(math.sinh(LOG_COSH_LINEAR) ** 2)


def double_log_cosh(xp: Any, a: Any) -> Any:
    """``2 log cosh(a)`` as ``log1p(sinh(a)^2)``: exact wherever ``sinh(a)^2``
    is finite; its chain-rule gradient is exact for ``|a| <= 20``."""
    return xp.log1p(xp.square(xp.sinh(a)))


def cosine_by_norms(xp: Any, a: Any, b: Any, axis: int, floor: float) -> tuple[Any, Any, Any]:
    """``a . b / max(||a|| ||b||, eps)`` from ``vecdot`` and ``vector_norm``,
    and the two norms: it is :func:`cosine_similarity_loss` where every norm
    lies between ``sqrt(exact_sums_floor)`` and ``sqrt(max)`` (the caller checks)."""
    norm_a = xp.linalg.vector_norm(a, axis=axis)
    norm_b = xp.linalg.vector_norm(b, axis=axis)
    cosine = xp.linalg.vecdot(a, b, axis=axis) / at_least(xp, norm_a * norm_b, floor)
    return cosine, norm_a, norm_b


def cosine_logits_by_norms(xp: Any, a: Any, b: Any, temperature: float) -> tuple[Any, Any, Any]:
    """:func:`cosine_logits` from ``vector_norm`` (rows over their norms, no
    scaling), and the two norms: it is ``cosine_logits`` where every norm
    lies within the bounds of :func:`cosine_by_norms` (the caller checks)."""
    norm_a = xp.linalg.vector_norm(a, axis=-1, keepdims=True)
    ua = a / norm_a
    if b is a:  # NT-Xent: one array's rows against themselves
        return xp.matmul(ua, xp.matrix_transpose(ua)) * (1.0 / temperature), norm_a, norm_a
    norm_b = xp.linalg.vector_norm(b, axis=-1, keepdims=True)
    logits = xp.matmul(ua, xp.matrix_transpose(b / norm_b)) * (1.0 / temperature)
    return logits, norm_a, norm_b


def triplet_by_norms(
    xp: Any, a: Any, pos: Any, neg: Any, axis: int, p: float, margin: float, eps: float
) -> tuple[Any, Any, Any]:
    """:func:`triplet_loss` for p = 1 or 2 from ``vector_norm`` of the
    differences (p = 2: ``hypot(norm, sqrt(eps))``; p = 1: eps cancels), and
    the two norms: exact where they lie within the bounds of
    :func:`cosine_by_norms` (the lower one 0 where ``eps`` outweighs it)."""
    near = xp.linalg.vector_norm(a - pos, axis=axis, ord=p)
    far = xp.linalg.vector_norm(a - neg, axis=axis, ord=p)
    if p == 1:
        gap = near - far
    else:
        root = math.sqrt(eps)
        gap = xp.hypot(near, root) - xp.hypot(far, root)
    return at_least(xp, gap + margin, 0.0), near, far


# ------------------------------------------------------ row forms (JAX, XLA)
#
# For a compiler that fuses a row reduction, its broadcast and a second
# reduction into one pass (XLA on the CPU): the loss from row sums, with the
# row coefficients of its derivative, so that a fast path can pick the plain
# or the safe rows with the library's conditional and differentiate outside
# it (a conditional under reverse-mode autodiff stores every branch's
# intermediates).  The ``*_rows`` forms return ``(loss, exact, scales,
# coefficients)``; the ``*_safe_rows`` forms the same for every input, without
# ``exact``; the ``*_tangent`` functions map input tangents to the loss's.
# Rows keep their axis (size 1).


def cross_entropy_plain(
    xp: Any, logits: Any, targets: Any, axis: int, smoothing: float, probabilities: bool,
    guard: bool,
) -> Any:
    """:func:`cross_entropy` as the native kernels compute it: ``log(sum(exp(z)))``
    and the target's logit read from ``logits``, one pass for the maximum and
    one for the sum.  Without :func:`shifted_logsumexp`'s ``log1p`` a loss far
    below eps is rounded, to within an ulp of 1 (a confident, right
    prediction gives 0)."""
    m = stop_gradient(xp, xp.max(logits, axis=axis, keepdims=True))
    z = logits - m
    loss = xp.log(xp.sum(xp.exp(z), axis=axis))
    if probabilities:
        score = xp.sum(xlogy_like(xp, targets, z), axis=axis)
    else:
        score = gather(xp, logits, targets, axis, guard) - xp.squeeze(m, axis=axis)
    if smoothing == 0:
        return loss - score
    mean = xp.sum(z * (1.0 / z.shape[axis]), axis=axis)
    return loss - (1.0 - smoothing) * score - smoothing * mean


def cross_entropy_probabilities_plain(
    xp: Any, logits: Any, targets: Any, axis: int, smoothing: float
) -> tuple[Any, Any]:
    """:func:`cross_entropy_plain` for probability targets with the score
    ``sum(p z)`` unguarded, and whether that is the guarded one: no row is
    NaN (``0 * -inf`` for a zero-probability class at a ``-inf`` logit is)."""
    m = stop_gradient(xp, xp.max(logits, axis=axis, keepdims=True))
    z = logits - m
    loss = xp.log(xp.sum(xp.exp(z), axis=axis))
    score = xp.sum(targets * z, axis=axis)
    if smoothing == 0:
        loss = loss - score
    else:
        mean = xp.sum(z * (1.0 / z.shape[axis]), axis=axis)
        loss = loss - (1.0 - smoothing) * score - smoothing * mean
    return loss, ~xp.any(xp.isnan(loss))


def cosine_rows(xp: Any, a: Any, b: Any, axis: int, floor: float) -> tuple[Any, ...]:
    """The cosine similarity as ``sum(a b k)`` with the row factor
    ``k = 1 / max(||a|| ||b||, eps)`` from the squared norms, and whether that
    is :func:`cosine_similarity_loss`: both squared norms at least
    :func:`exact_sums_floor` and the norms' product below ``1 / tiny`` (``k``
    a normal number).  ``k`` is made NaN where that fails (``0 sqrt(x)`` is NaN
    for a negative or infinite ``x``), so the loss alone tells, and the sums,
    the factor and the product stay one reduction, broadcast and reduction,
    which XLA fuses into one pass over the data.  Scales 1; coefficients
    ``(k, L [above] / |a|^2, k, L [above] / |b|^2)`` (see :func:`cosine_tangent`)."""
    aa = xp.sum(xp.square(a), axis=axis, keepdims=True)
    bb = xp.sum(xp.square(b), axis=axis, keepdims=True)
    norms = xp.sqrt(aa) * xp.sqrt(bb)
    low = exact_sums_floor(xp, a.dtype, a.shape[axis])
    high = 1.0 / float(xp.finfo(a.dtype).smallest_normal)
    nan_unless_exact = 0.0 * (xp.sqrt(aa - low) + xp.sqrt(bb - low) + xp.sqrt(high - norms))
    k = 1.0 / at_least(xp, norms, floor) + nan_unless_exact
    loss = xp.sum(a * b * k, axis=axis, keepdims=True)
    exact = ~xp.any(xp.isnan(loss))
    above = norms >= floor
    zero = xp.zeros_like(loss)
    one = xp.ones_like(loss)
    coefficients = (k, xp.where(above, loss / aa, zero), k, xp.where(above, loss / bb, zero))
    return loss, exact, (one, one), coefficients


def cosine_safe_rows(xp: Any, a: Any, b: Any, axis: int, floor: float) -> tuple[Any, ...]:
    """:func:`cosine_similarity_loss` from the sums of the scaled vectors
    ``a / s_a``, ``b / s_b`` (as in :func:`scaled_cosine`), below eps as
    ``dot s_a s_b / eps``; scales ``(s_a, s_b)`` and the coefficients of the
    derivative of that computation (the scales constant)."""
    raw_a = xp.max(xp.abs(a), axis=axis, keepdims=True)
    raw_b = xp.max(xp.abs(b), axis=axis, keepdims=True)
    sa, sb = _scale(xp, raw_a), _scale(xp, raw_b)
    ua, ub = a / sa, b / sb
    dot = xp.sum(ua * ub, axis=axis, keepdims=True)
    na = xp.sqrt(_nonzero(xp, xp.sum(xp.square(ua), axis=axis, keepdims=True)))
    nb = xp.sqrt(_nonzero(xp, xp.sum(xp.square(ub), axis=axis, keepdims=True)))
    cosine = dot / (na * nb)
    above = ~(xp.sqrt(raw_a) * xp.sqrt(raw_b) < math.sqrt(floor) / xp.sqrt(na * nb))
    inverse = 1.0 / (na * nb)
    at_a, at_b = inverse / sa, inverse / sb
    coefficients = [at_a, cosine / (sa * na * na), at_b, cosine / (sb * nb * nb)]
    if floor == 0:
        return cosine, (sa, sb), tuple(coefficients)
    loss = xp.where(above, cosine, ((dot / floor) * sa) * sb)
    zero = xp.zeros_like(loss)
    below = (sb / floor, zero, sa / floor, zero)
    coefficients = tuple(xp.where(above, c, d) for c, d in zip(coefficients, below))
    return loss, (sa, sb), coefficients


def cosine_tangent(
    xp: Any, a: Any, b: Any, da: Any, db: Any, axis: int, scales: Any, coefficients: Any
) -> Any:
    """The cosine loss's tangent for input tangents ``da``, ``db`` (``None``:
    zero): ``dL/da = c0 b / s_b - c1 a / s_a`` and
    ``dL/db = c2 a / s_a - c3 b / s_b``, rows kept."""
    sa, sb = scales
    c0, c1, c2, c3 = coefficients
    ua, ub = a / sa, b / sb
    out = 0.0
    if da is not None:
        out = out + xp.sum(da * (ub * c0 - ua * c1), axis=axis, keepdims=True)
    if db is not None:
        out = out + xp.sum(db * (ua * c2 - ub * c3), axis=axis, keepdims=True)
    return out


def triplet_rows(xp: Any, a: Any, pos: Any, neg: Any, axis: int, eps: float) -> tuple[Any, ...]:
    """The two distances ``sqrt(sum d^2 + eps)`` of the triplet loss with
    p = 2 from unscaled sums, and whether they are :func:`distance`'s: every
    sum at least :func:`exact_sums_floor` and finite.  Scales 1; coefficients
    ``1 / d`` (see :func:`distance_tangent`)."""
    sp = xp.sum(xp.square(a - pos), axis=axis, keepdims=True) + eps
    sn = xp.sum(xp.square(a - neg), axis=axis, keepdims=True) + eps
    low, high = exact_sums_floor(xp, a.dtype, a.shape[axis]), float(xp.finfo(a.dtype).max)
    exact = xp.all(_and(xp, sp >= low, sp <= high, sn >= low, sn <= high))
    dp, dn = xp.sqrt(sp), xp.sqrt(sn)
    one = xp.ones_like(dp)
    return (dp, dn), exact, (one, one), (1.0 / dp, 1.0 / dn)


def _distance_rows(xp: Any, diff: Any, axis: int, eps: float) -> tuple[Any, Any, Any]:
    """:func:`distance` with p = 2, its scale and ``1 / sqrt(inner)``, rows kept."""
    floor = math.sqrt(eps)
    scale = _scale(xp, at_least(xp, xp.max(xp.abs(diff), axis=axis, keepdims=True), floor))
    inner = xp.sum(xp.square(xp.abs(diff) / scale), axis=axis, keepdims=True)
    root = xp.sqrt(inner + xp.square(floor / scale))
    return scale * root, scale, 1.0 / root


def triplet_safe_rows(
    xp: Any, a: Any, pos: Any, neg: Any, axis: int, eps: float
) -> tuple[Any, ...]:
    """The triplet loss's two distances (p = 2) as :func:`distance` computes
    them, each difference scaled by its largest magnitude; scales and
    coefficients of their derivatives (see :func:`distance_tangent`)."""
    dp, sp, kp = _distance_rows(xp, a - pos, axis, eps)
    dn, sn, kn = _distance_rows(xp, a - neg, axis, eps)
    return (dp, dn), (sp, sn), (kp, kn)


def distance_tangent(xp: Any, diff: Any, ddiff: Any, axis: int, scale: Any, k: Any) -> Any:
    """The tangent of a p = 2 distance for the difference's tangent ``ddiff``:
    ``sum(ddiff (diff / s)) k`` (``d distance / d diff = diff / distance``)."""
    return xp.sum(ddiff * (diff / scale), axis=axis, keepdims=True) * k


def triplet_hinge(xp: Any, dp: Any, dn: Any, margin: float) -> Any:
    """The triplet loss from its two distances, as :func:`triplet_loss`."""
    return at_least(xp, dp - dn + margin, 0.0)


def kl_div_tangent(xp: Any, x: Any, t: Any, dx: Any, dt: Any, axis: int) -> Any:
    """The tangent of :func:`kl_div_loss` (``None``: a zero tangent):
    ``-e^t`` for the inputs, ``e^t (t - x + 1)`` with ``0 log 0 = 0`` for the
    targets, as the formula's own derivative."""
    p = xp.exp(t)
    out = 0.0
    if dx is not None:
        out = out - xp.sum(p * dx, axis=axis)
    if dt is not None:
        out = out + xp.sum(xlogy_like(xp, p, t - x + 1.0) * dt, axis=axis)
    return out


# ------------------------------------------------------- forms of primitives
#
# A primitive in another form of equal value, for a library whose own kernel
# is slow or spelled in many primitives; a fast path puts the form in place
# of the primitive in the namespace the formulas run on.

LOG2_E = 1.0 / LOG2


def exp_by_pow2(xp: Any, x: Any) -> Any:
    """``exp(x)`` as ``2 ** (x log2 e)``: MLX's own ``exp`` on the CPU is this
    power of the same rounded product (the two agree to an ulp; below -88
    and above 88 it gives 0 and inf where this keeps the true value), at
    four times the cost of ``pow``."""
    return xp.pow(2.0, x * LOG2_E)


def cosine_similarity_rows(xp: Any, a: Any, b: Any, axis: int, floor: float) -> Any:
    """:func:`cosine_similarity_loss` with the dot product below eps taken as
    the scaled dot product times the two scales (one multiplication per row)
    instead of a masked copy of both inputs: four fewer passes over the
    inputs, the same value (a tiny product that underflows in ``a * b`` is
    kept), and the same gradient, ``b / eps`` (the scales are constants)."""
    top_a = stop_gradient(xp, xp.max(xp.abs(a), axis=axis, keepdims=True))
    top_b = stop_gradient(xp, xp.max(xp.abs(b), axis=axis, keepdims=True))
    scale_a, scale_b = _scale(xp, top_a), _scale(xp, top_b)
    ua, ub = a / scale_a, b / scale_b
    dot = xp.sum(ua * ub, axis=axis)
    norm_ua = xp.sqrt(_nonzero(xp, xp.sum(xp.square(ua), axis=axis)))
    norm_ub = xp.sqrt(_nonzero(xp, xp.sum(xp.square(ub), axis=axis)))
    # ||a|| ||b|| >= eps as in scaled_cosine (NaN counts as above).
    root_scale = xp.sqrt(xp.squeeze(top_a, axis=axis)) * xp.sqrt(xp.squeeze(top_b, axis=axis))
    above = ~(root_scale < math.sqrt(floor) / xp.sqrt(norm_ua * norm_ub))
    cosine = dot / (norm_ua * norm_ub)
    if floor <= 0:
        return cosine
    # ||a|| ||b|| < eps: sa sb / eps as (min / eps) max, which neither
    # overflows nor underflows there; 0 above, where it may overflow (and
    # its product with a zero cotangent would be NaN).
    sa, sb = xp.squeeze(scale_a, axis=axis), xp.squeeze(scale_b, axis=axis)
    factor = xp.where(above, 0.0, (xp.minimum(sa, sb) / floor) * xp.maximum(sa, sb))
    return xp.where(above, cosine, dot * factor)


def smooth_l1_select_free(xp: Any, x: Any, y: Any, beta: float) -> Any:
    """:func:`smooth_l1_loss` without a select: ``(q / 2)(q / beta) + (d - q)``
    with ``q = min(d, beta)`` is ``d^2 / (2 beta)`` below beta and
    ``beta / 2 + (d - beta)`` above (to an ulp of ``d - beta / 2``), with the
    same gradients; a select costs a pass of its own where the ops are not
    fused (MLX under mx.grad)."""
    diff = xp.abs(x - y)
    if beta == 0:
        return diff
    q = at_most(xp, diff, beta)
    return (0.5 * q) * (q / beta) + (diff - q)


def isfinite_by_subtraction(xp: Any, x: Any) -> Any:
    """``isfinite(x)`` as ``x - x == 0`` (inf - inf and nan are nan): two
    primitives where MLX spells ``isfinite`` in six."""
    return (x - x) == 0


# --------------------------------------------------------------------- one call

# Loss -> the positions of its arrays that may hold integers to keep as they
# are (class indices, lengths); every other array is computed in the compute
# dtype, and None (an optional array) stays None.
INTEGER_ARRAYS: dict[str, frozenset[int]] = {
    "cross_entropy": frozenset({1}),
    "nll_loss": frozenset({1}),
    "softmax_focal_loss": frozenset({1}),
    "poly1_cross_entropy": frozenset({1}),
    "dice_loss": frozenset({1}),
    "multi_margin_loss": frozenset({1}),
    "ntxent_loss": frozenset({1}),
    "ctc_loss": frozenset({1, 2, 3}),
}


def evaluate(
    xp: Any,
    name: str,
    params: tuple[Any, ...],
    reduction: str,
    out_dtype: Any,
    dtype: Any,
    weighted: bool,
    *arrays: Any,
    formula: Any = None,
) -> Any:
    """The whole computation of one call of loss ``name``.

    ``arrays`` are the loss's arrays in its order, with the per-example
    weights last when ``weighted``; every array is computed in ``dtype``
    except class indices.  The formula's loss is multiplied by the weights,
    reduced (a formula may give the total that 'mean' divides by), and
    returned in ``out_dtype``.  ``formula``: another form of the loss's
    formula, with its signature (a fast path's), in place of it.
    """
    if weighted:
        *arrays, weights = arrays
    keep = INTEGER_ARRAYS.get(name, ())
    cast = [
        a if a is None or (i in keep and not xp.isdtype(a.dtype, "real floating"))
        else astype(xp, a, dtype)
        for i, a in enumerate(arrays)
    ]
    loss = (formula or FORMULAS[name])(xp, *cast, *params)
    total = None
    if isinstance(loss, tuple):  # a mean over a total weight, not a count
        loss, total = loss
    if weighted:
        loss = loss * astype(xp, weights, dtype)
    return reduce(xp, loss, reduction, out_dtype, total)


FORMULAS = {
    f.__name__: f
    for f in (
        binary_cross_entropy,
        cosine_embedding_loss,
        cosine_similarity_loss,
        cross_entropy,
        ctc_loss,
        dice_loss,
        gaussian_nll_loss,
        hinge_embedding_loss,
        hinge_loss,
        huber_loss,
        info_nce_loss,
        js_div_loss,
        kl_div_loss,
        l1_loss,
        log_cosh_loss,
        mape_loss,
        margin_ranking_loss,
        mse_loss,
        msle_loss,
        multi_margin_loss,
        multilabel_soft_margin_loss,
        nll_loss,
        ntxent_loss,
        poisson_nll_loss,
        poly1_cross_entropy,
        sigmoid_focal_loss,
        smooth_l1_loss,
        soft_margin_loss,
        softmax_focal_loss,
        squared_hinge_loss,
        triplet_loss,
    )
}

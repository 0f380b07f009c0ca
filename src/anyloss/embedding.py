"""Losses between embeddings and rankings: cosine_similarity_loss,
triplet_loss and margin_ranking_loss."""

from __future__ import annotations

import math
from typing import Any

from . import _native
from ._common import Reduction, at_least, check_real, normalize_axis, prepare, reduce, stop_gradient

Array = Any


def _safe_divisor(xp: Any, x: Any) -> Any:
    """``x`` with zeros replaced by ones, for dividing by a norm or a scale."""
    return xp.where(x == 0, xp.ones_like(x), x)


def cosine_similarity_loss(
    x1: Array, x2: Array, axis: int = 1, eps: float = 1e-8, reduction: Reduction = "none"
) -> Array:
    r"""Cosine similarity between ``x1`` and ``x2`` along ``axis``.

    .. math::

        \ell = \frac{x_1 \cdot x_2}{\max(\|x_1\|\,\|x_2\|,\ \epsilon)}

    This is the similarity itself (1 for parallel vectors), as in MLX, not
    :math:`1 - \text{similarity}`.  Each vector is scaled by its largest
    magnitude before the dot product and norms, so vectors of huge or tiny
    norm give an ordinary cosine instead of ``inf`` or ``nan``.  With
    ``eps = 0`` a zero vector has similarity 0.

    Args:
        x1 (array): The first embeddings.
        x2 (array): The second embeddings, same shape as ``x1``.
        axis (int, optional): The embedding axis. Default: ``1``.
        eps (float, optional): Lower bound of the denominator, ``>= 0``. Default: ``1e-8``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        array: The similarity, shape of ``x1`` without ``axis`` for ``'none'``.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> a = np.array([[1.0, 0.0], [1.0, 1.0]])
        >>> b = np.array([[0.0, 2.0], [3.0, 3.0]])
        >>> anyloss.cosine_similarity_loss(a, b)
        array([0., 1.])
    """
    func = "cosine_similarity_loss"
    floor = check_real(func, "eps", eps, low=0.0)
    xp, out_dtype, _, (a, b) = prepare(func, reduction, x1=x1, x2=x2)
    ax = normalize_axis(func, axis, a.ndim)
    fast = _native.dispatch(xp, func, a, b, ax, floor, reduction, out_dtype)
    if fast is not NotImplemented:
        return fast

    cosine, above, _, _ = scaled_cosine(xp, a, b, ax, floor)
    # Below eps the denominator is eps itself and x1 . x2 is small: divide the
    # plain dot product (which also gives the right gradient at a zero vector).
    masked = xp.expand_dims(above, axis=ax)
    a_below = xp.where(masked, xp.zeros_like(a), a)
    b_below = xp.where(masked, xp.zeros_like(b), b)
    below = xp.sum(a_below * b_below, axis=ax) / (floor if floor > 0 else 1.0)
    loss = xp.where(above, cosine, below)
    return reduce(xp, loss, reduction, out_dtype)


def scaled_cosine(xp: Any, a: Any, b: Any, axis: int, floor: float) -> tuple[Any, Any, Any, Any]:
    """The cosine of ``a`` and ``b`` along ``axis``, each vector scaled by its
    largest magnitude first; whether ``||a|| ||b|| >= floor``; and the norms
    ``||a||``, ``||b||`` (1 for a zero vector).  Nothing overflows or
    underflows on the way."""
    # The cosine does not depend on the scales: constants for autodiff (their
    # derivative would bring 1/scale**2, which overflows for tiny vectors).
    scale_a = stop_gradient(xp, xp.max(xp.abs(a), axis=axis, keepdims=True))
    scale_b = stop_gradient(xp, xp.max(xp.abs(b), axis=axis, keepdims=True))
    ua = a / _safe_divisor(xp, scale_a)  # largest entry of magnitude 1 (or all zero)
    ub = b / _safe_divisor(xp, scale_b)
    dot = xp.sum(ua * ub, axis=axis)
    norm_ua = xp.sqrt(_safe_divisor(xp, xp.sum(xp.square(ua), axis=axis)))
    norm_ub = xp.sqrt(_safe_divisor(xp, xp.sum(xp.square(ub), axis=axis)))
    scale_a, scale_b = xp.squeeze(scale_a, axis=axis), xp.squeeze(scale_b, axis=axis)
    # ||a|| ||b|| >= eps, compared through square roots so that the product
    # of two huge norms cannot overflow.
    root_scale = xp.sqrt(scale_a) * xp.sqrt(scale_b)
    above = root_scale >= math.sqrt(floor) / xp.sqrt(norm_ua * norm_ub)
    norm_a = _safe_divisor(xp, scale_a) * norm_ua
    norm_b = _safe_divisor(xp, scale_b) * norm_ub
    return dot / (norm_ua * norm_ub), above, norm_a, norm_b


def _distance(xp: Any, diff: Any, p: float, eps: float, axis: int) -> Any:
    """``(sum |diff|^p + eps) ** (1/p)`` along ``axis``.

    Written as ``s * (sum (|diff|/s)^p + eps/s^p) ** (1/p)`` with ``s`` the
    largest of ``|diff|`` and ``eps ** (1/p)``: the powers lie in ``[0, 1]``,
    so large differences do not overflow and tiny ones do not underflow.  The
    value does not depend on ``s``, which is a constant for autodiff.
    """
    magnitude = xp.abs(diff)
    if p == 1:
        return xp.sum(magnitude, axis=axis) + eps
    floor = eps ** (1.0 / p)
    scale = stop_gradient(xp, at_least(xp, xp.max(magnitude, axis=axis, keepdims=True), floor))
    scale = _safe_divisor(xp, scale)  # all-zero differences with eps = 0
    scaled = magnitude / scale
    scale = xp.squeeze(scale, axis=axis)
    if p == 2:
        return scale * xp.sqrt(xp.sum(xp.square(scaled), axis=axis) + xp.square(floor / scale))
    inner = xp.sum(xp.pow(scaled, p), axis=axis) + xp.pow(floor / scale, p)
    return scale * xp.pow(inner, 1.0 / p)


def triplet_loss(
    anchors: Array,
    positives: Array,
    negatives: Array,
    axis: int = -1,
    p: int = 2,
    margin: float = 1.0,
    eps: float = 1e-6,
    reduction: Reduction = "none",
) -> Array:
    r"""Triplet margin loss: anchors should be nearer their positives than their
    negatives by ``margin``.

    .. math::

        \ell = \max\big(d(a, p) - d(a, n) + \alpha,\ 0\big), \qquad
        d(u, v) = \Big(\sum_i |u_i - v_i|^p + \epsilon\Big)^{1/p}

    ``eps`` inside the root keeps the gradient finite when an anchor equals
    its positive.  The differences are scaled by their largest magnitude
    before the powers, so huge embeddings do not overflow.

    Args:
        anchors (array): The anchor embeddings.
        positives (array): Embeddings of the same class, same shape as ``anchors``.
        negatives (array): Embeddings of another class, same shape as ``anchors``.
        axis (int, optional): The embedding axis. Default: ``-1``.
        p (int, optional): The norm degree, ``> 0``. Default: ``2``.
        margin (float, optional): :math:`\alpha`. Default: ``1.0``.
        eps (float, optional): Added to the sum before the root, ``>= 0``. Default: ``1e-6``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        array: The loss, shape of ``anchors`` without ``axis`` for ``'none'``.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> a = np.array([[0.0, 0.0], [0.0, 0.0]])
        >>> pos = np.array([[3.0, 4.0], [0.0, 1.0]])
        >>> neg = np.array([[0.0, 1.0], [6.0, 8.0]])
        >>> anyloss.triplet_loss(a, pos, neg, eps=0.0)
        array([5., 0.])
    """
    func = "triplet_loss"
    degree = check_real(func, "p", p, low=0.0, low_inclusive=False)
    alpha = check_real(func, "margin", margin)
    floor = check_real(func, "eps", eps, low=0.0)
    xp, out_dtype, _, (a, pos, neg) = prepare(
        func, reduction, anchors=anchors, positives=positives, negatives=negatives
    )
    ax = normalize_axis(func, axis, a.ndim)
    fast = _native.dispatch(xp, func, a, pos, neg, ax, degree, alpha, floor, reduction, out_dtype)
    if fast is not NotImplemented:
        return fast
    gap = _distance(xp, a - pos, degree, floor, ax) - _distance(xp, a - neg, degree, floor, ax)
    loss = at_least(xp, gap + alpha, 0.0)
    return reduce(xp, loss, reduction, out_dtype)


def margin_ranking_loss(
    inputs1: Array,
    inputs2: Array,
    targets: Array,
    margin: float = 0.0,
    reduction: Reduction = "none",
) -> Array:
    r"""Margin ranking loss: ``inputs1`` should rank above ``inputs2`` where
    ``targets`` is 1, below where it is -1.

    .. math::

        \ell = \max\big(0,\ -y\,(x_1 - x_2) + \text{margin}\big)

    Args:
        inputs1 (array): Scores of the first items.
        inputs2 (array): Scores of the second items, same shape.
        targets (array): 1 or -1, same shape.
        margin (float, optional): The required separation. Default: ``0.0``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        array: The loss, shape of ``inputs1`` for ``'none'``.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> x1 = np.array([-0.573409, -0.765166, -0.0638], dtype=np.float32)
        >>> x2 = np.array([0.75596, 0.225763, 0.256995], dtype=np.float32)
        >>> anyloss.margin_ranking_loss(x1, x2, np.array([1, 1, -1]))
        array([1.3293691, 0.990929 , 0.       ], dtype=float32)
    """
    func = "margin_ranking_loss"
    m = check_real(func, "margin", margin)
    xp, out_dtype, _, (x1, x2, y) = prepare(
        func, reduction, inputs1=inputs1, inputs2=inputs2, targets=targets
    )
    fast = _native.dispatch(xp, func, x1, x2, y, m, reduction, out_dtype)
    if fast is not NotImplemented:
        return fast
    loss = at_least(xp, m - y * (x1 - x2), 0.0)
    return reduce(xp, loss, reduction, out_dtype)

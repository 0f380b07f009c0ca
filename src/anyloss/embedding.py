"""Losses between embeddings and rankings: cosine_similarity_loss,
triplet_loss and margin_ranking_loss."""

from __future__ import annotations

from typing import Any

from . import _native
from ._common import Reduction, check_real, normalize_axis, prepare

Array = Any


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
        eps (float or 0-d array, optional): Lower bound of the denominator, ``>= 0``. Default: ``1e-8``.
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
    floor = check_real(func, "eps", eps, low=0.0, array_ok=True)
    xp, out_dtype, dtype = prepare(func, reduction, x1=x1, x2=x2)
    ax = normalize_axis(func, axis, x1.ndim)
    return _native.call(xp, func, (ax, floor), reduction, out_dtype, dtype, False, x1, x2)


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
        margin (float or 0-d array, optional): :math:`\alpha`. Default: ``1.0``.
        eps (float or 0-d array, optional): Added to the sum before the root, ``>= 0``. Default: ``1e-6``.
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
    alpha = check_real(func, "margin", margin, array_ok=True)
    floor = check_real(func, "eps", eps, low=0.0, array_ok=True)
    xp, out_dtype, dtype = prepare(
        func, reduction, anchors=anchors, positives=positives, negatives=negatives
    )
    ax = normalize_axis(func, axis, anchors.ndim)
    return _native.call(
        xp, func, (ax, degree, alpha, floor), reduction, out_dtype, dtype, False,
        anchors, positives, negatives,
    )


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
        margin (float or 0-d array, optional): The required separation. Default: ``0.0``.
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
    m = check_real(func, "margin", margin, array_ok=True)
    xp, out_dtype, dtype = prepare(func, reduction, inputs1=inputs1, inputs2=inputs2, targets=targets)
    return _native.call(
        xp, func, (m,), reduction, out_dtype, dtype, False, inputs1, inputs2, targets
    )

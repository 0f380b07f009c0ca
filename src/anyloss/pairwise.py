"""Losses on labelled pairs, 1 for similar and -1 for dissimilar:
cosine_embedding_loss and hinge_embedding_loss (PyTorch's numbers)."""

from __future__ import annotations

from typing import Any

from . import _native
from ._common import (
    Reduction,
    check_real,
    check_reduction,
    check_same_shape,
    check_signs,
    drop_axis,
    float_dtypes,
    namespace,
    normalize_axis,
    prepare,
    shape_of,
)

Array = Any


def cosine_embedding_loss(
    x1: Array,
    x2: Array,
    targets: Array,
    margin: float = 0.0,
    axis: int = -1,
    eps: float = 1e-8,
    reduction: Reduction = "none",
) -> Array:
    r"""Cosine embedding loss: pairs labelled 1 should point the same way,
    pairs labelled -1 should have cosine at most ``margin``.

    .. math::

        \ell = \begin{cases}
            1 - \cos(x_1, x_2), & y = 1 \\
            \max\big(0,\ \cos(x_1, x_2) - \text{margin}\big), & y = -1
        \end{cases}
        \qquad \cos = \frac{x_1 \cdot x_2}{\max(\|x_1\|\,\|x_2\|,\ \epsilon)}

    PyTorch's ``F.cosine_embedding_loss`` (other target values give 0, as
    there).  The cosine is :func:`cosine_similarity_loss`'s: each vector is
    scaled by its largest entry first, so huge or tiny embeddings do not
    overflow, and a zero vector has cosine 0 with a finite gradient.

    Args:
        x1 (array): The first embeddings.
        x2 (array): The second embeddings, same shape as ``x1``.
        targets (array): 1 or -1 per pair, the shape of ``x1`` without ``axis``.
        margin (float, optional): The largest cosine a dissimilar pair may have
            without loss, in ``[-1, 1]``. Default: ``0.0``.
        axis (int, optional): The embedding axis. Default: ``-1``.
        eps (float, optional): Lower bound of the norms' product, ``>= 0``. Default: ``1e-8``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        array: The loss, shape of ``targets`` for ``'none'``, a 0-d array otherwise.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> a = np.array([[1.0, 0.0], [3.0, 4.0], [3.0, 4.0]])
        >>> b = np.array([[0.0, 2.0], [6.0, 8.0], [4.0, 3.0]])
        >>> anyloss.cosine_embedding_loss(a, b, np.array([1, 1, -1]), margin=0.5)
        array([1.  , 0.  , 0.46])
    """
    func = "cosine_embedding_loss"
    xp = namespace(func, x1=x1, x2=x2, targets=targets)
    check_reduction(func, reduction)
    m = check_real(func, "margin", margin, low=-1.0, high=1.0)
    floor = check_real(func, "eps", eps, low=0.0)
    check_same_shape(func, x1=x1, x2=x2)
    ax = normalize_axis(func, axis, x1.ndim)
    expected = drop_axis(shape_of(x1), ax)
    if shape_of(targets) != expected:
        raise ValueError(
            f"{func}: targets has shape {shape_of(targets)}, but x1 has shape {shape_of(x1)}; "
            f"expected one target per pair, shape {expected} (x1's shape without axis {ax})"
        )
    check_signs(xp, func, targets, "1 (similar) or -1 (dissimilar)")
    out_dtype, dtype = float_dtypes(xp, func, x1=x1, x2=x2, targets=targets)
    return _native.call(
        xp, func, (ax, m, floor), reduction, out_dtype, dtype, False, x1, x2, targets
    )


def hinge_embedding_loss(
    inputs: Array, targets: Array, margin: float = 1.0, reduction: Reduction = "none"
) -> Array:
    r"""Hinge embedding loss: ``inputs`` (usually a distance) should be small
    for pairs labelled 1 and at least ``margin`` for pairs labelled -1.

    .. math::

        \ell = \begin{cases}
            x, & y = 1 \\
            \max(0,\ \text{margin} - x), & y = -1
        \end{cases}

    PyTorch's ``F.hinge_embedding_loss``, with its rule for other target
    values (both terms).

    Args:
        inputs (array): Scores of the pairs, usually distances (``>= 0``).
        targets (array): 1 or -1, same shape as ``inputs``.
        margin (float, optional): The distance dissimilar pairs should reach. Default: ``1.0``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        array: The loss, shape of ``inputs`` for ``'none'``, a 0-d array otherwise.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> d = np.array([0.3, 0.3, 2.0])
        >>> anyloss.hinge_embedding_loss(d, np.array([1, -1, -1]))
        array([0.3, 0.7, 0. ])
    """
    func = "hinge_embedding_loss"
    mg = check_real(func, "margin", margin)
    xp, out_dtype, dtype = prepare(func, reduction, inputs=inputs, targets=targets)
    check_signs(xp, func, targets, "1 (similar) or -1 (dissimilar)")
    return _native.call(xp, func, (mg,), reduction, out_dtype, dtype, False, inputs, targets)

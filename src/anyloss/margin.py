"""Margin losses with PyTorch's numbers: multi_margin_loss, soft_margin_loss,
multilabel_soft_margin_loss, and squared_hinge_loss."""

from __future__ import annotations

from typing import Any, Optional

from . import _native
from ._common import (
    Reduction,
    check_real,
    check_reduction,
    check_same_shape,
    check_signs,
    checked,
    float_dtypes,
    namespace,
    prepare,
    shape_of,
)
from .focal import check_class_indices, check_class_weights, check_unit_interval

Array = Any


def _multi_margin_verdict(func, inputs, targets, p, margin, class_weights, reduction):
    """multi_margin_loss's checks of everything but values (see ``_common.checked``)."""
    xp = namespace(func, inputs=inputs, targets=targets, class_weights=class_weights)
    check_reduction(func, reduction)
    if isinstance(p, bool) or p not in (1, 2):
        raise ValueError(f"{func}: p must be 1 or 2 (as in PyTorch), got {p!r}")
    m = check_real(func, "margin", margin)
    if inputs.ndim == 0:
        raise ValueError(f"{func}: inputs must have a class axis (the last), got a 0-d array")
    expected = shape_of(inputs)[:-1]
    if shape_of(targets) != expected:
        raise ValueError(
            f"{func}: targets has shape {shape_of(targets)}, but inputs has shape "
            f"{shape_of(inputs)}; expected class indices of shape {expected}"
        )
    classes = shape_of(inputs)[-1]
    check_class_weights(xp, func, class_weights, classes)
    return xp, m, classes, *float_dtypes(xp, func, inputs=inputs, class_weights=class_weights)


def multi_margin_loss(
    inputs: Array,
    targets: Array,
    p: int = 1,
    margin: float = 1.0,
    class_weights: Optional[Array] = None,
    reduction: Reduction = "none",
) -> Array:
    r"""Multi-class hinge loss of scores against class indices (PyTorch's numbers).

    With the scores :math:`x` of ``C`` classes along the last axis and the target class :math:`y`,

    .. math::

        \ell = \frac{w_y}{C} \sum_{i \ne y} \max(0,\ m - x_y + x_i)^p .

    Args:
        inputs (array): Scores, shape ``(..., C)``.
        targets (array): Integer class indices, shape ``inputs.shape[:-1]``.
        p (int, optional): The power, 1 or 2. Default: ``1``.
        margin (float, optional): The margin :math:`m`. Default: ``1.0``.
        class_weights (array, optional): A weight per class :math:`w`, shape
            ``(C,)``; ``None`` weighs every class 1. Default: ``None``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``; the
            mean is over examples (PyTorch's, also with class weights). Default: ``'none'``.

    Returns:
        array: The loss, shape ``inputs.shape[:-1]`` for ``'none'``.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> scores = np.array([[0.1, 0.2, 0.4, 0.8], [0.5, 1.0, 0.0, 0.5]], dtype=np.float32)
        >>> anyloss.multi_margin_loss(scores, np.array([3, 0]))
        array([0.325, 0.75 ], dtype=float32)
    """
    func = "multi_margin_loss"
    xp, m, classes, out_dtype, dtype = checked(
        func, (inputs, targets, class_weights), (p, margin, reduction),
        _multi_margin_verdict, inputs, targets, p, margin, class_weights, reduction,
    )
    guard = check_class_indices(xp, func, targets, classes)
    return _native.call(
        xp, func, (int(p), m, guard), reduction, out_dtype, dtype, False, inputs, targets, class_weights
    )


def soft_margin_loss(inputs: Array, targets: Array, reduction: Reduction = "none") -> Array:
    r"""Logistic loss for targets in :math:`\{-1, 1\}` (PyTorch's soft_margin_loss).

    .. math::

        \ell = \log(1 + e^{-y\,x})

    computed as a softplus, which does not overflow for large :math:`-y\,x`.

    Args:
        inputs (array): Predicted scores.
        targets (array): Targets, -1 or 1, same shape as ``inputs``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        array: The loss, shape of ``inputs`` for ``'none'``.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> anyloss.soft_margin_loss(np.array([0.5, -2.0, 3.0]), np.array([1, -1, -1]))
        array([0.47407698, 0.12692801, 3.04858735])
    """
    func = "soft_margin_loss"
    xp, out_dtype, dtype = prepare(func, reduction, inputs=inputs, targets=targets)
    check_signs(xp, func, targets)
    return _native.call(xp, func, (), reduction, out_dtype, dtype, False, inputs, targets)


def multilabel_soft_margin_loss(
    inputs: Array,
    targets: Array,
    class_weights: Optional[Array] = None,
    reduction: Reduction = "none",
) -> Array:
    r"""Multi-label logistic loss: the mean over classes of binary cross
    entropies with logits (PyTorch's multilabel_soft_margin_loss).

    .. math::

        \ell = -\frac{1}{C} \sum_c w_c \big(t_c \log \sigma(x_c) + (1 - t_c) \log \sigma(-x_c)\big)

    Args:
        inputs (array): Logits, shape ``(..., C)``.
        targets (array): Targets in ``[0, 1]`` (usually 0 or 1), same shape as ``inputs``.
        class_weights (array, optional): A weight per class :math:`w`, shape
            ``(C,)``; ``None`` weighs every class 1. Default: ``None``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        array: The loss, shape ``inputs.shape[:-1]`` for ``'none'``.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> logits = np.array([[2.0, -1.0, 0.0], [0.5, 0.5, -3.0]], dtype=np.float32)
        >>> anyloss.multilabel_soft_margin_loss(logits, np.array([[1, 0, 1], [0, 1, 0]]))
        array([0.37777892, 0.49891376], dtype=float32)
    """
    func = "multilabel_soft_margin_loss"
    xp = namespace(func, inputs=inputs, targets=targets, class_weights=class_weights)
    check_reduction(func, reduction)
    check_same_shape(func, inputs=inputs, targets=targets)
    if inputs.ndim == 0:
        raise ValueError(f"{func}: inputs must have a class axis (the last), got a 0-d array")
    check_class_weights(xp, func, class_weights, shape_of(inputs)[-1])
    check_unit_interval(xp, func, "targets", targets, "map class labels to 0 and 1")
    out_dtype, dtype = float_dtypes(
        xp, func, inputs=inputs, targets=targets, class_weights=class_weights
    )
    return _native.call(
        xp, func, (), reduction, out_dtype, dtype, False, inputs, targets, class_weights
    )


def squared_hinge_loss(inputs: Array, targets: Array, reduction: Reduction = "none") -> Array:
    r"""Squared hinge loss for targets in :math:`\{-1, 1\}`.

    .. math::

        \ell = \max(0,\ 1 - y\, x)^2

    Args:
        inputs (array): Predicted scores.
        targets (array): Targets, -1 or 1, same shape as ``inputs``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        array: The loss, shape of ``inputs`` for ``'none'``.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> anyloss.squared_hinge_loss(np.array([0.5, -2.0, 3.0]), np.array([1, -1, -1]))
        array([ 0.25,  0.  , 16.  ])
    """
    func = "squared_hinge_loss"
    xp, out_dtype, dtype = prepare(func, reduction, inputs=inputs, targets=targets)
    check_signs(xp, func, targets)
    return _native.call(xp, func, (), reduction, out_dtype, dtype, False, inputs, targets)

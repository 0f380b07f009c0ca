"""Losses that weigh examples by how wrong they are: sigmoid_focal_loss,
softmax_focal_loss and poly1_cross_entropy."""

from __future__ import annotations

from typing import Any, Optional

from . import _native
from ._common import (
    Reduction,
    check_integer,
    check_real,
    check_reduction,
    drop_axis,
    float_dtypes,
    namespace,
    normalize_axis,
    prepare,
    shape_of,
    value_range,
    values_known,
)

Array = Any


def check_class_indices(xp: Any, func: str, targets: Array, num_classes: int, high: Optional[int] = None) -> bool:
    """Class indices: an integer dtype, and values in ``[0, num_classes)`` (or
    ``[0, high]``) where they can be read or (without ``high``) the fast path
    reads them; whether the formula must guard them (they could not be read:
    under a trace, on a device, lazy)."""
    check_integer(xp, func, "targets", targets)
    if high is None and _native.checks_class_indices(xp, targets, func):
        return False
    if not values_known(xp, targets):
        return True
    top = num_classes - 1 if high is None else high
    lo, hi = value_range(xp, targets)
    if lo < 0 or hi > top:
        raise ValueError(
            f"{func}: targets holds class indices from {int(lo)} to {int(hi)}, but the class "
            f"axis has {num_classes} entr{'y' if num_classes == 1 else 'ies'}; expected "
            f"0 <= index <= {top}"
        )
    return False


def check_class_weights(xp: Any, func: str, class_weights: Optional[Array], num_classes: int) -> None:
    """One floating weight per class."""
    if class_weights is None:
        return
    if shape_of(class_weights) != (num_classes,):
        raise ValueError(
            f"{func}: class_weights has shape {shape_of(class_weights)}, but there are "
            f"{num_classes} classes; expected one weight per class, shape ({num_classes},)"
        )
    if not xp.isdtype(class_weights.dtype, "real floating"):
        raise TypeError(
            f"{func}: class_weights must have a real floating dtype, got {class_weights.dtype}"
        )


def check_unit_interval(xp: Any, func: str, name: str, x: Array, fix: str) -> None:
    """Values in ``[0, 1]``, read (a sample) where they are on the host."""
    if values_known(xp, x):
        lo, hi = value_range(xp, x, sample=True)
        if lo < 0 or hi > 1:
            raise ValueError(
                f"{func}: {name} must be probabilities in [0, 1], but it holds values from "
                f"{lo:g} to {hi:g}; {fix}"
            )


def sigmoid_focal_loss(
    inputs: Array,
    targets: Array,
    alpha: Optional[float] = 0.25,
    gamma: float = 2.0,
    reduction: Reduction = "none",
) -> Array:
    r"""Focal loss of logits against binary targets (RetinaNet; torchvision's numbers).

    With :math:`p = \sigma(x)` and :math:`p_t = p\,t + (1 - p)(1 - t)`,

    .. math::

        \ell = \alpha_t\, (1 - p_t)^\gamma\, \operatorname{BCE}(x, t), \qquad
        \alpha_t = \alpha\, t + (1 - \alpha)(1 - t).

    The factor :math:`(1 - p_t)^\gamma` is computed without cancellation
    from :math:`|x|` and :math:`e^{-|x|}`, and floored at the dtype's
    smallest normal number where it underflows, so the loss and its gradient
    stay finite for every :math:`\gamma > 0` (also :math:`\gamma < 1`) and
    saturated logits, where the textbook form gives NaN gradients.

    Args:
        inputs (array): Logits, any shape.
        targets (array): Targets in ``[0, 1]`` (usually 0 or 1), same shape as ``inputs``.
        alpha (float, optional): Weight of the positive class in ``[0, 1]``;
            ``None`` turns the balancing off (torchvision's ``alpha=-1``). Default: ``0.25``.
        gamma (float, optional): Focusing exponent, ``>= 0`` (0 gives the
            weighted binary cross entropy). Default: ``2.0``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        array: The loss, shape of ``inputs`` for ``'none'``, a 0-d array otherwise.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> logits = np.array([3.0, -1.0, 0.5, 40.0], dtype=np.float32)
        >>> targets = np.array([1.0, 1.0, 0.0, 0.0], dtype=np.float32)
        >>> anyloss.sigmoid_focal_loss(logits, targets)
        array([2.7320828e-05, 1.7546707e-01, 2.8305873e-01, 3.0000000e+01],
              dtype=float32)
    """
    func = "sigmoid_focal_loss"
    if alpha is not None:
        if isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and alpha < 0:
            raise ValueError(
                f"{func}: alpha must be a finite number in [0, 1] or None, got {alpha!r}; "
                f"torchvision's alpha=-1 (no balancing) is alpha=None here"
            )
        alpha = check_real(func, "alpha", alpha, low=0.0, high=1.0)
    power = check_real(func, "gamma", gamma, low=0.0)
    xp, out_dtype, dtype = prepare(func, reduction, inputs=inputs, targets=targets)
    check_unit_interval(xp, func, "targets", targets, "map class labels to 0 and 1")
    return _native.call(xp, func, (alpha, power), reduction, out_dtype, dtype, False, inputs, targets)


def _check_index_targets(func: str, logits: Array, targets: Array, ax: int) -> None:
    expected = drop_axis(shape_of(logits), ax)
    if shape_of(targets) != expected:
        raise ValueError(
            f"{func}: targets has shape {shape_of(targets)}, but logits has shape "
            f"{shape_of(logits)}; expected class indices of shape {expected}"
        )


def softmax_focal_loss(
    logits: Array,
    targets: Array,
    gamma: float = 2.0,
    class_weights: Optional[Array] = None,
    axis: int = -1,
    reduction: Reduction = "none",
) -> Array:
    r"""Multi-class focal loss of logits against class indices.

    With :math:`p = \operatorname{softmax}(x)` along ``axis`` and the target class :math:`y`,

    .. math::

        \ell = -w_y\, (1 - p_y)^\gamma \log p_y .

    :math:`-\log p_y` is the cross entropy, computed from the shifted logits,
    and :math:`1 - p_y = -\operatorname{expm1}(\log p_y)` from it, so a
    confident, right prediction keeps its tiny loss and every gradient is
    finite.  ``gamma = 0`` gives the cross entropy.

    Args:
        logits (array): Unnormalized scores, with the classes along ``axis``.
        targets (array): Integer class indices, the shape of ``logits`` without ``axis``.
        gamma (float, optional): Focusing exponent, ``>= 0``. Default: ``2.0``.
        class_weights (array, optional): A weight per class :math:`w`, shape
            ``(C,)``; ``None`` weighs every class 1. Default: ``None``.
        axis (int, optional): The class axis. Default: ``-1``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``; the
            mean is over examples, not weighted by the class weights. Default: ``'none'``.

    Returns:
        array: The loss, shape of ``logits`` without ``axis`` for ``'none'``.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> logits = np.array([[2.0, -1.0, 0.0], [0.5, 0.5, 0.0]], dtype=np.float32)
        >>> anyloss.softmax_focal_loss(logits, np.array([0, 2]))
        array([0.00414426, 0.858416  ], dtype=float32)
    """
    func = "softmax_focal_loss"
    xp = namespace(func, logits=logits, targets=targets, class_weights=class_weights)
    check_reduction(func, reduction)
    power = check_real(func, "gamma", gamma, low=0.0)
    if logits.ndim == 0:
        raise ValueError(f"{func}: logits must have a class axis, got a 0-d array")
    ax = normalize_axis(func, axis, logits.ndim)
    _check_index_targets(func, logits, targets, ax)
    classes = shape_of(logits)[ax]
    check_class_weights(xp, func, class_weights, classes)
    guard = check_class_indices(xp, func, targets, classes)
    out_dtype, dtype = float_dtypes(xp, func, logits=logits, class_weights=class_weights)
    return _native.call(
        xp, func, (ax, power, guard), reduction, out_dtype, dtype, False, logits, targets, class_weights
    )


def poly1_cross_entropy(
    logits: Array,
    targets: Array,
    epsilon: float = 2.0,
    axis: int = -1,
    reduction: Reduction = "none",
) -> Array:
    r"""Poly-1 cross entropy (PolyLoss): cross entropy plus :math:`\epsilon (1 - p_t)`.

    With :math:`p = \operatorname{softmax}(x)` along ``axis``,

    .. math::

        \ell = -\log p_t + \epsilon\,(1 - p_t),

    where :math:`p_t = p_y` for a class index :math:`y`; for target
    probabilities :math:`t`, :math:`-\log p_t` is :math:`-\sum_c t_c \log p_c`
    and :math:`1 - p_t` is :math:`\sum_c t_c (1 - p_c)` (optax's
    ``poly_loss_cross_entropy``).  :math:`1 - p` is taken as
    :math:`-\operatorname{expm1}(\log p)`, exact for :math:`p` near 1.

    Args:
        logits (array): Unnormalized scores, with the classes along ``axis``.
        targets (array): Class indices (an integer array with the shape of
            ``logits`` minus ``axis``) or class probabilities (the shape of ``logits``).
        epsilon (float, optional): The coefficient of :math:`1 - p_t` (the
            paper suggests 2 for classification and -1 for detection). Default: ``2.0``.
        axis (int, optional): The class axis. Default: ``-1``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        array: The loss, shape of ``logits`` without ``axis`` for ``'none'``.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> logits = np.array([[2.0, -1.0, 0.0], [0.5, 0.5, 0.0]], dtype=np.float32)
        >>> anyloss.poly1_cross_entropy(logits, np.array([0, 2]))
        array([0.48225653, 2.9926271 ], dtype=float32)
    """
    func = "poly1_cross_entropy"
    xp = namespace(func, logits=logits, targets=targets)
    check_reduction(func, reduction)
    eps = check_real(func, "epsilon", epsilon)
    if logits.ndim == 0:
        raise ValueError(f"{func}: logits must have a class axis, got a 0-d array")
    ax = normalize_axis(func, axis, logits.ndim)
    probabilities = targets.ndim == logits.ndim
    if probabilities:
        if shape_of(targets) != shape_of(logits):
            raise ValueError(
                f"{func}: targets has shape {shape_of(targets)}, but logits has shape "
                f"{shape_of(logits)}; expected class indices of shape "
                f"{drop_axis(shape_of(logits), ax)} or probabilities of shape {shape_of(logits)}"
            )
        check_unit_interval(xp, func, "targets", targets, "pass class indices as an integer array")
        guard = False
    else:
        _check_index_targets(func, logits, targets, ax)
        guard = check_class_indices(xp, func, targets, shape_of(logits)[ax])
    out_dtype, dtype = float_dtypes(
        xp, func, logits=logits, targets=targets if probabilities else None
    )
    return _native.call(
        xp, func, (ax, eps, probabilities, guard), reduction, out_dtype, dtype, False, logits, targets
    )

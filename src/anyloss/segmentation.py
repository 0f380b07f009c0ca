"""Losses of overlap between predicted and target masks: dice_loss."""

from __future__ import annotations

from typing import Any

from . import _native
from ._common import (
    Reduction,
    check_real,
    check_reduction,
    drop_axis,
    float_dtypes,
    namespace,
    normalize_axis,
    shape_of,
)
from .focal import check_class_indices, check_unit_interval

Array = Any


def dice_loss(
    inputs: Array,
    targets: Array,
    alpha: float = 0.5,
    beta: float = 0.5,
    smooth: float = 1.0,
    axis: int = -1,
    from_logits: bool = True,
    reduction: Reduction = "none",
) -> Array:
    r"""Dice loss, or its generalization the Tversky loss, per sample.

    With predicted probabilities :math:`p` and targets :math:`t`, summed over
    the spatial axes (all but the batch axis 0 and the class axis) for each
    sample and class,

    .. math::

        \ell_c = 1 - \frac{TP_c + s}{TP_c + \alpha\, FP_c + \beta\, FN_c + s},
        \quad TP = \textstyle\sum p\,t,\ FP = \sum p\,(1 - t),\ FN = \sum (1 - p)\,t,

    and the loss of a sample is the mean of :math:`\ell_c` over the classes.
    :math:`\alpha = \beta = 1/2` is the Dice loss, :math:`\alpha = \beta = 1`
    the Jaccard (IoU) loss.  The numbers are those of
    ``optax.losses.dice_loss`` on channels-last inputs.  It is computed as
    :math:`(\alpha FP + \beta FN) / (TP + \alpha FP + \beta FN + s)` from the
    sums :math:`TP`, :math:`\sum p` and :math:`\sum t`, as optax does: never
    negative, and exact to about the dtype's eps (a near-perfect prediction's
    loss below that is rounded).  A class that is empty in targets and
    predictions has loss 0 also with ``smooth = 0``.

    Args:
        inputs (array): Logits (or probabilities without ``from_logits``),
            shape ``(N, ..., C, ...)`` with the batch first and the classes
            along ``axis``.
        targets (array): Class indices (an integer array with the shape of
            ``inputs`` minus ``axis``; with one class, 0 or 1 per element) or
            per-class probabilities (the shape of ``inputs``).
        alpha (float, optional): Weight of the false positives, ``>= 0``. Default: ``0.5``.
        beta (float, optional): Weight of the false negatives, ``>= 0``. Default: ``0.5``.
        smooth (float, optional): Added to numerator and denominator, ``>= 0``. Default: ``1.0``.
        axis (int, optional): The class axis, not the batch axis 0: ``-1``
            for channels-last, ``1`` for PyTorch's ``(N, C, H, W)``. Default: ``-1``.
        from_logits (bool, optional): Whether ``inputs`` are logits: softmax
            over the classes, or the sigmoid when there is one class. Default: ``True``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'`` over
            the samples. Default: ``'none'``.

    Returns:
        array: The loss, shape ``(N,)`` for ``'none'``, a 0-d array otherwise.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> logits = np.array([[[2.0, -1.0], [0.0, 1.0], [-1.0, 3.0]]], dtype=np.float32)
        >>> anyloss.dice_loss(logits, np.array([[0, 1, 1]]))  # (N, H, C) and (N, H)
        array([0.06845436], dtype=float32)
    """
    func = "dice_loss"
    xp = namespace(func, inputs=inputs, targets=targets)
    check_reduction(func, reduction)
    a = check_real(func, "alpha", alpha, low=0.0)
    b = check_real(func, "beta", beta, low=0.0)
    s = check_real(func, "smooth", smooth, low=0.0)
    if inputs.ndim < 2:
        raise ValueError(
            f"{func}: inputs must have a batch axis and a class axis, got shape {shape_of(inputs)}; "
            f"for one sample use shape (1, ..., C)"
        )
    ax = normalize_axis(func, axis, inputs.ndim)
    if ax == 0:
        raise ValueError(
            f"{func}: axis={axis} is the batch axis 0; the class axis is another one "
            f"(-1 for channels-last, 1 for (N, C, H, W))"
        )
    classes = shape_of(inputs)[ax]
    probabilities = targets.ndim == inputs.ndim
    expected = drop_axis(shape_of(inputs), ax)
    if shape_of(targets) not in (expected, shape_of(inputs)):
        raise ValueError(
            f"{func}: targets has shape {shape_of(targets)}, but inputs has shape "
            f"{shape_of(inputs)}; expected class indices of shape {expected} or "
            f"probabilities of shape {shape_of(inputs)}"
        )
    if not from_logits:
        check_unit_interval(xp, func, "inputs", inputs, "pass logits with from_logits=True")
    soft = probabilities or (classes == 1 and xp.isdtype(targets.dtype, "real floating"))
    guard = False
    if soft:
        check_unit_interval(xp, func, "targets", targets, "pass class indices as an integer array")
    else:
        guard = check_class_indices(xp, func, targets, classes, high=1 if classes == 1 else None)
    out_dtype, dtype = float_dtypes(xp, func, inputs=inputs, targets=targets if soft else None)
    return _native.call(
        xp, func, (ax, a, b, s, bool(from_logits), probabilities, guard), reduction, out_dtype, dtype,
        False, inputs, targets,
    )

"""Losses over classes and probabilities: cross_entropy, binary_cross_entropy,
nll_loss, kl_div_loss and hinge_loss."""

from __future__ import annotations

import numbers
from typing import Any, Optional

from . import _native
from ._common import (
    Reduction,
    check_integer,
    check_real,
    check_reduction,
    check_same_shape,
    check_weights,
    checked,
    checked_before,
    drop_axis,
    epsilon,
    float_dtypes,
    is_real_floating,
    largest,
    namespace,
    normalize_axis,
    prepare,
    remember_checked,
    shape_of,
    smallest,
    value_range,
    values_known,
)

Array = Any


def _check_class_indices(
    xp: Any, func: str, targets: Array, num_classes: int, ignore_index: Optional[int] = None
) -> bool:
    """Check the class indices' dtype, and their range (``ignore_index``
    aside) where the values can be read or the fast path reads them; whether
    the formula must guard them."""
    check_integer(xp, func, "targets", targets)
    if _native.checks_class_indices(xp, targets):
        return False
    if not values_known(xp, targets):
        return True
    lo, hi = value_range(xp, targets, exclude=ignore_index)
    if lo < 0 or hi >= num_classes:
        but = "" if ignore_index is None else f" (besides ignore_index={ignore_index})"
        raise ValueError(
            f"{func}: targets holds class indices from {int(lo)} to {int(hi)}{but}, but the "
            f"class axis has {num_classes} entries; expected 0 <= index < {num_classes}"
        )
    return False


def _check_training_options(
    xp: Any, func: str, class_weights: Any, ignore_index: Any, num_classes: int, probabilities: bool
) -> None:
    """``class_weights``: one non-negative weight per class; ``ignore_index``:
    an int, for class-index targets only."""
    if class_weights is not None and shape_of(class_weights) != (num_classes,):
        raise ValueError(
            f"{func}: class_weights has shape {shape_of(class_weights)}, but the class axis "
            f"has {num_classes} entries; expected one weight per class, shape ({num_classes},)"
        )
    if ignore_index is not None:
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
            raise TypeError(
                f"{func}: ignore_index must be an int, got {type(ignore_index).__name__} "
                f"{ignore_index!r}"
            )
        if probabilities:
            raise ValueError(
                f"{func}: ignore_index applies to class-index targets, but targets holds "
                f"probabilities (the shape of logits); give ignored rows zero weight instead"
            )


def _check_class_weight_values(xp: Any, func: str, class_weights: Any) -> None:
    """Class weights (if given) are non-negative (read on the host, once per tensor)."""
    if class_weights is not None and values_known(xp, class_weights) and not checked_before(class_weights):
        if smallest(xp, class_weights) < 0:
            raise ValueError(
                f"{func}: class_weights must be >= 0, but its smallest value is "
                f"{smallest(xp, class_weights):g}"
            )
        remember_checked(class_weights)


def _check_z_and_softcap(func: str, z_loss: Any, logit_softcap: Any) -> tuple[float, Any]:
    """``z_loss >= 0`` and ``logit_softcap`` None or positive, as numbers."""
    z = check_real(func, "z_loss", z_loss, low=0.0)
    if logit_softcap is None:
        return z, None
    return z, check_real(func, "logit_softcap", logit_softcap, low=0.0, low_inclusive=False)


def _of_log_softmax(x: Array) -> bool:
    """Whether ``x`` is the output of torch's log_softmax (its autograd
    node says so; an in-place change replaces the node)."""
    node = getattr(x, "grad_fn", None)
    return node is not None and type(node).__name__ == "LogSoftmaxBackward0"


def _check_log_probabilities(xp: Any, func: str, name: str, x: Array, fix: str) -> None:
    """Log-probabilities are at most 0 (up to rounding); positive values mean
    probabilities or logits were passed.  Read where the values are on the host."""
    if values_known(xp, x) and is_real_floating(xp, x) and not _of_log_softmax(x):
        # The first 1024 values show probabilities or logits passed by
        # mistake as surely as all of them, at the cost of nll_loss itself.
        hi = largest(xp, x, sample=1024)
        if hi > 64 * epsilon(xp, x.dtype):
            raise ValueError(
                f"{func}: {name} must be log-probabilities (at most 0), but it holds values up "
                f"to {hi:g}; {fix}"
            )


def _cross_entropy_verdict(
    func, logits, targets, weights, axis, label_smoothing, reduction, class_weights, ignore_index, z_loss,
    logit_softcap,
):
    """cross_entropy's checks of everything but values: the namespace, the
    parameters as numbers, the class axis, the target kind, the dtypes."""
    xp = namespace(func, logits=logits, targets=targets, weights=weights, class_weights=class_weights)
    check_reduction(func, reduction)
    smoothing = check_real(
        func, "label_smoothing", label_smoothing, low=0.0, high=1.0, high_inclusive=False, array_ok=True
    )
    z, softcap = _check_z_and_softcap(func, z_loss, logit_softcap)
    if logits.ndim == 0:
        raise ValueError(f"{func}: logits must have a class axis, got a 0-d array")
    ax = normalize_axis(func, axis, logits.ndim)
    probabilities = targets.ndim == logits.ndim
    shape = shape_of(logits)
    rows = drop_axis(shape, ax)
    if shape_of(targets) != (shape if probabilities else rows):
        raise ValueError(
            f"{func}: targets has shape {shape_of(targets)}, but logits has shape "
            f"{shape}; expected class indices of shape {rows} or probabilities of shape {shape}"
        )
    check_weights(func, weights, rows)
    classes = shape[ax]
    _check_training_options(xp, func, class_weights, ignore_index, classes, probabilities)
    out_dtype, dtype = float_dtypes(
        xp, func, logits=logits, targets=targets if probabilities else None, weights=weights,
        class_weights=class_weights,
    )
    return xp, ax, smoothing, probabilities, softcap, z, classes, out_dtype, dtype


def cross_entropy(
    logits: Array,
    targets: Array,
    weights: Optional[Array] = None,
    axis: int = -1,
    label_smoothing: float = 0.0,
    reduction: Reduction = "none",
    *,
    class_weights: Optional[Array] = None,
    ignore_index: Optional[int] = None,
    z_loss: float = 0.0,
    logit_softcap: Optional[float] = None,
) -> Array:
    r"""Cross entropy between unnormalized ``logits`` and class ``targets``.

    With class indices :math:`y` or class probabilities :math:`p` along ``axis``,

    .. math::

        \ell = \operatorname{logsumexp}(x) - s, \qquad
        s = x_y \ \text{ or } \ s = \textstyle\sum_c p_c\, x_c .

    With label smoothing :math:`\alpha` the loss is
    :math:`\operatorname{logsumexp}(x) - (1-\alpha)\, s - \alpha\, \operatorname{mean}_c(x_c)`.

    Args:
        logits (array): Unnormalized scores, shape ``(..., C, ...)`` with the
            classes along ``axis``.
        targets (array): Either class indices (an integer array with the shape of
            ``logits`` minus ``axis``) or class probabilities (the shape of
            ``logits``; zero entries contribute exactly zero, even against a
            ``-inf`` logit).  Probability targets are taken to sum to one.
        weights (array, optional): A weight per example, with the shape of the
            unreduced loss; it multiplies the loss.  Default: ``None``.
        axis (int, optional): The class axis. Default: ``-1``.
        label_smoothing (float or 0-d array, optional): :math:`\alpha` in ``[0, 1)``;
            an array may be traced (checked only where its value is on the host). Default: ``0.0``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.
        class_weights (array, optional): One weight per class, shape ``(C,)``, as
            PyTorch's ``weight``: row :math:`n` counts :math:`w_{y_n}` times (with
            label smoothing, PyTorch's formula: the smoothing term weighs every
            class by its weight; with probabilities
            :math:`-\sum_c w_c t'_c \log p_c`).  Keyword only. Default: ``None``.
        ignore_index (int, optional): Rows whose class index equals it give 0
            and no gradient (padding tokens); class-index targets only.
            Keyword only. Default: ``None``.
        z_loss (float, optional): Adds ``z_loss * logsumexp(logits)**2`` per
            row kept (PaLM's auxiliary loss, e.g. ``1e-4``). Keyword only.
            Default: ``0.0``.
        logit_softcap (float, optional): Replaces the logits by
            ``c * tanh(logits / c)`` first (Gemma 2 uses 30). Keyword only.
            Default: ``None``.

    With ``class_weights`` or ``ignore_index``, ``'mean'`` divides the sum by
    the total class weight of the rows kept (PyTorch's mean; per-example
    ``weights`` scale the sum only), and a mean over no row is 0 with a zero
    gradient (PyTorch: NaN).  Otherwise ``'mean'`` is MLX's plain mean.

    Returns:
        array: The loss, shape of ``logits`` without ``axis`` for ``'none'``, a
        0-d array otherwise; dtype of ``logits`` (promoted with float targets
        and weights).

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> logits = np.array([[2.0, -1.0], [-1.0, 2.0]], dtype=np.float32)
        >>> anyloss.cross_entropy(logits, np.array([0, 1]))
        array([0.04858735, 0.04858735], dtype=float32)
        >>> probs = np.array([[0.9, 0.1], [0.1, 0.9]], dtype=np.float32)
        >>> anyloss.cross_entropy(logits, probs)
        array([0.34858736, 0.34858736], dtype=float32)
    """
    func = "cross_entropy"
    xp, ax, smoothing, probabilities, softcap, z, classes, out_dtype, dtype = checked(
        func, (logits, targets, weights, class_weights),
        (axis, label_smoothing, reduction, ignore_index, z_loss, logit_softcap),
        _cross_entropy_verdict, logits, targets, weights, axis, label_smoothing, reduction, class_weights,
        ignore_index, z_loss, logit_softcap,
    )
    _check_class_weight_values(xp, func, class_weights)
    guard = not probabilities and _check_class_indices(xp, func, targets, classes, ignore_index)
    params = (ax, smoothing, probabilities, guard, softcap, z, ignore_index)
    return _native.call(
        xp, func, params, reduction, out_dtype, dtype, weights is not None,
        logits, targets, class_weights, *(() if weights is None else (weights,)),
    )


def _bce_verdict(func, inputs, targets, weights, reduction, pos_weight):
    """binary_cross_entropy's checks of everything but values (see ``_cross_entropy_verdict``)."""
    xp = namespace(func, inputs=inputs, targets=targets, weights=weights, pos_weight=pos_weight)
    check_reduction(func, reduction)
    check_same_shape(func, inputs=inputs, targets=targets)
    check_weights(func, weights, shape_of(inputs))
    if pos_weight is not None:
        last = shape_of(inputs)[-1:]
        if shape_of(pos_weight) not in ((), last):
            raise ValueError(
                f"{func}: pos_weight has shape {shape_of(pos_weight)}, but inputs has shape "
                f"{shape_of(inputs)}; expected {last} (one weight per class of the last axis) or ()"
            )
    out_dtype, dtype = float_dtypes(
        xp, func, inputs=inputs, targets=targets, weights=weights, pos_weight=pos_weight
    )
    return xp, out_dtype, dtype


def binary_cross_entropy(
    inputs: Array,
    targets: Array,
    weights: Optional[Array] = None,
    with_logits: bool = True,
    reduction: Reduction = "mean",
    *,
    pos_weight: Optional[Array] = None,
) -> Array:
    r"""Binary cross entropy between predictions and targets in ``[0, 1]``.

    .. math::

        \ell = -\big(t \log p + (1 - t) \log(1 - p)\big),
        \qquad p = \sigma(x) \text{ when } \texttt{with_logits}.

    With logits the loss is computed as
    :math:`(1-t)\,x + \log(1 + e^{-x})` for :math:`x \ge 0` and
    :math:`-t\,x + \log(1 + e^{x})` otherwise, which keeps tiny losses (a
    confident, correct prediction) instead of rounding them to zero; an
    infinite logit with the matching target (``inf`` with 1, ``-inf`` with 0)
    has loss 0.  With
    probabilities each logarithm is clipped below at ``-100``, as in MLX and
    PyTorch, and :math:`\log(1-p)` is computed as ``log1p(-p)``.

    Args:
        inputs (array): Logits when ``with_logits`` is ``True``, otherwise
            probabilities in ``[0, 1]``.
        targets (array): Target probabilities (usually 0 or 1), same shape as ``inputs``.
        weights (array, optional): Weights with the shape of ``inputs``; they
            multiply the loss. Default: ``None``.
        with_logits (bool, optional): Whether ``inputs`` are logits. Default: ``True``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``.
        pos_weight (array, optional): The weight of the positive term
            (:math:`-w\, t \log p`), as PyTorch's ``pos_weight``: shape ``(C,)``
            for inputs of shape ``(..., C)`` (broadcast along the last axis),
            or ``()``. Keyword only. Default: ``None``.

    Returns:
        array: The loss, shape of ``inputs`` for ``'none'``, a 0-d array otherwise.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> logits = np.array([0.105361, 0.223144, 1.20397, 0.916291], dtype=np.float32)
        >>> targets = np.array([0, 0, 1, 1])
        >>> anyloss.binary_cross_entropy(logits, targets)
        array(0.539245..., dtype=float32)
        >>> probs = np.array([0.1, 0.1, 0.4, 0.4], dtype=np.float32)
        >>> anyloss.binary_cross_entropy(probs, targets, with_logits=False)
        array(0.51082563, dtype=float32)
    """
    func = "binary_cross_entropy"
    xp, out_dtype, dtype = checked(
        func, (inputs, targets, weights, pos_weight), (reduction,),
        _bce_verdict, inputs, targets, weights, reduction, pos_weight,
    )
    if not with_logits and values_known(xp, inputs):
        lo, hi = value_range(xp, inputs, sample=True)
        if lo < 0 or hi > 1:
            raise ValueError(
                f"{func}: with_logits=False needs probabilities in [0, 1], but inputs holds "
                f"values from {lo:g} to {hi:g}; pass logits with with_logits=True"
            )
    if values_known(xp, targets):
        lo, hi = value_range(xp, targets, sample=True)
        if lo < 0 or hi > 1:
            raise ValueError(
                f"{func}: targets must be probabilities in [0, 1] (usually 0 or 1), but it holds "
                f"values from {lo:g} to {hi:g}; map class labels to 0 and 1 (for -1/1 labels: "
                f"(targets + 1) / 2)"
            )
    return _native.call(
        xp, func, (bool(with_logits),), reduction, out_dtype, dtype, weights is not None,
        inputs, targets, pos_weight, *(() if weights is None else (weights,)),
    )


def _nll_verdict(func, inputs, targets, axis, reduction, class_weights, ignore_index):
    """nll_loss's checks of everything but values (see ``_cross_entropy_verdict``)."""
    xp = namespace(func, inputs=inputs, targets=targets, class_weights=class_weights)
    check_reduction(func, reduction)
    ax = normalize_axis(func, axis, inputs.ndim)
    shape = shape_of(inputs)
    expected = drop_axis(shape, ax)
    if shape_of(targets) != expected:
        raise ValueError(
            f"{func}: targets has shape {shape_of(targets)}, but inputs has shape "
            f"{shape}; expected class indices of shape {expected}"
        )
    classes = shape[ax]
    _check_training_options(xp, func, class_weights, ignore_index, classes, False)
    out_dtype, dtype = float_dtypes(xp, func, inputs=inputs, class_weights=class_weights)
    return xp, ax, classes, out_dtype, dtype


def nll_loss(
    inputs: Array,
    targets: Array,
    axis: int = -1,
    reduction: Reduction = "none",
    *,
    class_weights: Optional[Array] = None,
    ignore_index: Optional[int] = None,
) -> Array:
    r"""Negative log likelihood of class ``targets`` under log-probabilities ``inputs``.

    .. math::

        \ell = -x_y

    Args:
        inputs (array): Log-probabilities, with the classes along ``axis``.
        targets (array): Integer class indices, the shape of ``inputs`` without ``axis``.
        axis (int, optional): The class axis. Default: ``-1``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.
        class_weights (array, optional): One weight per class, shape ``(C,)``:
            row :math:`n`'s loss is :math:`-w_{y_n} x_{y_n}`. Keyword only.
            Default: ``None``.
        ignore_index (int, optional): Rows whose class index equals it give 0
            and no gradient. Keyword only. Default: ``None``.

    With ``class_weights`` or ``ignore_index``, ``'mean'`` divides by the total
    class weight of the rows kept, as PyTorch; a mean over no row is 0.

    Returns:
        array: The loss, shape of ``inputs`` without ``axis`` for ``'none'``.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> log_probs = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]))
        >>> anyloss.nll_loss(log_probs, np.array([0, 1]))
        array([0.69314718, 0.22314355])
    """
    func = "nll_loss"
    xp, ax, classes, out_dtype, dtype = checked(
        func, (inputs, targets, class_weights), (axis, reduction, ignore_index),
        _nll_verdict, inputs, targets, axis, reduction, class_weights, ignore_index,
    )
    _check_class_weight_values(xp, func, class_weights)
    guard = _check_class_indices(xp, func, targets, classes, ignore_index)
    fix = "pass log_softmax(logits), or use cross_entropy on logits"
    if reduction == "none":
        _check_log_probabilities(xp, func, "inputs", inputs, fix)
    loss = _native.call(
        xp, func, (ax, guard, ignore_index), reduction, out_dtype, dtype, False,
        inputs, targets, class_weights,
    )
    # A reduced loss is a sum of -w x_y >= 0: below 0 it shows a positive
    # input (probabilities always give one), and the inputs are read.
    if reduction != "none" and values_known(xp, loss) and float(loss) < 0:
        _check_log_probabilities(xp, func, "inputs", inputs, fix)
    return loss


def _pair_verdict(func: str, inputs: Array, targets: Array, axis: Any, reduction: Any) -> tuple[Any, ...]:
    """The checks of two arrays of one shape with a class axis, as a verdict
    (see ``_cross_entropy_verdict``): namespace, axis and dtypes."""
    xp = namespace(func, inputs=inputs, targets=targets)
    check_reduction(func, reduction)
    check_same_shape(func, inputs=inputs, targets=targets)
    ax = normalize_axis(func, axis, inputs.ndim)
    return xp, ax, *float_dtypes(xp, func, inputs=inputs, targets=targets)


def kl_div_loss(
    inputs: Array, targets: Array, axis: int = -1, reduction: Reduction = "none"
) -> Array:
    r"""Kullback-Leibler divergence from the predicted to the target distribution.

    Both arguments are **log**-probabilities along ``axis``:

    .. math::

        \ell = \sum_c e^{t_c} (t_c - x_c)

    A class with target probability zero (``t = -inf``) contributes exactly
    zero, whatever its prediction.

    Args:
        inputs (array): Predicted log-probabilities.
        targets (array): Target log-probabilities, same shape as ``inputs``.
        axis (int, optional): The distribution axis. Default: ``-1``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        array: The loss, shape of ``inputs`` without ``axis`` for ``'none'``.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> p = np.log(np.array([[0.5, 0.5], [0.9, 0.1]]))
        >>> q = np.log(np.array([[0.5, 0.5], [0.5, 0.5]]))
        >>> anyloss.kl_div_loss(q, p)
        array([0.        , 0.36806421])
    """
    func = "kl_div_loss"
    xp, ax, out_dtype, dtype = checked(
        func, (inputs, targets), (axis, reduction), _pair_verdict, inputs, targets, axis, reduction
    )
    _check_log_probabilities(xp, func, "targets", targets, "pass log(probabilities)")
    return _native.call(xp, func, (ax,), reduction, out_dtype, dtype, False, inputs, targets)


def hinge_loss(inputs: Array, targets: Array, reduction: Reduction = "none") -> Array:
    r"""Hinge loss for targets in :math:`\{-1, 1\}`.

    .. math::

        \ell = \max(0,\ 1 - y\, x)

    Args:
        inputs (array): Predicted scores.
        targets (array): Targets, -1 or 1, same shape as ``inputs``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        array: The loss, shape of ``inputs`` for ``'none'``.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> anyloss.hinge_loss(np.array([0.5, -2.0, 3.0]), np.array([1, -1, -1]))
        array([0.5, 0. , 4. ])
    """
    func = "hinge_loss"
    xp, out_dtype, dtype = prepare(func, reduction, inputs=inputs, targets=targets)
    return _native.call(xp, func, (), reduction, out_dtype, dtype, False, inputs, targets)

"""Losses over classes and probabilities: cross_entropy, binary_cross_entropy,
nll_loss, kl_div_loss and hinge_loss."""

from __future__ import annotations

from typing import Any, Optional

from . import _native
from ._common import (
    at_least,
    Reduction,
    astype,
    check_integer,
    check_real,
    check_reduction,
    check_same_shape,
    check_weights,
    drop_axis,
    float_dtypes,
    gather,
    namespace,
    normalize_axis,
    reduce,
    shape_of,
    stop_gradient,
    value_range,
    values_known,
    xlogy_like,
)

Array = Any


def _check_class_indices(xp: Any, func: str, targets: Array, num_classes: int) -> None:
    check_integer(xp, func, "targets", targets)
    if values_known(xp, targets):
        lo, hi = value_range(xp, targets)
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"{func}: targets holds class indices from {int(lo)} to {int(hi)}, but the class "
                f"axis has {num_classes} entries; expected 0 <= index < {num_classes}"
            )


def _shifted_logsumexp(xp: Any, x: Any, axis: int) -> Any:
    """``logsumexp(x)`` along ``axis`` for ``x`` whose maximum is 0.

    The terms at the maximum contribute exactly 1 each, so the sum is written
    as ``1 + rest`` and its log as ``log1p(rest)``: a confident, correct
    prediction keeps its tiny loss instead of rounding ``log(1 + 1e-9)`` to 0.
    The gradient is unchanged (``exp(x) - 1`` at the maximum has slope 1).
    """
    at_max = astype(xp, x == 0, x.dtype)
    rest = xp.sum(xp.exp(x) - at_max, axis=axis) + (xp.sum(at_max, axis=axis) - 1.0)
    return xp.log1p(rest)


def cross_entropy(
    logits: Array,
    targets: Array,
    weights: Optional[Array] = None,
    axis: int = -1,
    label_smoothing: float = 0.0,
    reduction: Reduction = "none",
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
        label_smoothing (float, optional): :math:`\alpha` in ``[0, 1)``. Default: ``0.0``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

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
    xp = namespace(func, logits=logits, targets=targets, weights=weights)
    check_reduction(func, reduction)
    smoothing = check_real(func, "label_smoothing", label_smoothing, low=0.0, high=1.0, high_inclusive=False)
    if logits.ndim == 0:
        raise ValueError(f"{func}: logits must have a class axis, got a 0-d array")
    ax = normalize_axis(func, axis, logits.ndim)
    probabilities = targets.ndim == logits.ndim
    expected = shape_of(logits) if probabilities else drop_axis(shape_of(logits), ax)
    if shape_of(targets) != expected:
        raise ValueError(
            f"{func}: targets has shape {shape_of(targets)}, but logits has shape "
            f"{shape_of(logits)}; expected class indices of shape "
            f"{drop_axis(shape_of(logits), ax)} or probabilities of shape {shape_of(logits)}"
        )
    check_weights(func, weights, drop_axis(shape_of(logits), ax))
    if not probabilities:
        _check_class_indices(xp, func, targets, shape_of(logits)[ax])
    out_dtype, dtype = float_dtypes(
        xp, func, logits=logits, targets=targets if probabilities else None, weights=weights
    )

    fast = _native.dispatch(
        xp, func, logits, targets, weights, ax, smoothing, probabilities, reduction, out_dtype, dtype
    )
    if fast is not NotImplemented:
        return fast
    x = astype(xp, logits, dtype)
    x = x - stop_gradient(xp, xp.max(x, axis=ax, keepdims=True))
    logsumexp = _shifted_logsumexp(xp, x, ax)
    if probabilities:
        score = xp.sum(xlogy_like(xp, astype(xp, targets, dtype), x), axis=ax)
    else:
        score = gather(xp, x, targets, ax)
    # The mean as a sum of x / n: the sum of x itself may overflow.
    mean = xp.sum(x * (1.0 / x.shape[ax]), axis=ax) if smoothing > 0 else None
    return cross_entropy_from_parts(
        xp, logsumexp, score, mean, smoothing, weights, reduction, out_dtype, dtype
    )


def cross_entropy_from_parts(
    xp: Any, logsumexp: Any, score: Any, mean: Any, smoothing: float, weights: Any,
    reduction: str, out_dtype: Any, dtype: Any,
) -> Any:
    """The cross entropy from its per-row parts, all taken from the shifted
    logits ``z = x - max``: ``log(sum(exp(z)))``, the target's ``z`` (or the
    targets' weighted sum of ``z``) and, with label smoothing, the mean of
    ``z``; then weighted and reduced.  Shared by the portable code and the
    fast paths that compute the parts another way."""
    if smoothing > 0:
        loss = logsumexp - (1.0 - smoothing) * score - smoothing * mean
    else:
        loss = logsumexp - score
    if weights is not None:
        loss = loss * astype(xp, weights, dtype)
    return reduce(xp, loss, reduction, out_dtype)


def binary_cross_entropy(
    inputs: Array,
    targets: Array,
    weights: Optional[Array] = None,
    with_logits: bool = True,
    reduction: Reduction = "mean",
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
    xp = namespace(func, inputs=inputs, targets=targets, weights=weights)
    check_reduction(func, reduction)
    check_same_shape(func, inputs=inputs, targets=targets)
    check_weights(func, weights, shape_of(inputs))
    if not with_logits and values_known(xp, inputs):
        lo, hi = value_range(xp, inputs)
        if lo < 0 or hi > 1:
            raise ValueError(
                f"{func}: with_logits=False needs probabilities in [0, 1], but inputs holds "
                f"values from {lo:g} to {hi:g}; pass logits with with_logits=True"
            )
    out_dtype, dtype = float_dtypes(xp, func, inputs=inputs, targets=targets, weights=weights)
    x = astype(xp, inputs, dtype)
    t = astype(xp, targets, dtype)
    fast = _native.dispatch(xp, func, x, t, weights, with_logits, reduction, out_dtype)
    if fast is not NotImplemented:
        return fast

    if with_logits:
        positive = x >= 0
        # log(1 + exp(-|x|)), written so that its gradient is right at x = 0.
        softplus_neg_abs = xp.log1p(xp.exp(xp.where(positive, -x, x)))
        # (1 - t) x and -t x with 0 * x = 0, so that an infinite logit with the
        # matching target (x = inf, t = 1 or x = -inf, t = 0) has loss 0, not nan.
        loss = xlogy_like(xp, xp.where(positive, 1.0 - t, -t), x) + softplus_neg_abs
    else:
        # Each log is clipped at -100; the stand-ins keep the gradient finite at p = 0 or 1.
        has_log = x > 0
        log_p = xp.where(has_log, xp.log(xp.where(has_log, x, xp.ones_like(x))), -100.0)
        has_log1m = x < 1
        log_1mp = xp.where(has_log1m, xp.log1p(-xp.where(has_log1m, x, xp.zeros_like(x))), -100.0)
        loss = -(t * at_least(xp, log_p, -100.0) + (1.0 - t) * at_least(xp, log_1mp, -100.0))
    if weights is not None:
        loss = loss * astype(xp, weights, dtype)
    return reduce(xp, loss, reduction, out_dtype)


def nll_loss(
    inputs: Array, targets: Array, axis: int = -1, reduction: Reduction = "none"
) -> Array:
    r"""Negative log likelihood of class ``targets`` under log-probabilities ``inputs``.

    .. math::

        \ell = -x_y

    Args:
        inputs (array): Log-probabilities, with the classes along ``axis``.
        targets (array): Integer class indices, the shape of ``inputs`` without ``axis``.
        axis (int, optional): The class axis. Default: ``-1``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

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
    xp = namespace(func, inputs=inputs, targets=targets)
    check_reduction(func, reduction)
    ax = normalize_axis(func, axis, inputs.ndim)
    expected = drop_axis(shape_of(inputs), ax)
    if shape_of(targets) != expected:
        raise ValueError(
            f"{func}: targets has shape {shape_of(targets)}, but inputs has shape "
            f"{shape_of(inputs)}; expected class indices of shape {expected}"
        )
    _check_class_indices(xp, func, targets, shape_of(inputs)[ax])
    out_dtype, _ = float_dtypes(xp, func, inputs=inputs)
    fast = _native.dispatch(xp, func, inputs, targets, ax, reduction, out_dtype)
    if fast is not NotImplemented:
        return fast
    loss = -gather(xp, inputs, targets, ax)
    return reduce(xp, loss, reduction, out_dtype)


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
    xp = namespace(func, inputs=inputs, targets=targets)
    check_reduction(func, reduction)
    check_same_shape(func, inputs=inputs, targets=targets)
    ax = normalize_axis(func, axis, inputs.ndim)
    out_dtype, dtype = float_dtypes(xp, func, inputs=inputs, targets=targets)
    x = astype(xp, inputs, dtype)
    t = astype(xp, targets, dtype)
    fast = _native.dispatch(xp, func, x, t, ax, reduction, out_dtype)
    if fast is not NotImplemented:
        return fast
    loss = xp.sum(xlogy_like(xp, xp.exp(t), t - x), axis=ax)
    return reduce(xp, loss, reduction, out_dtype)


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
    xp = namespace(func, inputs=inputs, targets=targets)
    check_reduction(func, reduction)
    check_same_shape(func, inputs=inputs, targets=targets)
    out_dtype, dtype = float_dtypes(xp, func, inputs=inputs, targets=targets)
    x, t = astype(xp, inputs, dtype), astype(xp, targets, dtype)
    fast = _native.dispatch(xp, func, x, t, reduction, out_dtype)
    if fast is not NotImplemented:
        return fast
    loss = at_least(xp, 1.0 - x * t, 0.0)
    return reduce(xp, loss, reduction, out_dtype)

"""Losses between predicted and target values: l1_loss, mse_loss,
smooth_l1_loss, huber_loss, log_cosh_loss and gaussian_nll_loss."""

from __future__ import annotations

from typing import Any

from . import _native
from ._common import Reduction, check_real, prepare, smallest, values_known

Array = Any


def l1_loss(predictions: Array, targets: Array, reduction: Reduction = "mean") -> Array:
    r"""Mean absolute error.

    .. math::

        \ell = |x - y|

    Args:
        predictions (array): Predicted values.
        targets (array): Target values, same shape as ``predictions``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``.

    Returns:
        array: The loss, shape of ``predictions`` for ``'none'``, a 0-d array otherwise.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> anyloss.l1_loss(np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 3.0]))
        array(0.5)
    """
    xp, out_dtype, dtype = prepare("l1_loss", reduction, predictions=predictions, targets=targets)
    return _native.call(xp, "l1_loss", (), reduction, out_dtype, dtype, False, predictions, targets)


def mse_loss(predictions: Array, targets: Array, reduction: Reduction = "mean") -> Array:
    r"""Mean squared error.

    .. math::

        \ell = (x - y)^2

    Half-precision inputs are squared and summed in float32, so the mean of
    many float16 errors does not overflow.

    Args:
        predictions (array): Predicted values.
        targets (array): Target values, same shape as ``predictions``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``.

    Returns:
        array: The loss, shape of ``predictions`` for ``'none'``, a 0-d array otherwise.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> anyloss.mse_loss(np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 3.0]))
        array(0.41666667)
    """
    xp, out_dtype, dtype = prepare("mse_loss", reduction, predictions=predictions, targets=targets)
    return _native.call(xp, "mse_loss", (), reduction, out_dtype, dtype, False, predictions, targets)


def smooth_l1_loss(
    predictions: Array, targets: Array, beta: float = 1.0, reduction: Reduction = "mean"
) -> Array:
    r"""Smooth L1 loss: quadratic below ``beta``, linear above.

    .. math::

        \ell = \begin{cases}
            0.5\,(x - y)^2 / \beta, & |x - y| < \beta \\
            |x - y| - 0.5\,\beta, & \text{otherwise}
        \end{cases}

    With ``beta = 0`` it is the L1 loss.

    Args:
        predictions (array): Predicted values.
        targets (array): Target values, same shape as ``predictions``.
        beta (float or 0-d array, optional): The threshold, ``>= 0``. Default: ``1.0``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``.

    Returns:
        array: The loss, shape of ``predictions`` for ``'none'``, a 0-d array otherwise.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> anyloss.smooth_l1_loss(np.array([0.0, 0.0]), np.array([0.5, 3.0]), reduction="none")
        array([0.125, 2.5  ])
    """
    func = "smooth_l1_loss"
    b = check_real(func, "beta", beta, low=0.0, array_ok=True)
    xp, out_dtype, dtype = prepare(func, reduction, predictions=predictions, targets=targets)
    return _native.call(xp, func, (b,), reduction, out_dtype, dtype, False, predictions, targets)


def huber_loss(
    inputs: Array, targets: Array, delta: float = 1.0, reduction: Reduction = "none"
) -> Array:
    r"""Huber loss: quadratic within ``delta``, linear beyond.

    .. math::

        \ell_\delta(a) = \begin{cases}
            \tfrac12 a^2, & |a| \le \delta \\
            \delta\,(|a| - \tfrac12 \delta), & \text{otherwise}
        \end{cases}
        \qquad a = x - y

    Args:
        inputs (array): Predicted values.
        targets (array): Target values, same shape as ``inputs``.
        delta (float or 0-d array, optional): The threshold, ``> 0``. Default: ``1.0``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        array: The loss, shape of ``inputs`` for ``'none'``, a 0-d array otherwise.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> anyloss.huber_loss(np.array([0.0, 0.0]), np.array([0.5, 3.0]))
        array([0.125, 2.5  ])
    """
    func = "huber_loss"
    d = check_real(func, "delta", delta, low=0.0, low_inclusive=False, array_ok=True)
    xp, out_dtype, dtype = prepare(func, reduction, inputs=inputs, targets=targets)
    return _native.call(xp, func, (d,), reduction, out_dtype, dtype, False, inputs, targets)


def log_cosh_loss(inputs: Array, targets: Array, reduction: Reduction = "none") -> Array:
    r"""Log-cosh loss: about :math:`a^2/2` for small errors, :math:`|a| - \log 2` for large.

    .. math::

        \ell = \log\cosh(x - y)

    Computed as :math:`\log\big(1 + u^2 / (2 (1 + u))\big)` with
    :math:`u = e^{|a|} - 1` (``expm1``): no cancellation, so small errors keep
    their loss (``1e-4`` gives ``5e-9``, not 0); beyond :math:`|a| = 20` the
    loss is :math:`|a| - \log 2` and is continued linearly, so nothing overflows.

    Args:
        inputs (array): Predicted values.
        targets (array): Target values, same shape as ``inputs``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        array: The loss, shape of ``inputs`` for ``'none'``, a 0-d array otherwise.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> anyloss.log_cosh_loss(np.array([0.0, 0.0, 0.0]), np.array([1e-4, 1.0, 100.0]))
        array([4.99999999e-09, 4.33780830e-01, 9.93068528e+01])
    """
    xp, out_dtype, dtype = prepare("log_cosh_loss", reduction, inputs=inputs, targets=targets)
    return _native.call(xp, "log_cosh_loss", (), reduction, out_dtype, dtype, False, inputs, targets)


def gaussian_nll_loss(
    inputs: Array,
    targets: Array,
    vars: Array,
    full: bool = False,
    eps: float = 1e-6,
    reduction: Reduction = "mean",
) -> Array:
    r"""Negative log likelihood of ``targets`` under Gaussians with means
    ``inputs`` and variances ``vars``.

    .. math::

        \ell = \tfrac12\left(\log v + \frac{(x - y)^2}{v}\right)
        \;\big[+ \tfrac12 \log 2\pi \text{ if } \texttt{full}\big],
        \qquad v = \max(\text{vars}, \epsilon)

    Args:
        inputs (array): Predicted means.
        targets (array): Observed values, same shape as ``inputs``.
        vars (array): Predicted variances, ``>= 0``, same shape as ``inputs``.
        full (bool, optional): Add the constant :math:`\tfrac12\log 2\pi`. Default: ``False``.
        eps (float or 0-d array, optional): Lower bound on the variance, ``> 0``. Default: ``1e-6``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``.

    Returns:
        array: The loss, shape of ``inputs`` for ``'none'``, a 0-d array otherwise.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> mean, var = np.array([0.0, 1.0]), np.array([1.0, 4.0])
        >>> anyloss.gaussian_nll_loss(mean, np.array([1.0, 1.0]), var, reduction="none")
        array([0.5       , 0.69314718])
    """
    func = "gaussian_nll_loss"
    floor = check_real(func, "eps", eps, low=0.0, low_inclusive=False, array_ok=True)
    xp, out_dtype, dtype = prepare(func, reduction, inputs=inputs, targets=targets, vars=vars)
    if values_known(xp, vars):
        least = smallest(xp, vars)
        if least < 0:
            raise ValueError(f"{func}: vars must be >= 0, but its smallest value is {least:g}")
    return _native.call(
        xp, func, (bool(full), floor), reduction, out_dtype, dtype, False, inputs, targets, vars
    )

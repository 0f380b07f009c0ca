"""Losses for counts and for targets of many scales: poisson_nll_loss
(PyTorch's numbers), mape_loss and msle_loss (Keras's numbers)."""

from __future__ import annotations

from typing import Any

from . import _native
from ._common import Reduction, check_real, prepare, smallest, values_known

Array = Any


def _check_at_least_zero(xp: Any, func: str, name: str, x: Array, what: str, fix: str) -> None:
    """``x >= 0`` where the values are on the host (a sample: a bounded cost)."""
    if values_known(xp, x):
        lo = smallest(xp, x, sample=True)
        if lo < 0:
            raise ValueError(f"{func}: {name} must be {what} (>= 0), but it holds {lo:g}; {fix}")


def poisson_nll_loss(
    inputs: Array,
    targets: Array,
    log_input: bool = True,
    full: bool = False,
    eps: float = 1e-8,
    reduction: Reduction = "none",
) -> Array:
    r"""Negative log likelihood of counts ``targets`` under Poisson
    distributions with rates :math:`\lambda` given by ``inputs``.

    .. math::

        \ell = \begin{cases}
            e^{x} - t\,x, & \texttt{log_input} \ (x = \log\lambda) \\
            x - t \log(x + \epsilon), & \text{otherwise} \ (x = \lambda)
        \end{cases}

    ``full`` adds Stirling's approximation of :math:`\log t!`,
    :math:`t \log t - t + \tfrac12 \log(2\pi t)`, where :math:`t > 1` (0
    elsewhere).  PyTorch's ``F.poisson_nll_loss``, with :math:`0 \log 0 = 0`
    where PyTorch gives ``nan`` (a rate of 0 and a count of 0 have loss 0).

    Args:
        inputs (array): Log-rates when ``log_input`` is ``True``, otherwise
            rates (``>= 0``).
        targets (array): Observed counts (``>= 0``), same shape as ``inputs``.
        log_input (bool, optional): Whether ``inputs`` are log-rates. Default: ``True``.
        full (bool, optional): Add Stirling's term. Default: ``False``.
        eps (float, optional): Added to the rate inside the log when
            ``log_input`` is ``False``, ``>= 0``. Default: ``1e-8``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        array: The loss, shape of ``inputs`` for ``'none'``, a 0-d array otherwise.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> log_rate = np.array([0.0, 1.0, 2.0])
        >>> anyloss.poisson_nll_loss(log_rate, np.array([0.0, 2.0, 5.0]))
        array([ 1.        ,  0.71828183, -2.6109439 ])
    """
    func = "poisson_nll_loss"
    floor = check_real(func, "eps", eps, low=0.0)
    xp, out_dtype, dtype = prepare(func, reduction, inputs=inputs, targets=targets)
    _check_at_least_zero(xp, func, "targets", targets, "counts", "a Poisson loss needs counts")
    if not log_input:
        _check_at_least_zero(
            xp, func, "inputs", inputs, "rates", "pass log-rates with log_input=True"
        )
    return _native.call(
        xp, func, (bool(log_input), bool(full), floor), reduction, out_dtype, dtype, False,
        inputs, targets,
    )


def mape_loss(predictions: Array, targets: Array, reduction: Reduction = "mean") -> Array:
    r"""Mean absolute percentage error.

    .. math::

        \ell = 100\, \frac{|t - p|}{\max(|t|,\ 10^{-7})}

    Keras's ``mean_absolute_percentage_error`` (in percent; ``|t|`` floored
    at Keras's epsilon, so a zero target gives a large, finite loss).
    Keras's function also averages over the last axis; here ``'none'``
    keeps every element, and ``'mean'`` gives Keras's loss.

    Args:
        predictions (array): Predicted values.
        targets (array): Target values, same shape as ``predictions``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``.

    Returns:
        array: The loss, shape of ``predictions`` for ``'none'``, a 0-d array otherwise.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> anyloss.mape_loss(np.array([110.0, 45.0]), np.array([100.0, 50.0]), reduction="none")
        array([10., 10.])
    """
    xp, out_dtype, dtype = prepare("mape_loss", reduction, predictions=predictions, targets=targets)
    return _native.call(xp, "mape_loss", (), reduction, out_dtype, dtype, False, predictions, targets)


def msle_loss(predictions: Array, targets: Array, reduction: Reduction = "mean") -> Array:
    r"""Mean squared logarithmic error.

    .. math::

        \ell = \big(\log(1 + \max(p, 10^{-7})) - \log(1 + \max(t, 10^{-7}))\big)^2

    Keras's ``mean_squared_logarithmic_error`` (both arguments floored at
    Keras's epsilon, so negative values count as 0).  The difference of the
    logs is taken as one ``log1p`` of ``|a - b| / (1 + min(a, b))``: close
    values keep their small loss (PyTorch's fast path gives way to the
    difference of two ``log1p``; see the differences page).  Keras's
    function also averages over the last axis; here ``'none'`` keeps every
    element, and ``'mean'`` gives Keras's loss.

    Args:
        predictions (array): Predicted values.
        targets (array): Target values, same shape as ``predictions``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``.

    Returns:
        array: The loss, shape of ``predictions`` for ``'none'``, a 0-d array otherwise.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> anyloss.msle_loss(np.array([3.0, 99.0]), np.array([1.0, 9.0]), reduction="none")
        array([0.48045301, 5.30189811])
    """
    xp, out_dtype, dtype = prepare("msle_loss", reduction, predictions=predictions, targets=targets)
    return _native.call(xp, "msle_loss", (), reduction, out_dtype, dtype, False, predictions, targets)

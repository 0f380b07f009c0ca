"""Divergences between distributions given as log-probabilities: js_div_loss."""

from __future__ import annotations

from typing import Any

from . import _native
from ._common import Reduction, checked
from .classification import _check_log_probabilities, _pair_verdict

Array = Any


def js_div_loss(
    inputs: Array, targets: Array, axis: int = -1, reduction: Reduction = "none"
) -> Array:
    r"""Jensen-Shannon divergence between the predicted and the target distribution.

    Both arguments are **log**-probabilities along ``axis``, as in
    :func:`kl_div_loss`; with :math:`p = e^{x}`, :math:`q = e^{t}` and
    :math:`m = (p + q) / 2`,

    .. math::

        \ell = \tfrac12 \sum_c p_c \log\frac{p_c}{m_c} + \tfrac12 \sum_c q_c \log\frac{q_c}{m_c}

    Symmetric, between 0 (equal inputs, exactly) and :math:`\log 2`
    (disjoint supports), and finite where a class has probability zero in
    one distribution or both (``-inf``; :math:`0 \log 0 = 0`).  Each class's
    term is taken as :math:`(p + q)\,(\log 2 - H(\sigma(|x - t|)))`, with
    :math:`H` the binary entropy computed without cancellation, so close
    distributions keep their small divergence.

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
        >>> q = np.log(np.array([[0.5, 0.5], [0.1, 0.9]]))
        >>> anyloss.js_div_loss(p, q)
        array([0.        , 0.36806421])
        >>> anyloss.js_div_loss(np.array([0.0, -np.inf]), np.array([-np.inf, 0.0]))  # disjoint: log 2
        array(0.69314718)
    """
    func = "js_div_loss"
    xp, ax, out_dtype, dtype = checked(
        func, (inputs, targets), (axis, reduction), _pair_verdict, inputs, targets, axis, reduction
    )
    for name, x in (("inputs", inputs), ("targets", targets)):
        _check_log_probabilities(xp, func, name, x, "pass log(probabilities) or log_softmax(logits)")
    return _native.call(xp, func, (ax,), reduction, out_dtype, dtype, False, inputs, targets)

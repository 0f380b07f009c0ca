"""Losses over sequences: ctc_loss."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from . import _native
from ._common import (
    Reduction,
    check_integer,
    check_reduction,
    float_dtypes,
    namespace,
    shape_of,
    values_known,
)

Array = Any


def _host(x: Array) -> np.ndarray:
    """The values of a host array (see ``values_known``) as a NumPy view: the
    checks read a few small integer arrays, and NumPy reads them in a few
    microseconds where a library's own reductions take tens."""
    return x if type(x) is np.ndarray else np.from_dlpack(x)


def _check_lengths(xp: Any, func: str, name: str, lengths: Array, n: int, top: int, what: str) -> bool:
    """Lengths: shape ``(N,)``, an integer dtype, and values in ``[0, top]``
    where they can be read; whether they could not be read."""
    if shape_of(lengths) != (n,):
        raise ValueError(
            f"{func}: {name} has shape {shape_of(lengths)}; expected one length per "
            f"sequence, shape ({n},)"
        )
    if not xp.isdtype(lengths.dtype, "integral"):
        raise TypeError(f"{func}: {name} holds lengths and must have an integer dtype, got {lengths.dtype}")
    if not values_known(xp, lengths):
        return n > 0
    values = _host(lengths)
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi > top:
        raise ValueError(
            f"{func}: {name} holds lengths from {lo} to {hi}, but {what}; "
            f"expected 0 <= {name} <= {top}"
        )
    return False


def _check_labels(targets: Array, target_lengths: Array, func: str, classes: int, blank: int) -> None:
    """Within each target length: class indices in ``[0, classes)`` other than
    the blank; the error shows the first one that is not.  The padding past
    the lengths is not read."""
    labels, lengths = _host(targets), _host(target_lengths)
    inside = np.arange(labels.shape[1]) < lengths[:, None]
    wrong = inside & ((labels < 0) | (labels >= classes) | (labels == blank))
    if wrong.any():
        row, position = (int(i[0]) for i in np.nonzero(wrong))
        value = int(labels[row, position])
        why = (
            "the blank separates labels and is not one: remove it from the targets or choose "
            "another blank" if value == blank else
            f"logits has {classes} classes; expected 0 <= index < {classes}"
        )
        raise ValueError(
            f"{func}: targets holds {value} at [{row}, {position}], within target length "
            f"{int(lengths[row])}{' (the blank)' if value == blank else ''}, but {why}"
        )


def ctc_loss(
    logits: Array,
    targets: Array,
    input_lengths: Array,
    target_lengths: Array,
    blank: int = 0,
    reduction: Reduction = "mean",
    zero_infinity: bool = False,
) -> Array:
    r"""Connectionist temporal classification loss (Graves et al., 2006; PyTorch's numbers).

    The negative log-probability of the target sequence :math:`y` (length
    :math:`L`) under per-frame class probabilities :math:`p_t =
    \operatorname{softmax}(x_t)` over the first :math:`T_n` frames, summed
    over every alignment :math:`\pi` that collapses to :math:`y` (merge
    repeats, then drop blanks):

    .. math::

        \ell = -\log \sum_{\pi \in \mathcal{B}^{-1}(y)} \prod_{t=1}^{T_n} p_t(\pi_t).

    The sum runs as the forward recursion in log space over the labels with
    blanks between them; a target that no alignment reaches (it needs more
    frames than there are) has loss ``inf``, or 0 with ``zero_infinity``
    (then its gradient is 0, never NaN).  ``'mean'`` divides each loss by its
    target length (at least 1) before the mean over the batch, as PyTorch
    does.  ``log_softmax`` is taken inside, so log-probabilities pass
    unchanged.

    Args:
        logits (array): Unnormalized scores, shape ``(N, T, C)``: batch, frames,
            classes (the blank included).
        targets (array): Integer class indices, shape ``(N, S)``, each row
            padded past its target length (the padding is not read).
        input_lengths (array): Integer frames per sequence, shape ``(N,)``, at most ``T``.
        target_lengths (array): Integer labels per sequence, shape ``(N,)``,
            at most ``S``; 0 is an empty target.
        blank (int, optional): The blank's class index, in ``[0, C)``. Default: ``0``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``.
        zero_infinity (bool, optional): Whether infinite losses (and their
            gradients) are set to 0. Default: ``False``.

    Returns:
        array: The loss, shape ``(N,)`` for ``'none'``, a 0-d array otherwise;
        dtype of ``logits``.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> logits = np.log(np.array([[[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.1, 0.4]]]))
        >>> targets = np.array([[1, 2]])
        >>> anyloss.ctc_loss(logits, targets, np.array([3]), np.array([2]), reduction="none")
        array([1.19402247])
        >>> anyloss.ctc_loss(logits, targets, np.array([3]), np.array([1]), reduction="none")
        array([0.86750057])
    """
    func = "ctc_loss"
    xp = namespace(
        func, logits=logits, targets=targets, input_lengths=input_lengths,
        target_lengths=target_lengths,
    )
    check_reduction(func, reduction)
    if logits.ndim != 3:
        raise ValueError(
            f"{func}: logits must have shape (N, T, C) (batch, frames, classes), got shape "
            f"{shape_of(logits)}"
        )
    n, t, c = shape_of(logits)
    if targets.ndim != 2 or shape_of(targets)[0] != n:
        raise ValueError(
            f"{func}: targets has shape {shape_of(targets)}, but logits has shape "
            f"{shape_of(logits)}; expected padded class indices of shape ({n}, S)"
        )
    s = shape_of(targets)[1]
    check_integer(xp, func, "targets", targets)
    if isinstance(blank, bool) or not isinstance(blank, numbers.Integral):
        raise TypeError(f"{func}: blank must be an int, got {type(blank).__name__} {blank!r}")
    if not 0 <= blank < c:
        raise ValueError(
            f"{func}: blank={blank} is not a class of logits, which has {c} classes; "
            f"expected 0 <= blank < {c}"
        )
    if not isinstance(zero_infinity, (bool, numbers.Integral)):
        raise TypeError(f"{func}: zero_infinity must be a bool, got {type(zero_infinity).__name__}")
    unread = _check_lengths(
        xp, func, "input_lengths", input_lengths, n, t, f"logits has {t} frames (shape {shape_of(logits)})"
    )
    unread |= _check_lengths(
        xp, func, "target_lengths", target_lengths, n, s,
        f"targets has room for {s} labels (shape {shape_of(targets)})",
    )
    if values_known(xp, targets) and values_known(xp, target_lengths):
        _check_labels(targets, target_lengths, func, c, int(blank))
    else:
        unread |= n * s > 0
    out_dtype, dtype = float_dtypes(xp, func, logits=logits)
    params = (int(blank), bool(zero_infinity), reduction == "mean", bool(unread))
    return _native.call(
        xp, func, params, reduction, out_dtype, dtype, False,
        logits, targets, input_lengths, target_lengths,
    )

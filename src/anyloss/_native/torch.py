"""PyTorch: ``torch.nn.functional`` where its values meet our contract.

Every tensor is computed by PyTorch, on its device, by its autograd (reverse
and forward mode), under its thread settings.  A loss delegates to its
``F.*`` kernel where that kernel computes the same function; where the
kernel's plain form turns a finite answer into NaN on special inputs (an
infinite logit, a zero-probability class), the result is checked on the
host and recomputed by the portable formula only when it is not finite.
The checks read values only of CPU tensors outside ``torch.compile`` and
``torch.func``; elsewhere such a loss runs the portable formula.  Losses
without a matching kernel (log_cosh, gaussian_nll, hinge, cosine, triplet,
probability targets) run the portable formula in torch operations.  Under
``torch.compile`` everything runs the portable formula, which Inductor fuses.
What the delegation gives up (tiny losses rounded to 0 by ``log``) is listed
in the differences page.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .._common import reduce
from .._formulas import evaluate

# No class index equals it in practice: F.* ignores none of the targets.
_NO_IGNORE = -(2**63)
_wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", lambda t: False)
_compiling = torch.compiler.is_compiling


def _host(*tensors: Any) -> bool:
    """Whether the values of ``tensors`` may be read: CPU, outside torch.func."""
    return all(t.device.type == "cpu" and not _wrapped(t) for t in tensors)


def checks_class_indices(targets: Any) -> bool:
    return not _compiling() and targets.device.type == "cpu" and not _wrapped(targets)


def _cast(t: Any, dtype: Any) -> Any:
    return t if t.dtype == dtype else t.to(dtype)


def _out(loss: Any, out_dtype: Any) -> Any:
    return loss if loss.dtype == out_dtype else loss.to(out_dtype)


def _usable(loss: Any, zero_ok: bool = False) -> bool:
    """Whether the F.* ``loss`` may stand: finite and (unless ``zero_ok``) not
    exactly 0, read on the host.  Off the host nothing is read and it stands."""
    if not _host(loss) or loss.numel() == 0:
        return True
    if loss.ndim == 0:
        value = loss.item()
        return math.isfinite(value) and (zero_ok or value != 0)
    lo, hi = (v.item() for v in torch.aminmax(loss.detach()))
    return math.isfinite(lo) and math.isfinite(hi) and (zero_ok or lo != 0)


def _class_axis_first(x: Any, axis: int) -> Any:
    """``x`` with the class axis at position 1 (0 for a single example), as F.* wants it."""
    if x.ndim == 1 or axis == 1:
        return x
    return x.movedim(axis, 1)


def _range_error(func: str, targets: Any, classes: int) -> ValueError:
    lo, hi = (int(v) for v in torch.aminmax(targets.detach()))
    return ValueError(
        f"{func}: targets holds class indices from {lo} to {hi}, but the class axis has "
        f"{classes} entries; expected 0 <= index < {classes}"
    )


def _indexed(func: str, kernel: Any, x: Any, targets: Any, axis: int, **options: Any) -> Any:
    """``kernel`` (F.cross_entropy, F.nll_loss) over class indices; torch's own
    range check raises, and becomes our error."""
    try:
        return kernel(_class_axis_first(x, axis), targets.long(), ignore_index=_NO_IGNORE, **options)
    except (IndexError, RuntimeError):
        if checks_class_indices(targets) and targets.numel():
            lo, hi = torch.aminmax(targets.detach())
            if lo < 0 or hi >= x.shape[axis]:
                raise _range_error(func, targets, x.shape[axis]) from None
        raise


def _weighted_reduce(xp, loss, weights, reduction, out_dtype, dtype):
    return reduce(xp, loss * _cast(weights, dtype), reduction, out_dtype)


def _cross_entropy(xp, params, reduction, out_dtype, dtype, weighted, logits, targets, *weights):
    axis, smoothing, probabilities, _ = params
    if probabilities:
        return NotImplemented
    loss = _indexed("cross_entropy", F.cross_entropy, _cast(logits, dtype), targets, axis,
                    label_smoothing=smoothing, reduction="none" if weighted else reduction)
    # log(sum(exp)) rounds a confident row's tiny loss to 0; with smoothing the
    # sum of the logits may overflow.
    if not _usable(loss):
        return NotImplemented
    if weighted:
        return _weighted_reduce(xp, loss, weights[0], reduction, out_dtype, dtype)
    return _out(loss, out_dtype)


def _nll(xp, params, reduction, out_dtype, dtype, weighted, inputs, targets):
    axis, _ = params
    x = _cast(inputs, dtype)
    return _out(_indexed("nll_loss", F.nll_loss, x, targets, axis, reduction=reduction), out_dtype)


def _bce(xp, params, reduction, out_dtype, dtype, weighted, x, t, *weights):
    (with_logits,) = params
    if not with_logits:
        return NotImplemented
    loss = F.binary_cross_entropy_with_logits(
        _cast(x, dtype), _cast(t, dtype), reduction="none" if weighted else reduction
    )
    # log(1 + exp(-|x|)) rounds a confident prediction's tiny loss to 0, and
    # (1 - t) x is nan for an infinite logit with its matching target.
    if not _usable(loss):
        return NotImplemented
    if weighted:
        return _weighted_reduce(xp, loss, weights[0], reduction, out_dtype, dtype)
    return _out(loss, out_dtype)


def _kl_div(xp, params, reduction, out_dtype, dtype, weighted, x, t):
    (axis,) = params
    if not _host(x, t):
        return NotImplemented  # t = -inf is common (a zero-probability class)
    loss = F.kl_div(_cast(x, dtype), _cast(t, dtype), reduction="none", log_target=True).sum(axis)
    # exp(t) (t - x) is nan for t = -inf (0 log 0, which is 0).
    return reduce(xp, loss, reduction, out_dtype) if _usable(loss, zero_ok=True) else NotImplemented


def _elementwise(kernel: Any) -> Any:
    def fast(xp, params, reduction, out_dtype, dtype, weighted, *arrays):
        return _out(kernel(*(_cast(a, dtype) for a in arrays), *params, reduction=reduction), out_dtype)

    return fast


def _squares_fit(dtype: Any, value: float) -> bool:
    """Whether the squares F.* forms below ``value`` stay normal numbers."""
    info = torch.finfo(dtype)
    return math.sqrt(info.tiny) <= value <= math.sqrt(info.max) / 2


def _huber(xp, params, reduction, out_dtype, dtype, weighted, x, y):
    (delta,) = params
    if not _squares_fit(dtype, delta):
        return NotImplemented
    return _out(F.huber_loss(_cast(x, dtype), _cast(y, dtype), reduction=reduction, delta=delta), out_dtype)


def _smooth_l1(xp, params, reduction, out_dtype, dtype, weighted, x, y):
    (beta,) = params
    if beta == 0:
        return _out(F.l1_loss(_cast(x, dtype), _cast(y, dtype), reduction=reduction), out_dtype)
    if not _squares_fit(dtype, beta):
        return NotImplemented
    return _out(F.smooth_l1_loss(_cast(x, dtype), _cast(y, dtype), reduction=reduction, beta=beta), out_dtype)


_FAST = {
    "binary_cross_entropy": _bce,
    "cross_entropy": _cross_entropy,
    "huber_loss": _huber,
    "kl_div_loss": _kl_div,
    "l1_loss": _elementwise(F.l1_loss),
    "margin_ranking_loss": _elementwise(F.margin_ranking_loss),
    "mse_loss": _elementwise(F.mse_loss),
    "nll_loss": _nll,
    "smooth_l1_loss": _smooth_l1,
}


def run(xp, name, params, reduction, out_dtype, dtype, weighted, *arrays):
    fast = _FAST.get(name)
    if fast is not None and not _compiling():
        result = fast(xp, params, reduction, out_dtype, dtype, weighted, *arrays)
        if result is not NotImplemented:
            return result
    return evaluate(xp, name, params, reduction, out_dtype, dtype, weighted, *arrays)

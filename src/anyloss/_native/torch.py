"""PyTorch: torch's own kernels where their values meet our contract.

Every tensor is computed by PyTorch, on its device, by its autograd (reverse
and forward mode), under its thread settings.  A loss runs the kernel behind
its ``F.*`` function (``torch._C._nn.mse_loss`` for ``F.mse_loss``: the same
kernel without the Python wrapper, whose broadcasting and argument checks the
front door has done) where that kernel computes our function; the others run
a form of their formula from ``_formulas`` in a few fused torch operations
(``vector_norm``, ``hypot``, ``addcmul``, ``logsumexp``).

Where a kernel or a plain form is wrong only on special inputs (an infinite
logit, a zero-probability class, a huge or tiny vector, an error beyond 20
for log_cosh, a probability of exactly 0 or 1), the values are read on the
host -- CPU tensors outside ``torch.func`` -- and the portable formula runs
when they call for it.  Off the host nothing is read: the kernels whose
special cases are rare and documented (cross_entropy with class indices,
binary_cross_entropy with logits) stand, and the others run the portable
formula.  Under ``torch.compile`` everything runs the portable formula, which
Inductor fuses.  What the delegation gives up is listed in the differences
page.
"""

from __future__ import annotations

import math
import types
from typing import Any

import array_api_compat.torch as _compat_torch
import torch
import torch.autograd.forward_ad as _forward_ad

from .._formulas import (
    DOUBLE_LOG_COSH_LIMIT, FORMULAS, _cosine_pair_terms, cosine_by_norms, cosine_logits_by_norms,
    double_log_cosh,
    evaluate, exact_sums_floor, gaussian_nll_loss, js_div_loss, js_div_select, js_div_slopes, msle_logs,
    ntxent_of_logits, poly1_of_ce,
    sigmoid_focal_by_softplus, softmax_focal_of_ce, triplet_by_norms,
)

_nn = torch._C._nn
_linalg = torch._C._linalg
_ENUM = {"none": 0, "mean": 1, "sum": 2}
# No class index equals it in practice: the kernels ignore none of the targets.
_NO_IGNORE = -(2**63)
_wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", lambda t: False)
_compiling = torch.compiler.is_compiling


def _hypot(x: Any, y: Any) -> Any:
    return torch.hypot(x, y if isinstance(y, torch.Tensor) else _constant(y, x))


# The standard's functions that the forms of ``_formulas`` use, as torch's own
# kernels: array-api-compat's wrappers of vecdot, vector_norm and hypot cost
# 1-8 us a call, a whole batch's loss.
_XP = types.ModuleType("array_api_compat.torch")
_XP.__getattr__ = lambda name: getattr(_compat_torch, name)  # the others: array-api-compat's
_XP.hypot = _hypot
# (torch's sign of NaN is 0, array-api-compat's NaN by a masked write, which
# torch.func.vmap cannot batch; the forms that use it carry NaN otherwise)
_XP.sign = torch.sign
# (array-api-compat's where first promotes its operands: ours share a dtype)
_XP.where = torch.where
_XP.linalg = types.SimpleNamespace(
    vector_norm=lambda x, axis=None, keepdims=False, ord=2: _linalg.linalg_vector_norm(x, ord, axis, keepdims),
    vecdot=lambda a, b, axis=-1: _linalg.linalg_vecdot(a, b, dim=axis),
)


def _host(t: Any) -> bool:
    """Whether the values of ``t`` may be read: a CPU tensor outside torch.func."""
    return t.is_cpu and not _wrapped(t)


def _differentiated(*tensors: Any) -> bool:
    """Whether a gradient of ``tensors`` may be taken: one requires grad, or
    a forward-mode level is open.  Some plain forms are exact in value
    everywhere but in gradient only where a host check says so."""
    if _forward_ad._current_level >= 0:
        return True
    if torch.is_grad_enabled():
        for t in tensors:
            if t.requires_grad:
                return True
    return False


def checks_class_indices(targets: Any) -> bool:
    return not _compiling() and _host(targets)


def _to(t: Any, dtype: Any) -> Any:
    return t if t.dtype is dtype else t.to(dtype)


def _reduce(loss: Any, reduction: str, scale: float = 1.0) -> Any:
    """``scale`` times the reduced ``loss``; the mean as the sum times ``1 / n``
    (a cached constant: a Python number costs a tensor per call)."""
    if reduction == "mean":
        n = loss.numel()
        if n:
            return loss.sum() * _constant(scale / n, loss)
        total = loss.mean()  # nan, as the portable mean of nothing
    elif reduction == "sum":
        total = loss.sum()
    else:
        total = loss
    return total if scale == 1.0 else total * _constant(scale, total)


def _stands(loss: Any, zero_ok: bool = False) -> bool:
    """Whether a kernel's ``loss`` may stand: finite and (unless ``zero_ok``)
    not exactly 0, read on the host.  Off the host nothing is read."""
    if not _host(loss):
        return True
    if loss.ndim == 0:
        value = loss.item()
        return math.isfinite(value) and (zero_ok or value != 0)
    if loss.numel() == 0:
        return True
    lo, hi = torch.aminmax(loss.detach())
    lo, hi = lo.item(), hi.item()
    return math.isfinite(lo) and math.isfinite(hi) and (zero_ok or lo != 0)


# 0-d constants by dtype, then value (on the CPU) or (value, device); cleared
# when one grows large (a mean over many different sizes).
_CONSTANTS: dict[Any, dict[Any, Any]] = {}


def _constant(value: float, like: Any) -> Any:
    """``value`` as a 0-d tensor of ``like``'s dtype and device: an operand
    that costs less than a Python number, which becomes a tensor per call."""
    try:
        cache = _CONSTANTS[like.dtype]
    except KeyError:
        cache = _CONSTANTS[like.dtype] = {}
    key = value if like.is_cpu else (value, like.device)
    try:
        return cache[key]
    except KeyError:
        if len(cache) > 4096:
            cache.clear()
        with torch.inference_mode(False):  # an inference tensor cannot be saved for backward
            c = cache[key] = torch.tensor(value, dtype=like.dtype, device=like.device)
        return c


# dtype -> (sqrt of the least exact sum of squares per element, sqrt of the largest float)
_NORM_BOUNDS: dict[Any, tuple[float, float]] = {}


def _norm_bounds(dtype: Any, n: int) -> tuple[float, float]:
    """Norms ``sqrt(sum of n squares)`` within these bounds are exact to an ulp."""
    try:
        per_element, high = _NORM_BOUNDS[dtype]
    except KeyError:
        per_element = exact_sums_floor(torch, dtype, 1)
        high = math.sqrt(torch.finfo(dtype).max)
        _NORM_BOUNDS[dtype] = per_element, high
    return math.sqrt(per_element * max(n, 1)), high


# ---------------------------------------------------------------- classification


def _class_axis_first(x: Any, axis: int) -> Any:
    """``x`` with the class axis at position 1 (0 for a single example), as the kernels want it."""
    if x.ndim == 1 or axis == 1:
        return x
    return x.movedim(axis, 1)


def _check_range(func: str, targets: Any, classes: int, ignore: Any = None) -> None:
    """Our error where a class index (besides ``ignore``) is outside
    ``[0, classes)``: one ``aminmax`` of the host tensor."""
    t = targets.detach()
    but = ""
    if ignore is not None:
        t = t.masked_fill(t == ignore, 0)
        but = f" (besides ignore_index={ignore})"
    lo, hi = (int(v) for v in torch.aminmax(t))
    if lo < 0 or hi >= classes:
        raise ValueError(
            f"{func}: targets holds class indices from {lo} to {hi}{but}, but the class axis has "
            f"{classes} entries; expected 0 <= index < {classes}"
        )


def _indexed(func: str, kernel: Any, x: Any, targets: Any, axis: int, guard: bool,
             reduction: str, class_weights: Any, ignore: Any, *options: Any) -> Any:
    """``kernel`` (cross entropy, nll) of ``x`` at class indices ``targets``,
    with torch's ``weight`` and ``ignore_index``.

    On the host torch's own range check raises, and becomes our error.  With
    ``guard`` (indices that could not be read) an index out of range gives
    NaN, as the portable formula does, and is never read out of bounds.
    'mean' with class weights or ignore_index is torch's (the sum over the
    kept rows' total weight), NaN over no row: the caller checks it.
    """
    if targets.dtype is not torch.int64:
        targets = targets.long()  # uint8 passes, but label smoothing reads it as a mask
    x = _class_axis_first(x, axis)
    ignore_index = _NO_IGNORE if ignore is None else ignore
    if guard:
        classes = x.shape[0 if x.ndim == 1 else 1]
        valid = (targets >= 0) & (targets < classes)
        if ignore is not None:
            valid = valid | (targets == ignore)
        safe = torch.where(valid, targets, torch.zeros_like(targets))
        loss = kernel(x, safe, class_weights, 0, ignore_index, *options)
        return _reduce(torch.where(valid, loss, torch.full_like(loss, math.nan)), reduction)
    try:
        return kernel(x, targets, class_weights, _ENUM[reduction], ignore_index, *options)
    except (IndexError, RuntimeError):
        if _host(targets) and targets.numel():
            try:
                _check_range(func, targets, x.shape[0 if x.ndim == 1 else 1], ignore)
            except ValueError as error:
                raise error from None
        raise


def _weighted(loss: Any, weights: Any, reduction: str, dtype: Any) -> Any:
    return _reduce(loss * _to(weights, dtype), reduction)


def _kernel_options(reduction, weighted, guard, class_weights, ignore, x, targets):
    """Whether torch's index kernels give our numbers for these training
    options: 'mean' over class weights or kept rows only where its NaN over
    no row can be seen (on the host, unweighted, unguarded); never for class
    weights that require grad."""
    if class_weights is None and ignore is None:
        return True
    if guard or (class_weights is not None and _differentiated(class_weights)):
        return False  # (torch's kernels take no gradient in the class weights)
    if reduction == "mean" and (weighted or not (_host(x) and _host(targets))):
        return False
    return True


def _cross_entropy(params, reduction, dtype, weighted, logits, targets, class_weights, *weights):
    axis, smoothing, probabilities, guard, softcap, z_loss, ignore = params
    if softcap is not None or z_loss:
        return None  # no kernel has them: the formula
    x = _to(logits, dtype)
    cw = None if class_weights is None else _to(class_weights, dtype)
    kernel_reduction = "none" if weighted else reduction
    if probabilities:
        # torch's kernel, -sum_c w_c t'_c log_softmax(x)_c (the mean over the
        # rows), is our formula with class weights; without them ours is
        # MLX's lse - sum_c t_c z_c, another value for targets that do not sum
        # to 1 (multi-hot), so the formula runs.  0 * -inf (a zero-probability
        # class at a -inf logit) is NaN: the kernel stands only where read on
        # the host (below).  Its derivative in the targets is -log_softmax(x),
        # ours -z: the formula runs for it.
        if cw is None or not (_host(x) and _host(targets)) or _differentiated(targets, cw):
            return None
        loss = _nn.cross_entropy_loss(
            _class_axis_first(x, axis), _class_axis_first(_to(targets, dtype), axis), cw,
            _ENUM[kernel_reduction], _NO_IGNORE, smoothing,
        )
        if not _stands(loss):
            return None
    else:
        if not _kernel_options(reduction, weighted, guard, cw, ignore, x, targets):
            return None
        if ignore is not None and not _host(x):
            # torch's gradient of a NaN logit in an ignored row is NaN; the
            # host reads the logits instead (below)
            keep = (targets != ignore).unsqueeze(axis)
            x = torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))
        loss = _indexed("cross_entropy", _nn.cross_entropy_loss, x, targets, axis, guard,
                        kernel_reduction, cw, ignore, smoothing)
        # log(sum(exp)) rounds a confident row's tiny loss to 0; an infinite logit,
        # or the sum of the logits under label smoothing, may make it nan or inf.
        if not _stands(_kept(loss, targets, ignore, cw)):
            return None
        if ignore is not None and _host(x) and _differentiated(x) and x.numel():
            if not math.isfinite(x.detach().sum().item()):
                return None
    return _weighted(loss, weights[0], reduction, dtype) if weighted else loss


def _kept(loss: Any, targets: Any, ignore: Any, class_weights: Any) -> Any:
    """The unreduced ``loss`` with 1 for the rows whose 0 stands (ignored,
    or of a class weighing 0), for :func:`_stands`."""
    if loss.ndim == 0 or (ignore is None and class_weights is None) or not _host(loss):
        return loss
    zero = None if ignore is None else targets == ignore
    if class_weights is not None:
        safe = targets.long() if zero is None else targets.long().masked_fill(zero, 0)
        weightless = class_weights[safe] == 0
        zero = weightless if zero is None else zero | weightless
    return loss.detach().masked_fill(zero, 1.0)


def _nll(params, reduction, dtype, weighted, inputs, targets, class_weights):
    axis, guard, ignore = params
    x = _to(inputs, dtype)
    cw = None if class_weights is None else _to(class_weights, dtype)
    if not _kernel_options(reduction, weighted, guard, cw, ignore, x, targets):
        return None
    loss = _indexed("nll_loss", _nn.nll_loss_nd, x, targets, axis, guard, reduction, cw, ignore)
    if reduction == "mean" and (cw is not None or ignore is not None):
        if not math.isfinite(loss.item()):
            return None  # a mean over no row: 0, by the formula
    return loss


def _ce_rows(func: str, x: Any, targets: Any, axis: int, guard: bool, dtype: Any) -> Any:
    """The unreduced cross entropy of class indices by torch's kernel (the
    range checked by it on the host, NaN out of range with ``guard``)."""
    return _indexed(func, _nn.cross_entropy_loss, _to(x, dtype), targets, axis, guard,
                    "none", None, None, 0.0)


def _softmax_focal(params, reduction, dtype, weighted, logits, targets, class_weights):
    """``_formulas.softmax_focal_of_ce`` of torch's cross entropy: a
    confident row's loss far below eps, which the kernel rounds to 0, gives
    0; an infinite logit (read on the host) runs the formula."""
    axis, gamma, guard = params
    ce = _ce_rows("softmax_focal_loss", logits, targets, axis, guard, dtype)
    cw = None if class_weights is None else _to(class_weights, dtype)
    loss = _reduce(softmax_focal_of_ce(_XP, ce, targets, cw, gamma, guard), reduction)
    return loss if _stands(loss, zero_ok=True) else None


def _poly1(params, reduction, dtype, weighted, logits, targets):
    """``_formulas.poly1_of_ce`` of torch's cross entropy, for class indices
    (see ``_softmax_focal``); probabilities run the formula."""
    axis, epsilon, probabilities, guard = params
    if probabilities:
        return None
    ce = _ce_rows("poly1_cross_entropy", logits, targets, axis, guard, dtype)
    loss = _reduce(poly1_of_ce(_XP, ce, epsilon), reduction)
    return loss if _stands(loss, zero_ok=True) else None


def _bce(params, reduction, dtype, weighted, x, t, pos_weight, *weights):
    (with_logits,) = params
    x, t = _to(x, dtype), _to(t, dtype)
    kernel_reduction = _ENUM["none" if weighted else reduction]
    if with_logits:
        pw = None if pos_weight is None else _to(pos_weight, dtype)
        loss = torch.binary_cross_entropy_with_logits(x, t, None, pw, kernel_reduction)
        # log1p(exp(-|x|)) rounds a confident prediction's tiny loss to 0, and
        # (1 - t) x is nan for an infinite logit with its matching target.
        if not _stands(loss):
            return None
    else:
        if pos_weight is not None:
            return None  # torch's binary_cross_entropy has no pos_weight
        # The kernel's values are ours; its gradient divides by max(p (1 - p),
        # 1e-12), ours by p (1 - p), with stand-ins at p = 0 and 1.
        if _differentiated(x, t):
            if not _host(x):
                return None
            if x.numel():
                lo, hi = _min_max(x)
                if not (_BCE_LOW <= lo and hi <= 1.0 - _BCE_LOW):
                    return None
        try:
            loss = _nn.binary_cross_entropy(x, t, None, kernel_reduction)
        except RuntimeError:  # a NaN probability, which the kernel refuses: it propagates
            return None
    return _weighted(loss, weights[0], reduction, dtype) if weighted else loss


# p (1 - p) >= 1e-12 where p lies in [_BCE_LOW, 1 - _BCE_LOW]
_BCE_LOW = 1.0000001e-12


def _min_max(x: Any) -> tuple[float, float]:
    lo, hi = torch.aminmax(x.detach())
    return lo.item(), hi.item()


def _kl_div(params, reduction, dtype, weighted, x, t):
    """``F.kl_div(log_target=True)``: ``exp(t) (t - x)`` summed over ``axis``,
    the mean over the other axes as the kernel's sum over their size."""
    (axis,) = params
    if not (_host(x) and _host(t)):
        return None  # t = -inf is common (a zero-probability class)
    x, t = _to(x, dtype), _to(t, dtype)
    if reduction == "none":
        loss = torch.kl_div(x, t, 0, log_target=True).sum(axis)
    else:
        loss = torch.kl_div(x, t, 2, log_target=True)
        if reduction == "mean":
            rows = math.prod(x.shape[:axis] + x.shape[axis + 1:])
            loss = loss * _constant(1.0 / rows, loss) if rows else loss / rows
    # exp(t) (t - x) is nan for t = -inf (0 log 0, which is 0).
    return loss if _stands(loss, zero_ok=True) else None


class _JSDiv(torch.autograd.Function):
    """``_formulas.js_div_select`` as one node whose derivatives are
    ``_formulas.js_div_slopes``: without the graph of its forms and its
    reverse pass (twice the operations)."""

    @staticmethod
    def forward(x, t, axis):
        return js_div_select(_XP, x, t, axis)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], inputs[1])
        ctx.axis = inputs[2]

    @staticmethod
    def backward(ctx, grad):
        x, t = ctx.saved_tensors
        dx, dt = js_div_slopes(_XP, x, t)
        grad = grad.unsqueeze(ctx.axis)
        return (dx * grad if ctx.needs_input_grad[0] else None,
                dt * grad if ctx.needs_input_grad[1] else None, None)


def _js_div(params, reduction, dtype, weighted, x, t):
    """``_JSDiv`` where a gradient is taken, ``_formulas.js_div_select``
    where none is, the formula under forward mode and torch.func."""
    (axis,) = params
    x, t = _to(x, dtype), _to(t, dtype)
    if _kernel_off(x, t):
        return _reduce(js_div_loss(_XP, x, t, axis), reduction)
    if _differentiated(x, t):
        return _reduce(_JSDiv.apply(x, t, axis), reduction)
    return _reduce(js_div_select(_XP, x, t, axis), reduction)


def _softplus(x: Any) -> Any:
    # threshold 40: beyond it log1p(e^x) is x to the last bit of a float64
    return _nn.softplus(x, 1, 40)


def _sigmoid_focal(params, reduction, dtype, weighted, x, t):
    """``_formulas.sigmoid_focal_by_softplus`` on torch's kernels (no select:
    a select costs torch several arithmetic passes), where it is finite (read
    on the host: NaN marks an infinite logit with its matching target);
    elsewhere the formula."""
    if not _host(x):
        return None
    loss = sigmoid_focal_by_softplus(_XP, _to(x, dtype), _to(t, dtype), *params, _softplus, torch.sigmoid)
    loss = _reduce(loss, reduction)
    return loss if _stands(loss, zero_ok=True) else None


def _formula(name: str) -> Any:
    """The loss ``name``'s formula from ``_formulas`` on torch's floating
    arrays in ``dtype``, reduced by :func:`_reduce` (no per-call dtype and
    reduction machinery of ``evaluate``)."""
    formula = FORMULAS[name]

    def fast(params, reduction, dtype, weighted, *arrays):
        return _reduce(formula(_XP, *[_to(a, dtype) for a in arrays], *params), reduction)

    return fast


# -------------------------------------------------------------------- regression


def _functorch_forward(*tensors: Any) -> bool:
    """Whether ``tensors`` are under ``torch.func.jvp`` (a forward level open
    and a functorch wrapper): there the mse and huber kernels' double
    backward raises ("ZeroTensors are immutable") under ``jvp(grad(f))``."""
    return _forward_ad._current_level >= 0 and any(_wrapped(t) for t in tensors)


def _mse(params, reduction, dtype, weighted, x, y):
    if _functorch_forward(x, y):
        return None
    return _nn.mse_loss(_to(x, dtype), _to(y, dtype), _ENUM[reduction])


def _msle(params, reduction, dtype, weighted, p, t):
    """torch's squared difference (``mse_loss``, one kernel each way) of
    ``_formulas.msle_logs``: it gives way to the native form (see the
    differences page)."""
    if _functorch_forward(p, t):
        return None
    return _nn.mse_loss(*msle_logs(_XP, _to(p, dtype), _to(t, dtype)), _ENUM[reduction])


def _l1(params, reduction, dtype, weighted, x, y):
    return _nn.l1_loss(_to(x, dtype), _to(y, dtype), _ENUM[reduction])


# dtype -> the range of thresholds whose squares stay normal numbers
_SQUARES: dict[Any, tuple[float, float]] = {}


def _squares_fit(dtype: Any, value: float) -> bool:
    """Whether the squares the kernels form below ``value`` stay normal numbers."""
    try:
        lo, hi = _SQUARES[dtype]
    except KeyError:
        info = torch.finfo(dtype)
        lo, hi = _SQUARES[dtype] = math.sqrt(info.tiny), math.sqrt(info.max) / 2
    return lo <= value <= hi


def _huber(params, reduction, dtype, weighted, x, y):
    (delta,) = params
    if not _squares_fit(dtype, delta) or _functorch_forward(x, y):
        return None
    return _nn.huber_loss(_to(x, dtype), _to(y, dtype), _ENUM[reduction], delta)


def _smooth_l1(params, reduction, dtype, weighted, x, y):
    (beta,) = params
    if beta == 0:
        return _l1(params, reduction, dtype, weighted, x, y)
    if not _squares_fit(dtype, beta):
        return None
    return _nn.smooth_l1_loss(_to(x, dtype), _to(y, dtype), _ENUM[reduction], beta)


# From this many elements log_cosh runs as one autograd node (_LogCosh): two
# passes over memory fewer than the chain of kernels; below it the chain costs
# less than a custom node's Python.
LOG_COSH_NODE = 1 << 16


class _LogCosh(torch.autograd.Function):
    """``log1p(sinh(a)^2) / 2`` of the error ``a`` as one node whose
    derivative is ``tanh(a)``: exact for every ``a``, where the chain rule
    through ``log1p`` and ``sinh`` underflows beyond ``|a| = 20``."""

    @staticmethod
    def forward(a):
        return double_log_cosh(torch, a).mul_(0.5)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        return grad * torch.tanh(a)

    @staticmethod
    def jvp(ctx, tangent):
        (a,) = ctx.saved_tensors
        return tangent * torch.tanh(a)


def _log_cosh(params, reduction, dtype, weighted, x, y):
    """``_formulas.double_log_cosh`` of the error, halved after the
    reduction, read on the host.  Its value is exact wherever it is finite,
    so a loss that no gradient is taken of (or, on large arrays, one node
    with the exact derivative) only needs to be finite; a gradient through
    the chain of kernels needs every ``|a|`` at most 20."""
    if not (_host(x) and _host(y)):
        return None
    a = _to(x, dtype) - _to(y, dtype)
    if a.numel() >= LOG_COSH_NODE:
        loss = _reduce(_LogCosh.apply(a), reduction)
        return loss if _stands(loss, zero_ok=True) else None
    twice = double_log_cosh(torch, a)
    differentiated = _differentiated(x, y)
    if differentiated or reduction == "none":
        if twice.numel():
            top = torch.max(twice.detach()).item()
            if not (top <= DOUBLE_LOG_COSH_LIMIT if differentiated else math.isfinite(top)):
                return None
        return _reduce(twice, reduction, 0.5)
    loss = _reduce(twice, reduction, 0.5)
    return loss if math.isfinite(loss.item()) else None


def _gaussian_nll(params, reduction, dtype, weighted, x, y, v):
    """``_formulas.gaussian_nll_loss``, on torch's reduction (its doubled form,
    halved after the reduction, would overflow where the loss is near the
    largest number)."""
    full, floor = params
    return _reduce(gaussian_nll_loss(torch, _to(x, dtype), _to(y, dtype), _to(v, dtype), full, floor), reduction)


def _margin_ranking(params, reduction, dtype, weighted, x1, x2, t):
    (margin,) = params
    return torch.margin_ranking_loss(
        _to(x1, dtype), _to(x2, dtype), _to(t, dtype), margin, _ENUM[reduction]
    )


# --------------------------------------------------------------------- embedding


def _norms_exact(dtype: Any, n: int, floor: float, *norms: Any) -> bool:
    """Whether every norm (of ``n`` elements) lies where ``vector_norm`` is
    exact, read on the host; the lower bound is 0 where ``floor`` (an eps
    added to every sum of squares) outweighs the squares lost to underflow."""
    if not norms[0].numel():
        return True
    low, high = _norm_bounds(dtype, n)
    if floor >= low * low:
        low = 0.0
    lo, hi = _min_max(torch.cat([v.detach() for v in norms]))
    return low <= lo and hi <= high


def _exact_cosine(dtype: Any, a: Any, b: Any, axis: int, floor: float) -> Any:
    """``_formulas.cosine_by_norms`` of host tensors where every norm is exact
    (read on the host); None otherwise."""
    if not (_host(a) and _host(b)):
        return None
    a = _to(a, dtype)
    cosine, norm_a, norm_b = cosine_by_norms(_XP, a, _to(b, dtype), axis, floor)
    return cosine if _norms_exact(dtype, a.shape[axis], 0.0, norm_a, norm_b) else None


def _cosine(params, reduction, dtype, weighted, a, b):
    """``_formulas.cosine_by_norms``, where every norm is exact (read on the
    host: no zero, huge or tiny vector)."""
    axis, floor = params
    cosine = _exact_cosine(dtype, a, b, axis, floor)
    return None if cosine is None else _reduce(cosine, reduction)


def _triplet(params, reduction, dtype, weighted, anchors, positives, negatives):
    """``_formulas.triplet_by_norms``; for p = 2 where every norm is exact
    (read on the host)."""
    axis, p, margin, eps = params
    if not (p == 1 or p == 2 and _host(anchors) and _host(positives) and _host(negatives)):
        return None
    a = _to(anchors, dtype)
    loss, near, far = triplet_by_norms(
        _XP, a, _to(positives, dtype), _to(negatives, dtype), axis, p, margin, eps
    )
    if p == 2 and not _norms_exact(dtype, a.shape[axis], eps, near, far):
        return None
    return _reduce(loss, reduction)


# ------------------------------------------------ margins, pairs, counts, sequences


def _kernel_off(*tensors: Any) -> bool:
    """Whether a kernel without forward-mode AD, batching rules or (for some)
    second derivatives must give way: under forward mode or torch.func."""
    return _forward_ad._current_level >= 0 or any(t is not None and _wrapped(t) for t in tensors)


def _multi_margin(params, reduction, dtype, weighted, x, t, w):
    """``F.multi_margin_loss`` on the rows of the last axis (its terms
    summed without the target's, a little more exact than the formula).
    It has no gradient with respect to the class weights, forward mode or
    second derivative: where the weights need one the formula runs."""
    p, margin, guard = params
    if w is None:
        if guard or _forward_ad._current_level >= 0 or _wrapped(x) or not x.numel():
            return None
    elif guard or not x.numel() or _kernel_off(x, w) or _differentiated(w):
        return None
    else:
        w = _to(w, dtype)
    rows = _to(x, dtype) if x.ndim == 2 else _to(x, dtype).reshape(-1, x.shape[-1])
    # the kernel drops a NaN term (NaN > 0 is false): a NaN must give NaN.  On
    # the host one max (NaN where any entry is) reads it; elsewhere a select.
    host = _host(x)
    if host and math.isnan(rows.max().item()):
        return None
    labels = t if t.ndim == 1 else t.reshape(-1)
    try:
        loss = _nn.multi_margin_loss(rows, _to(labels, torch.int64), p, margin, w, _ENUM[reduction])
    except RuntimeError:  # its range check: our error
        _check_indices("multi_margin_loss", params, x, t)
        raise
    if not host:
        nan_rows = rows.isnan().any(-1)
        loss = torch.where(nan_rows if reduction == "none" else nan_rows.any(), torch.nan, loss)
    return loss.reshape(t.shape) if reduction == "none" and t.ndim != 1 else loss


def _soft_margin(params, reduction, dtype, weighted, x, t):
    """``F.soft_margin_loss``: ``log1p(exp(-t x))``, which overflows where
    ``-t x`` passes about 88 (float32); read on the host.  It has no
    gradient with respect to the targets: where one is taken the formula runs."""
    if not _host(x) or _differentiated(t):
        return None
    loss = _nn.soft_margin_loss(_to(x, dtype), _to(t, dtype), _ENUM[reduction])
    return loss if _stands(loss, zero_ok=True) else None


def _multilabel_soft_margin(params, reduction, dtype, weighted, x, t, w):
    """The mean over the last axis of ``F.binary_cross_entropy_with_logits``
    with the class weights, as ``F.multilabel_soft_margin_loss``; read on the
    host as for ``binary_cross_entropy`` (see ``_bce``)."""
    if not _host(x):
        return None
    x = _to(x, dtype)
    loss = torch.binary_cross_entropy_with_logits(x, _to(t, dtype), None, None, 0)
    if w is not None:  # after the kernel: its weight has no gradient
        loss = loss * _to(w, dtype)
    loss = _reduce(loss.sum(-1) / _constant(float(x.shape[-1]), loss), reduction)
    return loss if _stands(loss) else None


def _hinge_embedding(params, reduction, dtype, weighted, x, t):
    """``F.hinge_embedding_loss``: the formula's own terms."""
    (margin,) = params
    return torch.hinge_embedding_loss(_to(x, dtype), t, margin, _ENUM[reduction])


def _info_nce(params, reduction, dtype, weighted, q, k):
    """torch's cross entropy of ``_formulas.cosine_logits_by_norms`` against
    each query's own key (and, ``symmetric``, each key's own query), where
    every norm is exact and the rows stand (read on the host: a zero, huge or
    tiny vector, or a confident match's tiny loss, which the kernel rounds to
    0, runs the formula)."""
    tau, symmetric = params
    if not (_host(q) and _host(k)):
        return None
    q = _to(q, dtype)
    logits, norm_q, norm_k = cosine_logits_by_norms(_XP, q, _to(k, dtype), tau)
    if not _norms_exact(dtype, q.shape[-1], 0.0, norm_q, norm_k):
        return None
    own = torch.arange(logits.shape[0], device=logits.device)
    loss = _nn.cross_entropy_loss(logits, own, None, 0, _NO_IGNORE, 0.0)
    if symmetric:
        loss = (loss + _nn.cross_entropy_loss(logits.T, own, None, 0, _NO_IGNORE, 0.0)) * _constant(0.5, loss)
    return _reduce(loss, reduction) if _stands(loss) else None


def _ntxent(params, reduction, dtype, weighted, e, labels):
    """``_formulas.ntxent_of_logits`` of ``_formulas.cosine_logits_by_norms``,
    where every norm is exact (read on the host, as ``_info_nce``)."""
    (tau,) = params
    if not _host(e):
        return None
    e = _to(e, dtype)
    logits, norms, _ = cosine_logits_by_norms(_XP, e, e, tau)
    if not _norms_exact(dtype, e.shape[-1], 0.0, norms):
        return None
    return ntxent_of_logits(_XP, logits, labels)


def _cosine_embedding(params, reduction, dtype, weighted, a, b, t):
    """``_formulas.cosine_by_norms`` in the formula's terms for the targets,
    where every norm is exact (read on the host, as ``_cosine``).
    (``F.cosine_embedding_loss`` adds 1e-12 to each squared norm: not eps.)"""
    axis, margin, floor = params
    cosine = _exact_cosine(dtype, a, b, axis, floor)
    return None if cosine is None else _reduce(_cosine_pair_terms(_XP, cosine, t, margin), reduction)


def _poisson_nll(params, reduction, dtype, weighted, x, t):
    """``F.poisson_nll_loss``, where it is finite (read on the host: ``0 *
    -inf`` is NaN there, 0 in the formula); with ``full`` only where no
    gradient of the targets is taken (Stirling's ``t log t`` is masked after
    its NaN gradient at 0)."""
    log_input, full, eps = params
    if not _host(x) or full and _differentiated(t):
        return None
    loss = torch.poisson_nll_loss(_to(x, dtype), _to(t, dtype), log_input, full, eps, _ENUM[reduction])
    return loss if _stands(loss, zero_ok=True) else None


def _ctc(params, reduction, dtype, weighted, logits, targets, input_lengths, target_lengths):
    """``F.ctc_loss`` of ``log_softmax(logits)`` laid out ``(T, N, C)``, run
    with ``zero_infinity`` (its gradient at an infeasible sequence is NaN
    otherwise, the formula's 0); without it such a sequence's loss is made
    ``inf`` again by a constant.  'mean' divides by the target lengths, at
    least 1, as the kernel does.  The kernel has neither forward mode nor a
    second derivative: under forward mode and torch.func the formula runs, and
    for a gradient at logits of -inf (read on the host; off it always)."""
    blank, zero_infinity, per_target, guard = params
    if guard or not logits.shape[0] or _kernel_off(logits):
        return None
    if _differentiated(logits) and not (_host(logits) and torch.amin(logits.detach()).item() > -math.inf):
        return None  # the kernel's gradient at a class of probability 0 (-inf) is NaN
    log_probs = torch.log_softmax(_to(logits, dtype), -1).transpose(0, 1)
    targets, frames, lengths = targets.long(), input_lengths.long(), target_lengths.long()
    loss = torch.ctc_loss(log_probs, targets, frames, lengths, blank, 0, True)
    if not zero_infinity and not (_host(loss) and loss.numel() and torch.amin(loss.detach()).item() > 0):
        loss = loss + torch.where(_infeasible(targets, frames, lengths), math.inf, 0.0).to(loss.dtype)
    if per_target:
        loss = loss / lengths.clamp_min(1).to(loss.dtype)
    return _reduce(loss, reduction)


def _infeasible(targets: Any, frames: Any, lengths: Any) -> Any:
    """Whether each sequence has fewer frames than its labels and repeats
    (a blank between two equal labels) need."""
    s = targets.shape[1]
    repeats = (targets[:, 1:] == targets[:, :-1]) & (
        torch.arange(1, max(s, 1), device=targets.device) < lengths[:, None]
    )
    return lengths + repeats.sum(1) > frames


_FAST = {
    "binary_cross_entropy": _bce,
    "cosine_embedding_loss": _cosine_embedding,
    "ctc_loss": _ctc,
    "hinge_embedding_loss": _hinge_embedding,
    "ntxent_loss": _ntxent,
    "multi_margin_loss": _multi_margin,
    "multilabel_soft_margin_loss": _multilabel_soft_margin,
    "poisson_nll_loss": _poisson_nll,
    "soft_margin_loss": _soft_margin,
    "cosine_similarity_loss": _cosine,
    "cross_entropy": _cross_entropy,
    "gaussian_nll_loss": _gaussian_nll,
    "hinge_loss": _formula("hinge_loss"),
    "info_nce_loss": _info_nce,
    "huber_loss": _huber,
    "js_div_loss": _js_div,
    "kl_div_loss": _kl_div,
    "l1_loss": _l1,
    "log_cosh_loss": _log_cosh,
    "margin_ranking_loss": _margin_ranking,
    "mse_loss": _mse,
    "msle_loss": _msle,
    "nll_loss": _nll,
    "poly1_cross_entropy": _poly1,
    "sigmoid_focal_loss": _sigmoid_focal,
    "softmax_focal_loss": _softmax_focal,
    "smooth_l1_loss": _smooth_l1,
    "triplet_loss": _triplet,
}


# Loss -> the positions in its parameters of the class axis (None: the last),
# of ``guard`` and of ignore_index (None: none), for the losses whose class
# indices the front door leaves to this module (``checks_class_indices``).
_INDEXED = {
    "cross_entropy": (0, 3, 6),
    "nll_loss": (0, 1, 2),
    "softmax_focal_loss": (0, 2, None),
    "poly1_cross_entropy": (0, 3, None),
    "multi_margin_loss": (None, 2, None),
}
INDEX_CHECKED = frozenset(_INDEXED)


def _check_indices(name: str, params: tuple[Any, ...], x: Any, targets: Any) -> None:
    """The class-index range check the front door left to the kernels, for a
    call that the formula computes: one ``aminmax`` on the host."""
    axis, guard, ignore = _INDEXED[name]
    if params[guard] or targets.is_floating_point() or not targets.numel() or not checks_class_indices(targets):
        return  # the formula guards them; probabilities; nothing to read
    classes = x.shape[-1 if axis is None else params[axis]] if x.ndim else 0
    _check_range(name, targets, classes, None if ignore is None else params[ignore])


def run(xp, name, params, reduction, out_dtype, dtype, weighted, *arrays):
    """The loss ``name`` by its fast path where it has one and takes the
    call, else by the portable formula (see ``_native``)."""
    fast = _FAST.get(name)
    if fast is not None and not _compiling():
        loss = fast(params, reduction, dtype, weighted, *arrays)
        if loss is not None:
            return loss if loss.dtype is out_dtype else loss.to(out_dtype)
    if name in _INDEXED:
        _check_indices(name, params, arrays[0], arrays[1])
    return evaluate(xp, name, params, reduction, out_dtype, dtype, weighted, *arrays)

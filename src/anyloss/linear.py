"""The output layer and the cross entropy fused: linear_cross_entropy."""

from __future__ import annotations

import contextlib
import importlib
import numbers
from typing import Any, Optional

from . import _linear, _native
from ._common import (
    Reduction,
    _torch_compiling,
    check_real,
    check_reduction,
    float_dtypes,
    is_namespace,
    namespace,
    shape_of,
)
from .classification import (
    _check_class_indices, _check_class_weight_values, _check_training_options, _check_z_and_softcap,
)

Array = Any

# Rows per chunk by default: a chunk's logits hold about this many entries.
CHUNK_ENTRIES = 1 << 23


def linear_cross_entropy(
    inputs: Array,
    weight: Array,
    targets: Array,
    bias: Optional[Array] = None,
    *,
    class_weights: Optional[Array] = None,
    ignore_index: Optional[int] = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    logit_softcap: Optional[float] = None,
    reduction: Reduction = "mean",
    chunk_size: Optional[int] = None,
) -> Array:
    r"""``cross_entropy(inputs @ weight.T + bias, targets, ...)`` without the logits.

    The logits of a language model's output layer, ``N x V`` for ``N`` tokens
    and a vocabulary of ``V``, are computed ``chunk_size`` tokens at a time and
    dropped after their chunk, in the forward pass and in the gradient:

    .. math::

        \ell_n = \operatorname{CE}(x_n W^\top + b,\ y_n),

    with every option of :func:`cross_entropy` (class weights, ``ignore_index``,
    label smoothing, z-loss, soft-capping) and its 'mean'.  The extra memory is
    ``O(chunk_size x V + N + V x D)`` instead of ``O(N x V)``.  PyTorch, JAX and
    MLX get a gradient that recomputes the chunks (or, for a scalar loss,
    computes them with the loss); other libraries get the loss values.

    Args:
        inputs (array): Hidden states, shape ``(..., D)``.
        weight (array): The output layer's weight, shape ``(V, D)`` as in
            ``torch.nn.Linear`` and ``mlx.nn.Linear`` (pass a JAX ``(D, V)``
            kernel transposed).
        targets (array): Class indices, shape ``(...)`` (the shape of ``inputs``
            without its last axis).
        bias (array, optional): The output layer's bias, shape ``(V,)``. Default: ``None``.
        class_weights (array, optional): One weight per class, shape ``(V,)``,
            as in :func:`cross_entropy`. Default: ``None``.
        ignore_index (int, optional): Targets equal to it give 0 and no gradient. Default: ``None``.
        label_smoothing (float, optional): In ``[0, 1)``. Default: ``0.0``.
        z_loss (float, optional): Adds ``z_loss * logsumexp(logits)**2`` per row kept. Default: ``0.0``.
        logit_softcap (float, optional): Logits become ``c * tanh(logits / c)``. Default: ``None``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'mean'``.
        chunk_size (int, optional): Tokens per chunk; by default about
            ``2**23 / V`` (32 MiB of float32 logits per chunk), ``2**20 / V``
            on MLX (whose gradient holds a chunk's whole graph). Default: ``None``.

    Returns:
        array: The loss, shape of ``targets`` for ``'none'``, a 0-d array
        otherwise; dtype of ``inputs`` and ``weight`` (computed in float32 for
        half precision).

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> x = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
        >>> w = np.array([[2.0, 0.0], [0.0, 2.0], [-1.0, -1.0]], dtype=np.float32)
        >>> anyloss.linear_cross_entropy(x, w, np.array([0, 2]), reduction="none")
        array([0.16984601, 3.169846  ], dtype=float32)
    """
    func = "linear_cross_entropy"
    xp = namespace(func, inputs=inputs, weight=weight, targets=targets, bias=bias,
                   class_weights=class_weights)
    check_reduction(func, reduction)
    smoothing = check_real(func, "label_smoothing", label_smoothing, low=0.0, high=1.0,
                           high_inclusive=False)
    z, softcap = _check_z_and_softcap(func, z_loss, logit_softcap)
    if inputs.ndim == 0:
        raise ValueError(f"{func}: inputs must have a feature axis, shape (..., D); got a 0-d array")
    if weight.ndim != 2 or shape_of(weight)[1] != shape_of(inputs)[-1]:
        raise ValueError(
            f"{func}: weight has shape {shape_of(weight)}, but inputs has shape {shape_of(inputs)}; "
            f"expected (V, {shape_of(inputs)[-1]}), one row per class as in torch.nn.Linear"
        )
    vocab, dim = shape_of(weight)
    if shape_of(targets) != shape_of(inputs)[:-1]:
        raise ValueError(
            f"{func}: targets has shape {shape_of(targets)}, but inputs has shape "
            f"{shape_of(inputs)}; expected class indices of shape {shape_of(inputs)[:-1]}"
        )
    if bias is not None and shape_of(bias) != (vocab,):
        raise ValueError(
            f"{func}: bias has shape {shape_of(bias)}, but weight has {vocab} rows; "
            f"expected shape ({vocab},)"
        )
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1
    ):
        raise ValueError(f"{func}: chunk_size must be a positive int, got {chunk_size!r}")
    for name, a in (("inputs", inputs), ("weight", weight), ("bias", bias)):
        if a is not None and not xp.isdtype(a.dtype, "real floating"):
            raise TypeError(f"{func}: {name} must have a real floating dtype, got {a.dtype}")
    _check_training_options(xp, func, class_weights, ignore_index, vocab, False)
    _check_class_weight_values(xp, func, class_weights)
    # no fast path reads the indices here: the check reads them (under
    # torch.compile no fast path runs, and Dynamo cannot enter portable()'s lock)
    with contextlib.nullcontext() if _torch_compiling() else _native.portable():
        guard = _check_class_indices(xp, func, targets, vocab, ignore_index)
    out_dtype, dtype = float_dtypes(xp, func, inputs=inputs, weight=weight, bias=bias,
                                    class_weights=class_weights)
    batch = shape_of(targets)
    n = 1
    for s in batch:
        n *= s
    x = xp.reshape(inputs, (n, dim))
    t = xp.reshape(targets, (n,))
    params = (smoothing, guard, softcap, z, ignore_index)
    run, entries = _linear.forward, CHUNK_ENTRIES
    if _native.enabled():
        driver = _driver(xp)
        if driver is not None:
            run, entries = driver.forward, getattr(driver, "CHUNK_ENTRIES", entries)
    chunk = int(chunk_size) if chunk_size is not None else max(1, entries // max(vocab, 1))
    chunk = min(chunk, max(n, 1))
    loss = run(xp, x, weight, bias, t, class_weights, dtype, params, reduction, out_dtype, chunk)
    return xp.reshape(loss, batch) if reduction == "none" else loss


# namespace -> the library's chunked autodiff driver module (None: none)
_DRIVERS: dict[Any, Any] = {}


def _driver(xp: Any) -> Any:
    """The library's chunked autodiff driver module, or ``None`` (loss values only)."""
    try:
        return _DRIVERS[xp]
    except KeyError:
        pass
    if _torch_compiling():
        return None  # no import while torch.compile traces
    found = None
    for library in ("torch", "jax", "mlx"):
        if is_namespace(xp, library):
            found = importlib.import_module(f"._native.linear_{library}", __package__)
    _DRIVERS[xp] = found
    return found

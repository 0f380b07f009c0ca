"""Helpers shared by every loss: namespaces, dtypes, argument checks, reduction.

Everything here is written against the Python Array API standard.  The few
places where a library needs a nudge (``stop_gradient``, index dtypes) are
isolated in small functions so that the losses themselves read like the math.
"""

from __future__ import annotations

import math
import numbers
import sys
import weakref
from typing import Any, Literal

import array_api_compat as _compat
import numpy as np

Reduction = Literal["none", "mean", "sum"]
REDUCTIONS: tuple[str, ...] = ("none", "mean", "sum")


# --------------------------------------------------------------------------- namespaces


def _library(x: Any) -> str:
    """A short, human name for the library an array comes from."""
    module = type(x).__module__.split(".")[0]
    return {"jaxlib": "jax", "builtins": type(x).__name__}.get(module, module)


# array type -> its Array API namespace; filled on first sight of each type.
_NAMESPACES: dict[type, Any] = {}


def _namespace_of(func: str, name: str, x: Any) -> Any:
    """The namespace of one argument, checked and cached by its type."""
    kind = type(x)
    if kind in _NAMESPACES:
        return _NAMESPACES[kind]
    if isinstance(x, (bool, int, float, complex, list, tuple)) or not _compat.is_array_api_obj(x):
        hint = ""
        if isinstance(x, (list, tuple)):
            hint = "; pass an array, e.g. np.asarray(x)"
        elif type(x).__module__ == "numpy":
            hint = f" (a NumPy scalar, {type(x).__name__}); pass an array, e.g. np.asarray(x)"
        raise TypeError(
            f"{func}: {name} must be an array (NumPy, PyTorch, JAX, MLX, CuPy, Dask or "
            f"array-api-strict), got {type(x).__name__}{hint}"
        )
    xp = _compat.array_namespace(x)
    if library_of(xp) == "torch":
        _bind_torch()
    _NAMESPACES[kind] = xp
    return xp


def namespace(func: str, **arrays: Any) -> Any:
    """Return the Array API namespace shared by the named ``arrays``.

    ``None`` values are ignored (optional arguments).  Anything that is not an
    array raises ``TypeError`` naming the argument; arrays from two libraries
    raise ``TypeError`` naming both.
    """
    return _namespace(func, arrays)


def _namespace(func: str, arrays: dict[str, Any]) -> Any:
    xp = None
    for name, x in arrays.items():
        if x is None:
            continue
        ns = _NAMESPACES.get(type(x))
        if ns is None:
            ns = _namespace_of(func, name, x)
        if xp is None:
            xp = ns
        elif ns is not xp:
            _mixed(func, arrays)
    return xp


def _mixed(func: str, arrays: dict[str, Any]) -> None:
    libraries: dict[str, str] = {}
    for name, x in arrays.items():
        if x is not None:
            libraries.setdefault(_library(x), name)
    described = ", ".join(f"{name} is a {lib} array" for lib, name in libraries.items())
    raise TypeError(f"{func}: all arrays must come from one library, but {described}")


# namespace -> the library it computes with ('numpy', 'torch', 'jax', 'mlx',
# 'dask', 'cupy', 'array_api_strict', ...); filled on first sight of each.
_LIBRARIES: dict[Any, str] = {}


def library_of(xp: Any) -> str:
    """The library a namespace computes with: ``jax.numpy`` is 'jax',
    ``array_api_compat.torch`` is 'torch', ``array_api_compat.dask.array`` is
    'dask'."""
    try:
        return _LIBRARIES[xp]
    except (KeyError, TypeError):
        pass
    name = getattr(xp, "__name__", "")
    if name.startswith("array_api_compat."):
        name = name[len("array_api_compat."):]
    library = name.split(".")[0]
    try:
        _LIBRARIES[xp] = library
    except TypeError:  # an unhashable namespace object
        pass
    return library


def is_namespace(xp: Any, library: str) -> bool:
    """Whether ``xp`` is the namespace of ``library`` ('torch', 'jax', 'mlx', ...)."""
    return library_of(xp) == library


def stop_gradient(xp: Any, x: Any) -> Any:
    """``x`` as a constant for the caller's autodiff; the identity elsewhere."""
    if is_namespace(xp, "torch"):
        return x.detach()
    if is_namespace(xp, "jax"):
        import jax

        return jax.lax.stop_gradient(x)
    if is_namespace(xp, "mlx"):
        return xp.stop_gradient(x)
    return x


def at_least(xp: Any, x: Any, low: float) -> Any:
    """``maximum(x, low)`` for a Python number ``low``.

    On PyTorch this is ``clamp``: array-api-compat's ``maximum`` with a
    Python scalar asks ``torch.result_type``, which ``torch.compile`` cannot
    trace.
    """
    if is_namespace(xp, "torch"):
        return x.clamp(min=low)
    return xp.maximum(x, low)


def at_most(xp: Any, x: Any, high: float) -> Any:
    """``minimum(x, high)`` for a Python number ``high`` (see :func:`at_least`)."""
    if is_namespace(xp, "torch"):
        return x.clamp(max=high)
    return xp.minimum(x, high)


def is_concrete_host(xp: Any, *arrays: Any) -> bool:
    """Whether the values of ``arrays`` can be read without tracing, syncing a
    device or computing a lazy graph.

    True for NumPy and array-api-strict arrays, CPU PyTorch tensors outside of
    ``torch.compile`` and autograd-functional transforms, and concrete (not
    traced) JAX arrays on the CPU.  False for MLX (lazy), Dask (lazy), CuPy and
    anything on an accelerator.
    """
    library = library_of(xp)
    if library == "numpy" or library == "array_api_strict":
        return True
    if library == "torch":
        import torch

        if torch.compiler.is_compiling():
            return False
        wrapped = torch._C._functorch.is_functorch_wrapped_tensor
        for a in arrays:
            if not a.is_cpu or wrapped(a):  # a meta tensor is not on the CPU
                return False
        return True
    if library == "jax":
        import jax

        return all(
            not isinstance(a, jax.core.Tracer)
            and all(d.platform == "cpu" for d in a.devices())
            for a in arrays
        )
    return False


# ----------------------------------------------------------------------------- dtypes


def _torch_compiling() -> bool:
    """Whether ``torch.compile`` is tracing (its tracer cannot hash dtypes, so
    the dtype caches below are bypassed then)."""
    return _torch_compiling_now()  # False until a torch tensor is seen


# (namespace, dtypes) -> (output dtype, compute dtype)
_DTYPES: dict[tuple[Any, ...], tuple[Any, Any]] = {}


def float_dtypes(xp: Any, func: str, **arrays: Any) -> tuple[Any, Any]:
    """The output dtype and the dtype to compute in, for the named arrays.

    The output dtype is the promotion of the floating inputs (integer and bool
    inputs, such as class labels, take part as values only); with no floating
    input it is the library's default floating dtype.  Half precision
    (float16, bfloat16) is computed in float32 and returned in its own dtype.
    Complex or non-numeric inputs raise ``TypeError``.
    """
    return _float_dtypes(xp, func, arrays)


def _float_dtypes(xp: Any, func: str, arrays: dict[str, Any]) -> tuple[Any, Any]:
    if _torch_compiling_now():
        return _promote(xp, func, arrays)
    key = [xp]
    for x in arrays.values():  # a loop: cheaper than a comprehension for a few arrays
        key.append(None if x is None else x.dtype)
    key = tuple(key)
    try:
        return _DTYPES[key]
    except (KeyError, TypeError):
        pass
    result = _promote(xp, func, arrays)
    try:
        _DTYPES[key] = result
    except TypeError:  # an unhashable dtype: not cached
        pass
    return result


def _promote(xp: Any, func: str, arrays: dict[str, Any]) -> tuple[Any, Any]:
    floats = []
    for name, x in arrays.items():
        if x is None:
            continue
        if xp.isdtype(x.dtype, "complex floating"):
            raise TypeError(
                f"{func}: {name} has complex dtype {x.dtype}; losses are defined for real inputs"
            )
        if not xp.isdtype(x.dtype, ("real floating", "integral", "bool")):
            raise TypeError(f"{func}: {name} has dtype {x.dtype}; expected a real numeric dtype")
        if xp.isdtype(x.dtype, "real floating") and x.dtype not in floats:
            floats.append(x.dtype)
    if not floats:
        out = xp.asarray(0.0).dtype
    elif len(floats) == 1:
        out = floats[0]
    else:
        out = xp.result_type(*floats)
    return out, (xp.float32 if is_half(xp, out) else out)


def astype(xp: Any, x: Any, dtype: Any) -> Any:
    """``x`` in ``dtype``, without a copy when it already is."""
    return x if x.dtype == dtype else xp.astype(x, dtype)


# (namespace, dtype, kind) -> xp.isdtype(dtype, kind)
_KINDS: dict[tuple[Any, Any, Any], bool] = {}


def isdtype(xp: Any, dtype: Any, kind: Any) -> bool:
    """``xp.isdtype(dtype, kind)``, cached (array-api-compat's costs 1-2 us a call)."""
    if _torch_compiling():
        return xp.isdtype(dtype, kind)
    key = (xp, dtype, kind)
    try:
        return _KINDS[key]
    except (KeyError, TypeError):
        pass
    result = bool(xp.isdtype(dtype, kind))
    try:
        _KINDS[key] = result
    except TypeError:  # an unhashable dtype: not cached
        pass
    return result


def is_real_floating(xp: Any, x: Any) -> bool:
    """Whether the array ``x`` has a real floating dtype (on torch by the
    tensor's own predicate: ``isdtype`` costs most of a microsecond)."""
    if type(x) is _TORCH_TENSOR:
        return x.is_floating_point()
    return isdtype(xp, x.dtype, "real floating")


def check_integer(xp: Any, func: str, name: str, x: Any) -> None:
    """Class indices must be integers."""
    if type(x) is _TORCH_TENSOR and x.dtype in _TORCH_INTEGERS:
        return
    if not isdtype(xp, x.dtype, "integral"):
        raise TypeError(
            f"{func}: {name} holds class indices and must have an integer dtype, got {x.dtype}"
        )


# ------------------------------------------------------------------------ shapes, axes


def shape_of(x: Any) -> tuple[int, ...]:
    return tuple(x.shape)


def check_same_shape(func: str, **arrays: Any) -> None:
    """All named arrays have one shape; no broadcasting between them."""
    _same_shape(func, arrays)


def _same_shape(func: str, arrays: dict[str, Any]) -> None:
    first = None
    for x in arrays.values():
        if x is None:
            continue
        if first is None:
            first = x.shape
        elif x.shape != first and tuple(x.shape) != tuple(first):
            given = [(n, shape_of(a)) for n, a in arrays.items() if a is not None]
            (first_name, first_shape), mismatched = given[0], next(g for g in given if g[1] != first)
            shown = ", ".join(f"{n}.shape={s}" for n, s in given)
            raise ValueError(
                f"{func}: {mismatched[0]} has shape {mismatched[1]} but {first_name} has shape "
                f"{first_shape}; the shapes must be equal (no broadcasting): {shown}"
            )


def normalize_axis(func: str, axis: Any, ndim: int, name: str = "axis") -> int:
    """``axis`` as a non-negative int for an array of ``ndim`` dimensions."""
    if type(axis) is not int and (isinstance(axis, bool) or not isinstance(axis, numbers.Integral)):
        raise TypeError(f"{func}: {name} must be an int, got {type(axis).__name__} {axis!r}")
    if ndim == 0:
        raise ValueError(f"{func}: {name}={axis} needs an array with at least one dimension, got a 0-d array")
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"{func}: {name}={axis} is out of range for an array with {ndim} dimension"
            f"{'s' if ndim != 1 else ''}; expected {-ndim} <= {name} < {ndim}"
        )
    # An entry of a tuple: a symbolic int (torch.compile dynamic=True) made a constant.
    return _AXES[int(axis) % ndim]


_AXES = tuple(range(64))  # NumPy's most dimensions


def drop_axis(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    return shape[:axis] + shape[axis + 1 :]


# ---------------------------------------------------------------------- scalar params


def check_real(
    func: str,
    name: str,
    value: Any,
    *,
    low: float | None = None,
    low_inclusive: bool = True,
    high: float | None = None,
    high_inclusive: bool = True,
    array_ok: bool = False,
) -> Any:
    """A finite real scalar parameter, optionally within ``[low, high]``.

    With ``array_ok`` a 0-d array (a schedule's value, a traced argument) is
    taken too: checked and returned as a number where its value is on the
    host, returned as it is where it cannot be read (a tracer, MLX, a device).
    """
    if type(value) is float or type(value) is int:  # the usual call: no ABC check (~0.3 us each)
        v = float(value)
    else:
        v = _real_value(func, name, value, array_ok)
        if v is None:
            return value  # an array whose value cannot be read
    too_low = low is not None and (v < low if low_inclusive else v <= low)
    too_high = high is not None and (v > high if high_inclusive else v >= high)
    # v - v == 0 tests finiteness also for torch.compile's symbolic floats
    if not v - v == 0 or too_low or too_high:
        lo = "(-inf" if low is None else ("[" if low_inclusive else "(") + f"{low:g}"
        hi = "inf)" if high is None else f"{high:g}" + ("]" if high_inclusive else ")")
        raise ValueError(f"{func}: {name} must be a finite number in {lo}, {hi}, got {value!r}")
    return v


def _real_value(func: str, name: str, value: Any, array_ok: bool) -> Any:
    """A parameter that is not a Python float or int, as a float (see
    :func:`check_real`), or ``None`` for an array whose value cannot be read."""
    if array_ok and not isinstance(value, numbers.Real) and _compat.is_array_api_obj(value):
        if getattr(value, "ndim", None) != 0:
            raise TypeError(
                f"{func}: {name} must be a real number or a 0-d array, got {type(value).__name__} "
                f"of shape {shape_of(value)}"
            )
        xp = _compat.array_namespace(value)
        if not xp.isdtype(value.dtype, "real floating"):
            raise TypeError(f"{func}: {name} must have a real floating dtype, got {value.dtype}")
        if not is_concrete_host(xp, value):
            return None
        return float(_readable(xp, value)[1])
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{func}: {name} must be a real number, got {type(value).__name__} {value!r}")
    return float(value)


def check_reduction(func: str, reduction: Any) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"{func}: invalid reduction {reduction!r}; expected one of 'none', 'mean', 'sum'"
        )


# --------------------------------------------------------------------- numeric pieces


def gather(xp: Any, x: Any, indices: Any, axis: int, guard: bool = False) -> Any:
    """``x`` at ``indices`` along ``axis``; ``indices`` has x's shape without ``axis``.

    With ``guard`` an index outside ``[0, n)`` gives NaN, never a plausible
    number and never a read out of bounds: for indices whose values could not
    be checked (under a trace, on a device, lazy).
    """
    n = x.shape[axis]
    if guard:
        if 0 < n <= 128:  # n - 1 fits every integer dtype: clip, then compare (two passes, not four)
            safe = indices.clamp(0, n - 1) if is_namespace(xp, "torch") else xp.clip(indices, 0, n - 1)
            valid = safe == indices
            indices = safe
        else:
            valid = xp.logical_and(indices >= 0, indices < n)
            indices = xp.where(valid, indices, xp.zeros_like(indices))
    if type(x) is np.ndarray and x.ndim == 2 and type(indices) is np.ndarray and indices.dtype.kind in "iu":
        # one fancy index: take_along_axis builds the same index in several steps
        rows = np.arange(x.shape[1 - axis % 2])
        picked = x[rows, indices] if axis % 2 else x[indices, rows]
    elif is_namespace(xp, "torch"):
        # torch.gather: take_along_dim would fix the batch size under torch.compile
        picked = x.gather(axis, indices.long().unsqueeze(axis)).squeeze(axis)
    elif hasattr(xp, "take_along_axis"):
        picked = xp.take_along_axis(x, xp.expand_dims(indices, axis=axis), axis=axis)
        picked = xp.squeeze(picked, axis=axis)
    else:
        # Namespaces without take_along_axis (Dask): select with a one-hot mask,
        # the classes counted in the default integer dtype (a narrow index dtype
        # would wrap).
        shape = [1] * x.ndim
        shape[axis] = n
        classes = xp.reshape(xp.arange(n), tuple(shape))
        mask = xp.expand_dims(indices, axis=axis) == classes
        picked = xp.sum(xp.where(mask, x, xp.zeros_like(x)), axis=axis)
    if guard:
        picked = xp.where(valid, picked, xp.full_like(picked, math.nan))
    return picked


def take(xp: Any, values: Any, indices: Any) -> Any:
    """``values[indices]`` for a 1-d ``values`` and integer ``indices`` of any shape."""
    if type(values) is np.ndarray and type(indices) is np.ndarray:
        return values[indices]
    if is_namespace(xp, "torch"):
        return values[indices.long()]
    flat = xp.take(values, xp.reshape(indices, (-1,)), axis=0)
    return xp.reshape(flat, tuple(indices.shape))


def xlogy_like(xp: Any, p: Any, y: Any) -> Any:
    """``p * y`` with ``0 * y = 0`` for every ``y``, ``-inf`` included.

    Only a non-finite ``y`` (such as ``-inf - (-inf)``) meets ``p == 0``
    through a stand-in (zero), so the gradients stay the product's own: ``y``
    for ``p`` (0 where ``y`` is not finite) and ``p`` for ``y``.
    """
    return p * xp.where(xp.logical_and(p == 0, ~xp.isfinite(y)), xp.zeros_like(y), y)


def scan(xp: Any, step: Any, carry: Any, xs: tuple[Any, ...]) -> Any:
    """The carry after ``carry = step(carry, *x)`` for each slice ``x`` of the
    arrays ``xs`` along their first axis, in order.

    On JAX this is ``jax.lax.scan``: a compiled loop whose body is traced and
    compiled once, not once per slice.  Elsewhere a Python loop over the
    slices, taken with ``unstack`` where the namespace has it (``unbind`` on
    PyTorch: one backward node for all slices, not a full-size gradient per
    slice).
    """
    if is_namespace(xp, "jax"):
        import jax

        return jax.lax.scan(lambda c, x: (step(c, *x), None), carry, xs)[0]
    if is_namespace(xp, "torch"):  # compat's unstack iterates, which torch.func.vmap refuses
        slices: Any = zip(*[x.unbind(0) for x in xs])
    elif hasattr(xp, "unstack"):
        slices = zip(*[xp.unstack(x, axis=0) for x in xs])
    else:
        slices = ([x[i] for x in xs] for i in range(xs[0].shape[0]))
    for x in slices:
        carry = step(carry, *x)
    return carry


# dtype -> whether it is narrower than float32
_HALF: dict[Any, bool] = {}


def is_half(xp: Any, dtype: Any) -> bool:
    """Whether ``dtype`` is a floating dtype narrower than 32 bits."""
    if _torch_compiling():
        return xp.finfo(dtype).bits < 32
    try:
        return _HALF[dtype]
    except KeyError:
        half = _HALF[dtype] = xp.finfo(dtype).bits < 32
        return half


def reduce(xp: Any, loss: Any, reduction: str, dtype: Any, total: Any = None) -> Any:
    """Apply ``reduction`` and return the result in ``dtype``.

    'mean' divides by the number of elements, or by ``total`` (a 0-d array:
    the total weight of the rows that count) where given; a mean over
    nothing (``total == 0``) is 0.  Half-precision losses are summed in
    float32 so that means over large arrays neither overflow nor lose their
    small terms.
    """
    if type(loss) is np.ndarray and total is None and loss.dtype == dtype and loss.dtype.char in "fd":
        # NumPy float32/float64 in the output dtype: np.mean's own steps (the
        # sum over the count, divided in float64 and rounded to the sum's
        # type) without its dispatch layers, and a 0-d array, not a scalar
        if reduction == "none":
            return loss
        if reduction == "sum":
            return np.asarray(np.add.reduce(loss, axis=None))
        if loss.size:
            s = np.add.reduce(loss, axis=None)
            return np.asarray(s.dtype.type(float(s) / loss.size))
    if reduction != "none":
        if is_half(xp, loss.dtype):
            loss = xp.astype(loss, xp.float32)
        if reduction == "sum":
            loss = xp.sum(loss)
        elif total is None:
            loss = xp.mean(loss)
        else:
            total = astype(xp, total, loss.dtype)
            loss = xp.sum(loss) / xp.where(total == 0, xp.ones_like(total), total)
    loss = astype(xp, loss, dtype)
    # NumPy turns 0-d results into scalars; callers get arrays, as on every other library.
    return xp.asarray(loss) if _compat.is_numpy_namespace(xp) else loss


def check_weights(func: str, weights: Any, loss_shape: tuple[int, ...]) -> None:
    if weights is not None and shape_of(weights) != loss_shape:
        raise ValueError(
            f"{func}: weights has shape {shape_of(weights)} but the unreduced loss has shape "
            f"{loss_shape}; weights multiply the loss element by element"
        )


def values_known(xp: Any, x: Any) -> bool:
    """Whether checks on the values of ``x`` may run (see :func:`is_concrete_host`)."""
    if type(x) is _TORCH_TENSOR:  # a check per call: torch's own predicates, bound once
        return not _torch_compiling_now() and x.is_cpu and not _torch_wrapped(x) and x.numel() > 0
    return is_concrete_host(xp, x) and math.prod(shape_of(x)) > 0


def _unbound(*args: Any) -> bool:
    return False


# torch.Tensor and torch's predicates, bound when torch is first seen
# (:func:`_bind_torch`); a type no array has until then.
_TORCH_TENSOR: Any = type("_NoTorch", (), {})
_torch_wrapped: Any = _unbound
_torch_compiling_now: Any = _unbound
_TORCH_BOOL: Any = None
_TORCH_INTEGERS: frozenset[Any] = frozenset()


def _bind_torch() -> None:
    global _TORCH_TENSOR, _TORCH_BOOL, _TORCH_INTEGERS, _torch_wrapped, _torch_compiling_now
    import torch

    _TORCH_BOOL = torch.bool
    _TORCH_INTEGERS = frozenset(
        getattr(torch, name) for name in ("uint8", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64")
        if hasattr(torch, name)
    )
    _torch_wrapped = torch._C._functorch.is_functorch_wrapped_tensor
    _torch_compiling_now = torch.compiler.is_compiling
    _TORCH_TENSOR = torch.Tensor


# id -> (weak reference, version, data pointer) of the torch tensors whose
# values passed a check that reads them all (class weights >= 0)
_CHECKED: dict[int, tuple[Any, int, int]] = {}


def checked_before(x: Any) -> bool:
    """Whether the torch tensor ``x`` passed :func:`remember_checked`'s check
    and is unchanged since (same object, storage and version counter: an
    in-place write bumps it), so that a check reading every value (class
    weights, the same tensor each step) runs once.  Writes through
    ``.data`` or a NumPy view bump no version and go unseen."""
    entry = _CHECKED.get(id(x))
    if entry is None or entry[0]() is not x:
        return False
    try:
        return entry[1] == x._version and entry[2] == x.data_ptr()
    except RuntimeError:  # an inference tensor has no version counter
        return False


def remember_checked(x: Any) -> None:
    """Note that the torch tensor ``x`` passed its check (see :func:`checked_before`)."""
    if type(x) is not _TORCH_TENSOR:
        return
    try:
        version = x._version
    except RuntimeError:
        return
    if len(_CHECKED) > 256:
        _CHECKED.clear()
    _CHECKED[id(x)] = (weakref.ref(x), version, x.data_ptr())


def _readable(xp: Any, x: Any) -> tuple[Any, Any]:
    """``x`` and a namespace in which its values can be read on the host.

    A concrete JAX array is read through NumPy: inside a ``jax.jit`` trace
    (an array closed over by the traced function) ``jnp.min`` would return a
    tracer even for a concrete input.
    """
    if is_namespace(xp, "jax"):
        return np, np.asarray(x)
    if is_namespace(xp, "torch"):
        return xp, x.detach()  # reading values is not part of the autograd graph
    return xp, x


# Checks that catch systematic mistakes (labels for probabilities, probabilities
# for log-probabilities) read at most this many elements: a bounded cost.
SAMPLE = 1 << 16


def _host_values(xp: Any, x: Any, sample: Any, exclude: Any) -> tuple[Any, Any]:
    """``x`` readable on the host (see :func:`_readable`), cut to its first
    :data:`SAMPLE` elements with ``sample`` (or to the first ``sample``
    elements, for an int), ``exclude`` read as 0."""
    limit = SAMPLE if sample is True else int(sample)
    if library_of(xp) == "torch":  # the tensor's own kernels; no autograd node
        if x.requires_grad:
            x = x.detach()
        if limit and x.numel() > limit:
            x = x.reshape(-1)[:limit]
        if exclude is not None:
            x = x.masked_fill(x == exclude, 0)
        return xp, x
    xp, x = _readable(xp, x)
    if limit and math.prod(shape_of(x)) > limit:
        x = xp.reshape(x, (-1,))[:limit]
    if exclude is not None:
        x = xp.where(x == exclude, xp.zeros_like(x), x)
    return xp, x


def _torch_sample(x: Any, sample: Any) -> Any:
    """A torch tensor's values to read (see :func:`_host_values`, without an exclusion)."""
    limit = SAMPLE if sample is True else int(sample)
    if x.requires_grad:
        x = x.detach()
    return x.reshape(-1)[:limit] if limit and x.numel() > limit else x


def _numpy_sample(x: Any, sample: Any) -> Any:
    """A NumPy array's values to read (see :func:`_host_values`, without an exclusion)."""
    limit = SAMPLE if sample is True else int(sample)
    return x.reshape(-1)[:limit] if limit and x.size > limit else x


def smallest(xp: Any, x: Any, sample: Any = False) -> float:
    """The smallest element of a host array (see :func:`value_range`), one pass."""
    if type(x) is _TORCH_TENSOR:
        return _torch_sample(x, sample).min().item()
    if type(x) is np.ndarray:
        return float(np.minimum.reduce(_numpy_sample(x, sample), axis=None))
    xp, x = _host_values(xp, x, sample, None)
    if type(x) is np.ndarray:
        return float(np.minimum.reduce(x, axis=None))
    return float(xp.min(x))


def largest(xp: Any, x: Any, sample: Any = False) -> float:
    """The largest element of a host array (see :func:`value_range`), one pass."""
    if type(x) is _TORCH_TENSOR:
        return _torch_sample(x, sample).max().item()
    if type(x) is np.ndarray:
        return float(np.maximum.reduce(_numpy_sample(x, sample), axis=None))
    xp, x = _host_values(xp, x, sample, None)
    if type(x) is np.ndarray:
        return float(np.maximum.reduce(x, axis=None))
    return float(xp.max(x))


def value_range(
    xp: Any, x: Any, sample: bool = False, exclude: Any = None
) -> tuple[float, float]:
    """The smallest and largest element of a host array, as Python numbers;
    with ``sample``, of its first :data:`SAMPLE` elements; elements equal to
    ``exclude`` count as 0.  One pass: ``aminmax`` on PyTorch."""
    if type(x) is _TORCH_TENSOR and exclude is None and x.dtype is not _TORCH_BOOL:
        lo, hi = _torch_sample(x, sample).aminmax()
        return lo.item(), hi.item()
    if type(x) is np.ndarray and exclude is None:
        x = _numpy_sample(x, sample)
        return float(np.minimum.reduce(x, axis=None)), float(np.maximum.reduce(x, axis=None))
    xp, x = _host_values(xp, x, sample, exclude)
    if type(x) is np.ndarray:
        return float(np.minimum.reduce(x, axis=None)), float(np.maximum.reduce(x, axis=None))
    if library_of(xp) == "torch" and x.dtype is not sys.modules["torch"].bool:
        lo, hi = x.aminmax()
        return lo.item(), hi.item()
    return float(xp.min(x)), float(xp.max(x))


# dtype -> its machine epsilon, as a Python float
_EPS: dict[Any, float] = {}


def epsilon(xp: Any, dtype: Any) -> float:
    """``finfo(dtype).eps`` as a Python float, cached (``finfo`` costs
    microseconds a call)."""
    if _torch_compiling():
        return float(xp.finfo(dtype).eps)
    try:
        return _EPS[dtype]
    except KeyError:
        eps = _EPS[dtype] = float(xp.finfo(dtype).eps)
        return eps


def check_signs(xp: Any, func: str, targets: Any, meaning: str = "") -> None:
    """Targets -1 or 1, read (a sample) where they are on the host: values
    beyond 1 in magnitude, or a smallest value that is neither -1 nor 1 (0/1
    labels, the usual mistake), are refused.  A little slack: gradient checks
    perturb the targets."""
    if not values_known(xp, targets):
        return
    lo, hi = value_range(xp, targets, sample=True)
    if lo < -1.001 or hi > 1.001 or abs(lo) < 0.999:
        raise ValueError(
            f"{func}: targets must be {meaning or '-1 or 1'}, but it holds values from "
            f"{lo:g} to {hi:g}; map 0/1 labels with 2 * targets - 1"
        )


# ------------------------------------------------------------ remembered verdicts

# A front door's checks of shapes, dtypes and plain parameters, keyed by them
# (with each parameter's type, so that True never passes for 1): what they
# worked out, for the next call with the same signature.  Values are checked
# on every call.  Cleared when full; bypassed while torch.compile traces.
_VERDICTS: dict[Any, Any] = {}
MAX_VERDICTS = 4096


def verdict_key(func: str, arrays: tuple[Any, ...], parameters: tuple[Any, ...]) -> Any:
    """A verdict's key (see :func:`recall`): each array's type, shape
    and dtype, each parameter with its type (a verdict is remembered only
    for plain ones); ``None`` where an array is not one (the checks say so)."""
    key = [func]
    for a in arrays:
        try:
            key.append(None if a is None else (type(a), a.shape, a.dtype))
        except AttributeError:
            return None
    for p in parameters:
        key.append(type(p))
        key.append(p)
    return tuple(key)


def recall(key: Any) -> Any:
    """The verdict remembered for ``key``, or ``None``."""
    if key is None or _torch_compiling_now():
        return None
    try:
        return _VERDICTS.get(key)
    except TypeError:  # an unhashable part: checked anew
        return None


_PLAIN_PARAMETERS = frozenset((bool, int, float, str, type(None)))


def remember(key: Any, verdict: Any, *parameters: Any) -> Any:
    """Keep ``verdict`` for ``key`` (see :func:`recall`) where every one of
    ``parameters`` is a plain Python value (an array's value may change
    between calls); returns it."""
    for p in parameters:
        if type(p) not in _PLAIN_PARAMETERS:
            return verdict
    if key is not None and not _torch_compiling_now():
        if len(_VERDICTS) >= MAX_VERDICTS:
            _VERDICTS.clear()
        try:
            _VERDICTS[key] = verdict
        except TypeError:
            pass
    return verdict


def checked(func: str, arrays: tuple[Any, ...], parameters: tuple[Any, ...], verdict: Any, *args: Any) -> Any:
    """``verdict(func, *args)``, a front door's checks of ``arrays``' shapes
    and dtypes and of its ``parameters``, remembered for their signature (a
    function and its arguments, not a closure: cheaper to pass)."""
    key = verdict_key(func, arrays, parameters)
    known = recall(key)
    if known is None:
        known = remember(key, verdict(func, *args), *parameters)
    return known


def prepare(func: str, reduction: Any, **arrays: Any) -> tuple[Any, Any, Any]:
    """The common start of an elementwise loss.

    Checks ``reduction`` and that the named arrays (``None`` skipped) share one
    library and one shape; returns the namespace, the output dtype and the
    compute dtype.
    """
    return checked(func, tuple(arrays.values()), (reduction,), _prepared, reduction, arrays)


def _prepared(func: str, reduction: Any, arrays: dict[str, Any]) -> tuple[Any, Any, Any]:
    xp = _namespace(func, arrays)
    check_reduction(func, reduction)
    _same_shape(func, arrays)
    return (xp, *_float_dtypes(xp, func, arrays))

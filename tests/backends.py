"""Moving test data between NumPy and every array library the suite covers.

``LIBRARIES`` names the libraries that must run in CI (every one but CuPy);
``to_lib(name, array)`` builds an input and ``to_numpy(result)`` reads any
library's result back for comparison.
"""

from __future__ import annotations

import importlib

import numpy as np

LIBRARIES = ("numpy", "array_api_strict", "torch", "jax", "mlx", "dask")


def _jax():
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    return jnp


def to_lib(name: str, a):
    """``a`` (NumPy array or scalar) as an array of library ``name``, same dtype."""
    a = np.asarray(a)
    if name == "numpy":
        return a
    if name == "array_api_strict":
        import array_api_strict as xp

        return xp.asarray(a)
    if name == "torch":
        import torch

        return torch.from_numpy(np.array(a, copy=True))
    if name == "jax":
        return _jax().asarray(a)
    if name == "mlx":
        import mlx.core as mx

        return mx.array(a)
    if name == "dask":
        import dask.array as da

        return da.from_array(a, chunks=tuple(max(1, (n + 1) // 2) for n in a.shape) or ())
    if name == "cupy":
        import cupy

        return cupy.asarray(a)
    raise ValueError(name)


def to_numpy(x) -> np.ndarray:
    """Any library's array as a NumPy array (computing Dask, copying from devices)."""
    module = type(x).__module__.split(".")[0]
    if module == "torch":
        return x.detach().cpu().numpy()
    if module == "dask":
        return np.asarray(x.compute())
    if module == "cupy":
        return x.get()
    if module == "array_api_strict":
        import array_api_strict as xp

        return np.asarray(xp.asarray(x, copy=True)._array)
    if module == "mlx":
        import mlx.core as mx

        if x.dtype == mx.bfloat16:
            x = x.astype(mx.float32)
        return np.array(x)
    return np.asarray(x)


def array_type(name: str) -> type:
    """The array class a result on library ``name`` must have."""
    if name == "numpy":
        return np.ndarray
    if name == "array_api_strict":
        return importlib.import_module("array_api_strict")._array_object.Array
    if name == "torch":
        return importlib.import_module("torch").Tensor
    if name == "jax":
        return importlib.import_module("jax").Array
    if name == "mlx":
        return importlib.import_module("mlx.core").array
    if name == "dask":
        return importlib.import_module("dask.array").Array
    if name == "cupy":
        return importlib.import_module("cupy").ndarray
    raise ValueError(name)

"""CuPy on a CUDA GPU: every loss, values, result type and device, no host sync.

CI has no GPU, so this module runs only where CuPy imports and sees a CUDA
device; it is skipped otherwise.  The code path is the same standard-only
code every other library runs.
"""

from __future__ import annotations

import numpy as np
import pytest

from test_libraries import CASES, CASE_IDS, FIRST_OF_EACH, REDUCTIONS, as_float64, assert_close

cupy = pytest.importorskip("cupy")
try:
    _DEVICES = cupy.cuda.runtime.getDeviceCount()
except Exception:  # CuPy installed without a driver or GPU
    _DEVICES = 0
pytestmark = pytest.mark.skipif(_DEVICES == 0, reason="CuPy imports, but no CUDA device is present")

import cupyx  # noqa: E402


def _inputs(case, dtype, device=0):
    arrays = case.arrays()
    with cupy.cuda.Device(device):
        inputs = {k: cupy.asarray(v.astype(dtype) if v.dtype.kind == "f" else v) for k, v in arrays.items()}
    held = {k: (cupy.asnumpy(x).astype(np.float64) if arrays[k].dtype.kind == "f" else arrays[k]) for k, x in inputs.items()}
    return inputs, held


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_values_type_and_device(case, dtype):
    inputs, held = _inputs(case, dtype)
    for reduction in REDUCTIONS:
        result = case.func(**inputs, **case.params, reduction=reduction)
        assert isinstance(result, cupy.ndarray)
        assert result.device == next(iter(inputs.values())).device
        assert result.dtype == np.dtype(dtype)
        expected = case.expected(held, reduction)
        assert result.shape == expected.shape
        assert_close(cupy.asnumpy(result).astype(np.float64), expected, dtype)


@pytest.mark.parametrize("case", FIRST_OF_EACH, ids=[c.id for c in FIRST_OF_EACH])
def test_half_precision(case):
    inputs, held = _inputs(case, "float16")
    result = case.func(**inputs, **case.params)
    assert result.dtype == cupy.float16
    assert_close(as_float64(cupy.asnumpy(result)), case.expected(held, case.default_reduction), "float16")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_no_device_to_host_sync(case):
    """Building a loss never waits for the GPU: value checks are for host
    arrays only."""
    inputs, _ = _inputs(case, "float32")
    with cupyx.allow_synchronize(False):
        for reduction in REDUCTIONS:
            case.func(**inputs, **case.params, reduction=reduction)


@pytest.mark.skipif(_DEVICES < 2, reason="needs two CUDA devices")
def test_second_device():
    case = CASES[0]
    inputs, held = _inputs(case, "float32", device=1)
    with cupy.cuda.Device(0):
        result = case.func(**inputs, **case.params)
    assert result.device.id == 1
    assert_close(cupy.asnumpy(result).astype(np.float64), case.expected(held, case.default_reduction), "float32")

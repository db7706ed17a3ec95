"""Test-only start-up of the Python subprocesses a test starts with this folder on PYTHONPATH (`sst profile`'s
workers, `sst` run as a command): they get the stand-ins the test installed in its own process, as the
environment says. Never on the path outside tests.

- SST_TEST_KERNELS_ON_CPU=1 (``kernels.ON_CPU_ENV``, set by ``kernels.install``): the strict kernel doubles,
  with CPU tensors counting as CUDA ones on sst's side too (``attention.CUDA_KERNEL_DEVICES``);
- SST_TEST_FAKE_GPUS=1 (``fake_gpu.SUBPROCESS_ENV``, set by ``fake_gpu.in_subprocesses``): two fake CUDA
  GPUs for the whole process.

With neither set, nothing is imported.
"""

import os

if os.environ.get("SST_TEST_KERNELS_ON_CPU") == "1":
    import kernels
    import pytest

    kernels.install(pytest.MonkeyPatch(), fa3_returns_lse=os.environ.get("SST_TEST_FA3_RETURNS_LSE") == "1")
if os.environ.get("SST_TEST_FAKE_GPUS") == "1":
    import fake_gpu

    fake_gpu.for_this_process()

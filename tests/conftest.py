"""Test-wide settings.

The tests use tiny tensors, for which one CPU thread is faster than several (threads spin-wait
on each other, badly so on a busy machine); subprocess runs inherit the same setting. Set
DEEPFUSION_TEST_THREADS to use more.
"""

import os

_threads = os.environ.get("DEEPFUSION_TEST_THREADS", "1")
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, _threads)

import torch  # noqa: E402  (after the thread variables, so the runtime reads them)

torch.set_num_threads(int(_threads))

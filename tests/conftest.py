"""Test-wide setup.

Without a CUDA device the triton backend runs in Triton's interpreter (numpy emulation), so that
every backend-parametrised test also checks the Triton kernels' numerics on CPU. Triton reads
TRITON_INTERPRET when a kernel is decorated, so it is set here, before any kernel is imported.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

"""CUDA exit-step kernels for the early-exit chain, their NumPy reference and a loader.

Importing this package loads nothing heavy: ``kernels.reference`` needs NumPy,
``kernels.loader`` needs torch and cuda-python (``cuda.core``) only when used, and
``kernels.compile`` needs ``nvcc`` on PATH only when called.
"""

from kernels.spec import DEFAULT_ARCHS, KERNEL_NAMES, SOURCE_PATH, STEP_KERNELS, step_kernel_name

__all__ = ["DEFAULT_ARCHS", "KERNEL_NAMES", "SOURCE_PATH", "STEP_KERNELS", "step_kernel_name"]

"""The GPU path: per-layer engines chained on one CUDA stream, exits decided on the device.

Nothing is imported here: ``import runtime.gpu`` works without torch-CUDA, cuda-python or
TensorRT. The submodules import those packages when a function needs them and name the
missing package in the error.

| module | what |
| --- | --- |
| ``deps`` | lazy imports of torch-CUDA and TensorRT with clear errors |
| ``executors`` | ``DeviceExecutor`` protocol, ``TorchDeviceExecutor`` / ``TorchCudaExecutor`` (model.pt on a device) |
| ``tensorrt`` | ``TensorRTExecutor``: the manifest's engine files, one execution context per graph |
| ``buffers`` | ``ChainBuffers``: every device buffer of the chain, preallocated per (max batch, max sequence) |
| ``ops`` | ``ExitOps`` protocol (the kernels' three launches) and ``ReferenceExitOps`` (NumPy reference, CPU tensors) |
| ``chain`` | ``GpuChain`` / ``run_chain_gpu``: embed, then layer -> exit kernel -> compaction -> gather per step |
| ``graphs`` | CUDA graphs: ``CudaGraphExecutor`` (one graph per layer and row bucket), ``WholeModelGraph`` |
"""

"""``TensorRTExecutor``: the build's TensorRT engines as a ``DeviceExecutor``.

One deserialized engine and one ``IExecutionContext`` per graph of the manifest. Every
call sets the input shapes and all I/O addresses (the chain's buffers) and enqueues with
``execute_async_v3`` on torch's current stream; its boolean result is checked right away,
or, while a CUDA graph is being captured, after the capture ends (``check_captured``),
because raising inside a capture leaves the stream in a broken capture state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.engines import EngineError
from runtime.gpu.deps import import_tensorrt, require_cuda
from runtime.manifest import Manifest, ManifestError, load_manifest

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["EngineRunError", "TensorRTExecutor"]

# trt.DataType member name -> torch dtype attribute
_DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT32": "int32", "INT64": "int64",
           "INT8": "int8", "UINT8": "uint8", "BOOL": "bool"}


class EngineRunError(EngineError):
    """A TensorRT engine refused a shape or an address, or its enqueue failed."""


@dataclass
class _Engine:
    """One engine, its execution context and its I/O tensors."""

    name: str
    engine: Any
    context: Any
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dtypes: dict[str, Any]  # tensor name -> torch dtype
    profile: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]  # input -> (min, opt, max)

    @classmethod
    def load(cls, trt: Any, runtime: Any, torch: Any, name: str, path: Path) -> _Engine:
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise EngineRunError(f"TensorRT could not deserialize {path} (built by another TensorRT version or GPU?)")
        context = engine.create_execution_context()
        if context is None:
            raise EngineRunError(f"TensorRT could not create an execution context for {path}")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = tuple(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        outputs = tuple(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        dtypes = {}
        for n in names:
            trt_type = engine.get_tensor_dtype(n)
            type_name = getattr(trt_type, "name", str(trt_type).rsplit(".", 1)[-1])
            if type_name not in _DTYPES:
                raise EngineRunError(f"{path}: tensor {n!r} has TensorRT type {type_name}, which torch cannot hold")
            dtypes[n] = getattr(torch, _DTYPES[type_name])
        profile = {n: tuple(tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(n, 0)) for n in inputs}
        return cls(name, engine, context, inputs, outputs, dtypes, profile)

    def limits(self, tensor: str, axis: int) -> tuple[int, int]:
        low, _, high = self.profile[tensor]
        return low[axis], high[axis]

    def enqueue(self, feeds: dict[str, torch.Tensor], results: dict[str, torch.Tensor], stream: int) -> bool:
        """Bind ``feeds``/``results`` and enqueue; returns ``execute_async_v3``'s result."""
        ctx = self.context
        for name in self.inputs:
            tensor = feeds[name]
            self._check_dtype(name, tensor)
            if not ctx.set_input_shape(name, tuple(tensor.shape)):
                low, _, high = self.profile[name]
                raise EngineRunError(f"{self.name}: input {name!r}: expected a shape between {low} and {high} "
                                     f"(the engine's optimisation profile), found {tuple(tensor.shape)}")
            if not ctx.set_tensor_address(name, int(tensor.data_ptr())):
                raise EngineRunError(f"{self.name}: TensorRT refused the address of input {name!r}")
        for name in self.outputs:
            tensor = results[name]
            self._check_dtype(name, tensor)
            want = tuple(int(d) for d in ctx.get_tensor_shape(name))
            if want != tuple(tensor.shape):
                raise EngineRunError(
                    f"{self.name}: output {name!r}: expected shape {want}, found {tuple(tensor.shape)}"
                )
            if not ctx.set_tensor_address(name, int(tensor.data_ptr())):
                raise EngineRunError(f"{self.name}: TensorRT refused the address of output {name!r}")
        return bool(ctx.execute_async_v3(stream))

    def _check_dtype(self, name: str, tensor: torch.Tensor) -> None:
        if tensor.dtype != self.dtypes[name]:
            raise EngineRunError(f"{self.name}: tensor {name!r}: expected {self.dtypes[name]}, found {tensor.dtype}")
        if not tensor.is_contiguous():
            raise EngineRunError(f"{self.name}: tensor {name!r}: expected a contiguous tensor")


class TensorRTExecutor:
    """``DeviceExecutor`` over the TensorRT engines a ``--backend tensorrt`` build records in its manifest."""

    def __init__(self, build_dir: str | os.PathLike, manifest: Manifest | None = None, device: Any = None) -> None:
        trt = import_tensorrt()
        torch, dev = require_cuda(device)
        build_dir = Path(build_dir)
        manifest = manifest if manifest is not None else load_manifest(build_dir)
        missing = sorted(name for name, spec in manifest.graphs.items() if spec.engine is None)
        if missing:
            raise ManifestError(f"build {build_dir}: expected a TensorRT engine for every graph (build with "
                                f"--backend tensorrt), found none for {missing} (backend {manifest.backend!r})")
        self._torch = torch
        self.device = dev
        self.manifest = manifest
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        with torch.cuda.device(dev):
            self._engines = {name: _Engine.load(trt, self._runtime, torch, name, build_dir / spec.engine.file)
                             for name, spec in manifest.graphs.items()}
        self._embed = self._engines[manifest.embeddings]
        self._steps = [(self._engines[s.block], self._engines[s.exit] if s.exit else None) for s in manifest.steps]
        self.num_layers = manifest.num_layers
        self.hidden_size = int(manifest.backbone["hidden_size"])
        first_block, first_exit = self._steps[0]
        self.hidden_dtype = first_block.dtypes["hidden_out"]
        self.logits_dtype = (first_exit or first_block).dtypes["exit_output"]
        self.num_outputs = len(manifest.labels) if not manifest.is_regression else 1
        if self.logits_dtype not in (torch.float32, torch.float16):
            raise EngineRunError(f"exit outputs: expected float32 or float16 engines, found {self.logits_dtype}")
        self._capture_failures: list[str] = []
        rows = [e.limits(name, 0) for e in self._engines.values() for name in e.inputs]
        seqs = [e.limits(name, 1) for e in self._engines.values() for name in e.inputs]
        self.rows_range = (max(r[0] for r in rows), min(r[1] for r in rows))  # every engine accepts these
        self.seq_range = (max(s[0] for s in seqs), min(s[1] for s in seqs))

    def padded_rows(self, n: int, capacity: int) -> int:
        return min(capacity, max(n, self.rows_range[0]))

    # ------------------------------------------------------------------ execution

    def _stream(self) -> int:
        return int(self._torch.cuda.current_stream(self.device).cuda_stream)

    def _run(self, engine: _Engine, feeds: dict[str, torch.Tensor], results: dict[str, torch.Tensor]) -> None:
        ok = engine.enqueue({n: feeds[n] for n in engine.inputs}, results, self._stream())
        if ok:
            return
        if self._torch.cuda.is_current_stream_capturing():
            self._capture_failures.append(engine.name)  # raised by check_captured once the capture has ended
        else:
            raise EngineRunError(f"{engine.name}: execute_async_v3 returned False (see the TensorRT log)")

    def check_captured(self) -> None:
        """Raise if an enqueue failed while a CUDA graph was being captured (call after the capture ends)."""
        failures, self._capture_failures = self._capture_failures, []
        if failures:
            raise EngineRunError(f"execute_async_v3 returned False during CUDA graph capture for {failures}")

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, out: torch.Tensor) -> None:
        self._run(self._embed, {"input_ids": input_ids, "token_type_ids": token_type_ids}, {"hidden": out})

    def layer(self, index: int, hidden: torch.Tensor, attention_mask: torch.Tensor, out_hidden: torch.Tensor,
              out_logits: torch.Tensor) -> None:
        block, exit_head = self._steps[index]
        feeds = {"hidden": hidden, "attention_mask": attention_mask}
        if exit_head is None:
            self._run(block, feeds, {"hidden_out": out_hidden, "exit_output": out_logits})
        else:
            self._run(block, feeds, {"hidden_out": out_hidden})
            self._run(exit_head, {"hidden": out_hidden, "attention_mask": attention_mask}, {"exit_output": out_logits})

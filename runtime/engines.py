"""Engines: one loaded subgraph that maps named numpy inputs to named numpy outputs.

``OrtEngine`` is a small explicit wrapper over ``onnxruntime.InferenceSession``
with the CPU execution provider named explicitly (no silent fallback), low-latency
session options, and input checks against the manifest's graph spec.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.manifest import GraphSpec, ManifestError

__all__ = ["EngineError", "OrtEngine", "OrtOptions"]

_NP_DTYPES = {"int64": np.int64, "int32": np.int32, "float32": np.float32, "float16": np.float16}


class EngineError(RuntimeError):
    """An engine could not be loaded or was fed inputs that do not match its spec."""


@dataclass(frozen=True)
class OrtOptions:
    """ONNX Runtime session settings. ``intra_op_threads=0`` lets ORT pick (all cores)."""

    intra_op_threads: int = 0
    inter_op_threads: int = 1
    sequential: bool = True
    allow_spinning: bool = True
    graph_optimization: str = "all"  # "disable" | "basic" | "extended" | "all"
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    # One CPU memory arena shared by every session of the chain (ORT's environment allocator), so
    # consecutive layers reuse the same warm activation buffers; measured to cut most of the
    # chain's overhead against one whole-model graph.
    shared_arena: bool = True

    def session_options(self):
        import onnxruntime as ort

        levels = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }
        if self.graph_optimization not in levels:
            raise ValueError(f"graph_optimization must be one of {sorted(levels)}; got {self.graph_optimization!r}")
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.intra_op_threads
        so.inter_op_num_threads = self.inter_op_threads
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL if self.sequential else ort.ExecutionMode.ORT_PARALLEL
        so.graph_optimization_level = levels[self.graph_optimization]
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.allow_spinning else "0")
        so.log_severity_level = 3
        if self.shared_arena:
            so.add_session_config_entry("session.use_env_allocators", "1")
        return so


@functools.lru_cache(maxsize=1)
def register_shared_cpu_arena() -> None:
    """Register one CPU arena allocator with ONNX Runtime's (process-wide) environment, once."""
    import onnxruntime as ort

    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, -1, -1, -1))


class OrtEngine:
    """One ONNX subgraph in an ONNX Runtime session."""

    def __init__(self, spec: GraphSpec, session) -> None:
        self.spec = spec
        self._session = session
        self._output_names = spec.output_names

    @classmethod
    def load(cls, build_dir: Path, spec: GraphSpec, options: OrtOptions, use_engine: bool = True) -> "OrtEngine":
        """Load the graph's ONNX Runtime engine (fused graph) if it has one and ``use_engine``,
        else its portable ONNX file."""
        import onnxruntime as ort

        available = ort.get_available_providers()
        missing = [p for p in options.providers if p not in available]
        if missing:
            raise EngineError(f"execution providers {missing} are not available; this onnxruntime has {available}")
        if options.shared_arena:
            register_shared_cpu_arena()
        path = build_dir / (spec.engine.file if use_engine and spec.engine is not None else spec.onnx.file)
        try:
            session = ort.InferenceSession(str(path), sess_options=options.session_options(), providers=list(options.providers))
        except Exception as exc:
            raise EngineError(f"onnxruntime could not load {path}: {exc}") from None
        actual_in = [i.name for i in session.get_inputs()]
        actual_out = [o.name for o in session.get_outputs()]
        if actual_in != spec.input_names or actual_out != spec.output_names:
            raise ManifestError(
                f"{path.name}: manifest declares inputs {spec.input_names} / outputs {spec.output_names}, "
                f"the graph has inputs {actual_in} / outputs {actual_out}"
            )
        return cls(spec, session)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs in the spec's order. Feeds are checked for names, dtypes and ranks."""
        for tensor in self.spec.inputs:
            value = feeds.get(tensor.name)
            if value is None:
                raise EngineError(f"graph {self.spec.name}: missing input {tensor.name!r}; got {sorted(feeds)}")
            if value.dtype != _NP_DTYPES[tensor.dtype] or value.ndim != len(tensor.shape):
                raise EngineError(
                    f"graph {self.spec.name}: input {tensor.name!r} expected {tensor.dtype} of rank {len(tensor.shape)}, "
                    f"got {value.dtype} of shape {value.shape}"
                )
        return self._session.run(self._output_names, {t.name: feeds[t.name] for t in self.spec.inputs})

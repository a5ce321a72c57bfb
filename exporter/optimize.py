"""ONNX Runtime engines: per-layer graphs fused as well as a whole-model export.

ONNX Runtime's transformer optimizer fuses a layer's attention into one
``Attention`` op (plus ``SkipLayerNormalization`` and ``BiasGelu``) when the
graph comes from eager attention with the mask built inside the graph from the
2-D integer mask (see ``exporter.backbones.additive_mask``). The fused graph uses
``com.microsoft`` contrib ops, so it is an ONNX Runtime engine, written next to
the portable ONNX file that other backends (TensorRT) consume.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FusionResult", "fuse_for_onnxruntime"]


@dataclass(frozen=True)
class FusionResult:
    path: Path
    fused_ops: dict[str, int]  # e.g. {"Attention": 1, "SkipLayerNormalization": 2, "BiasGelu": 1}


def fuse_for_onnxruntime(src: Path, dst: Path, num_heads: int, hidden_size: int) -> FusionResult:
    """Run ORT's BERT fusions on ``src`` (one subgraph) and write ``dst``."""
    from onnxruntime.transformers.optimizer import optimize_model

    quiet = logging.getLogger("onnxruntime.transformers")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # opt_level=0: only the pattern fusions; ORT applies its own graph optimisations at load time.
            model = optimize_model(
                str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=0
            )
            stats = {k: int(v) for k, v in model.get_fused_operator_statistics().items() if v}
            model.save_model_to_file(str(dst))
    finally:
        quiet.setLevel(level)
    return FusionResult(dst, stats)

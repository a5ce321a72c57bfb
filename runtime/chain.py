"""The chain: embeddings, then layer by layer with the exit policy between layers.

``run_chain`` is the one orchestration used by every executor (ONNX Runtime
engines, the eager PyTorch reference, later the GPU executors). Per layer it
runs the step on the rows still running, asks the policy which rows exit, and
removes them from the batch before the next layer (compaction; trailing
padding that no remaining row needs is trimmed too). Results come back in input
order.

Trace mode runs every row through every layer and returns all exit outputs;
the exit layers are then what the policy decides on that trace (``replay``),
which is identical to early exit without compaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from runtime.engines import OrtEngine, OrtOptions
from runtime.manifest import Manifest
from runtime.policies import ExitPolicy, replay
from runtime.tokenization import EncodedBatch

__all__ = ["ChainResult", "OrtChainExecutor", "StepExecutor", "run_chain"]


class StepExecutor(Protocol):
    """Runs the pieces of a multi-exit model on numpy arrays."""

    num_layers: int

    def embed(self, batch: EncodedBatch) -> np.ndarray:
        """Token tensors -> hidden states [batch, seq, hidden] entering layer 1."""
        ...

    def layer(self, index: int, hidden: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """0-based layer ``index``: -> (next hidden states, exit outputs [batch, outputs])."""
        ...


@dataclass
class ChainResult:
    exit_layer: np.ndarray  # int64 [batch], 1-based
    outputs: np.ndarray  # float32 [batch, outputs] at each row's exit
    trace: np.ndarray | None = None  # float32 [layers, batch, outputs] in trace mode


def run_chain(executor: StepExecutor, batch: EncodedBatch, policy: ExitPolicy, trace: bool = False) -> ChainResult:
    num_layers = executor.num_layers
    hidden = executor.embed(batch)
    mask = batch.attention_mask
    if trace:
        layer_outputs = []
        for index in range(num_layers):
            hidden, out = executor.layer(index, hidden, mask)
            layer_outputs.append(out)
        stacked = np.stack(layer_outputs).astype(np.float32, copy=False)
        decided = replay(policy, stacked)
        return ChainResult(decided.exit_layer, decided.outputs, stacked)

    size = len(batch)
    exit_layer = np.zeros(size, dtype=np.int64)
    outputs: np.ndarray | None = None
    active = np.arange(size)
    state = policy.new_state(size)
    for index in range(num_layers):
        hidden, out = executor.layer(index, hidden, mask)
        if outputs is None:
            outputs = np.zeros((size, out.shape[1]), dtype=np.float32)
        fired = policy.step(state, out, index + 1, num_layers)
        if fired.any():
            exit_layer[active[fired]] = index + 1
            outputs[active[fired]] = out[fired]
            keep = ~fired
            active, state = active[keep], state.take(keep)
            if len(active) == 0:
                break
            hidden, mask = hidden[keep], mask[keep]
            width = int(mask.sum(axis=1).max())
            if width < mask.shape[1]:  # no remaining row needs the trailing padding
                hidden, mask = hidden[:, :width], mask[:, :width]
            hidden, mask = np.ascontiguousarray(hidden), np.ascontiguousarray(mask)
    assert outputs is not None
    return ChainResult(exit_layer, outputs)


class OrtChainExecutor:
    """The manifest's graphs as ONNX Runtime engines."""

    def __init__(self, manifest: Manifest, engines: dict[str, OrtEngine]):
        self.manifest = manifest
        self.num_layers = manifest.num_layers
        self._embed = engines[manifest.embeddings]
        self._steps = [(engines[s.block], engines[s.exit] if s.exit else None) for s in manifest.steps]

    @classmethod
    def load(cls, build_dir: Path, manifest: Manifest, options: OrtOptions) -> "OrtChainExecutor":
        use_engines = manifest.backend == "onnxruntime"  # other backends' engines are not ORT files
        engines = {name: OrtEngine.load(build_dir, spec, options, use_engines) for name, spec in manifest.graphs.items()}
        return cls(manifest, engines)

    def embed(self, batch: EncodedBatch) -> np.ndarray:
        feeds = {"input_ids": batch.input_ids, "token_type_ids": batch.token_type_ids}
        return self._embed.run(feeds)[0]

    def layer(self, index: int, hidden: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        block, exit_head = self._steps[index]
        feeds = {"hidden": hidden, "attention_mask": attention_mask}
        if exit_head is None:
            hidden_out, out = block.run(feeds)
        else:
            (hidden_out,) = block.run(feeds)
            (out,) = exit_head.run({"hidden": hidden_out, "attention_mask": attention_mask})
        return hidden_out, out

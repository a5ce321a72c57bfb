"""Export a multi-exit model as per-step ONNX subgraphs.

One ``SubgraphSpec`` per file (the Optimum idea): a small ``nn.Module`` that runs
exactly the model's own piece (``embed``, ``run_layer``, ``exit_output``), its
input/output names and dynamic axes. Graphs:

* ``embeddings``: ``input_ids`` [, ``token_type_ids``] -> ``hidden``
* ``layer_{i}`` (one per layer when blocks are not shared):
  ``hidden``, ``attention_mask`` -> ``hidden_out``, ``exit_output``
* ALBERT (blocks shared across depth): ``block_{g}`` once per distinct block,
  ``hidden``, ``attention_mask`` -> ``hidden_out``; and ``exit_{i}`` per layer,
  ``hidden``, ``attention_mask`` -> ``exit_output``

The 2-D int64 attention mask goes into every layer graph and the additive mask
is built inside (see ``exporter.backbones.additive_mask``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from exporter.model import MultiExitModel
from runtime.manifest import StepSpec, TensorSpec

__all__ = ["DEFAULT_OPSET", "ExportedGraph", "SubgraphSpec", "export_subgraphs", "plan_subgraphs", "whole_model_spec"]

DEFAULT_OPSET = 17
BATCH, SEQ = "batch", "sequence"


class _Embeddings(nn.Module):
    def __init__(self, model: MultiExitModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.embed(input_ids, None, token_type_ids)


class _LayerWithExit(nn.Module):
    def __init__(self, model: MultiExitModel, layer: int):
        super().__init__()
        self.model, self.layer = model, layer

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model.run_layer(self.layer, hidden, attention_mask)
        return out, self.model.exit_output(self.layer, out, attention_mask)


class _WholeModel(nn.Module):
    """Every layer and every exit in one graph: the fused baseline the chain is measured against."""

    def __init__(self, model: MultiExitModel):
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        return torch.stack(self.model(input_ids, attention_mask, token_type_ids))


class _Block(nn.Module):
    def __init__(self, model: MultiExitModel, layer: int):
        super().__init__()
        self.model, self.layer = model, layer

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.run_layer(self.layer, hidden, attention_mask)


class _Exit(nn.Module):
    def __init__(self, model: MultiExitModel, layer: int):
        super().__init__()
        self.model, self.layer = model, layer

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.exit_output(self.layer, hidden, attention_mask)


@dataclass(frozen=True)
class SubgraphSpec:
    """Everything needed to export one ONNX file."""

    name: str
    module_factory: Callable[[], nn.Module]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def file(self) -> str:
        return f"{self.name}.onnx"


@dataclass(frozen=True)
class ExportedGraph:
    spec: SubgraphSpec
    path: Path


def _tensor(name: str, dtype: str, *shape: str | int) -> TensorSpec:
    return TensorSpec(name, dtype, tuple(shape))


def plan_subgraphs(model: MultiExitModel) -> tuple[list[SubgraphSpec], str, list[StepSpec]]:
    """The subgraphs to export, the embeddings graph's name and the chain of steps."""
    hidden_in = _tensor("hidden", "float32", BATCH, SEQ, model.hidden_size)
    mask_in = _tensor("attention_mask", "int64", BATCH, SEQ)
    hidden_out = _tensor("hidden_out", "float32", BATCH, SEQ, model.hidden_size)
    exit_out = _tensor("exit_output", "float32", BATCH, model.task.num_outputs)

    embed_inputs = [_tensor("input_ids", "int64", BATCH, SEQ)]
    if model.spec.uses_token_types:
        embed_inputs.append(_tensor("token_type_ids", "int64", BATCH, SEQ))
    specs = [
        SubgraphSpec(
            "embeddings",
            lambda: _Embeddings(model),
            tuple(embed_inputs),
            (_tensor("hidden", "float32", BATCH, SEQ, model.hidden_size),),
        )
    ]
    steps: list[StepSpec] = []
    if not model.shares_blocks:
        for layer in range(model.num_layers):
            name = f"layer_{layer + 1:02d}"
            specs.append(
                SubgraphSpec(name, lambda i=layer: _LayerWithExit(model, i), (hidden_in, mask_in), (hidden_out, exit_out))
            )
            steps.append(StepSpec(layer=layer + 1, block=name, exit=None))
        return specs, "embeddings", steps

    for group_index, layers in enumerate(model.block_groups()):
        name = f"block_{group_index:02d}"
        specs.append(SubgraphSpec(name, lambda i=layers[0]: _Block(model, i), (hidden_in, mask_in), (hidden_out,)))
        for layer in layers:
            others = tuple(x + 1 for x in layers if x != layer)
            steps.append(StepSpec(layer=layer + 1, block=name, exit=f"exit_{layer + 1:02d}", shares_block_with=others))
    # CLS pooling never reads the mask, so the exit graphs take it only for mean pooling.
    exit_inputs = (hidden_in, mask_in) if model.head.pooling == "mean" else (hidden_in,)
    for layer in range(model.num_layers):
        specs.append(SubgraphSpec(f"exit_{layer + 1:02d}", lambda i=layer: _Exit(model, i), exit_inputs, (exit_out,)))
    steps.sort(key=lambda s: s.layer)
    return specs, "embeddings", steps


def whole_model_spec(model: MultiExitModel) -> SubgraphSpec:
    """One graph for the whole model: token tensors -> ``exit_outputs`` [layers, batch, outputs]."""
    inputs = [_tensor("input_ids", "int64", BATCH, SEQ), _tensor("attention_mask", "int64", BATCH, SEQ)]
    if model.spec.uses_token_types:
        inputs.append(_tensor("token_type_ids", "int64", BATCH, SEQ))
    outputs = (_tensor("exit_outputs", "float32", model.num_layers, BATCH, model.task.num_outputs),)
    return SubgraphSpec("whole_model", lambda: _WholeModel(model), tuple(inputs), outputs)


def _dummy(spec: TensorSpec, batch: int, seq: int, vocab: int, generator: torch.Generator) -> torch.Tensor:
    shape = [batch if d == BATCH else seq if d == SEQ else int(d) for d in spec.shape]
    if spec.name == "input_ids":
        return torch.randint(1, vocab, shape, generator=generator)
    if spec.name == "token_type_ids":
        return torch.zeros(shape, dtype=torch.long)
    if spec.name == "attention_mask":
        mask = torch.ones(shape, dtype=torch.long)
        mask[-1, seq // 2 :] = 0  # one padded row so masking is traced, not constant-folded
        return mask
    return torch.randn(shape, generator=generator)


def export_subgraphs(
    model: MultiExitModel, specs: list[SubgraphSpec], out_dir: Path, opset: int = DEFAULT_OPSET, progress=None
) -> list[ExportedGraph]:
    """Export each spec to ``out_dir/<name>.onnx`` with the TorchScript-based exporter.

    (``dynamo=False``: it keeps graphs in the shape ONNX Runtime's transformer
    fusions recognise; dynamic batch and sequence axes.)
    """
    model.eval()
    generator = torch.Generator().manual_seed(0)
    vocab = int(model.config.vocab_size)
    exported = []
    for spec in specs:
        module = spec.module_factory().eval()
        args = tuple(_dummy(t, 2, 8, vocab, generator) for t in spec.inputs)
        axes = {t.name: {i: d for i, d in enumerate(t.shape) if isinstance(d, str)} for t in spec.inputs + spec.outputs}
        path = out_dir / spec.file
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                args,
                str(path),
                dynamo=False,
                input_names=[t.name for t in spec.inputs],
                output_names=[t.name for t in spec.outputs],
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
            )
        _check_io(path, spec)
        exported.append(ExportedGraph(spec, path))
        if progress is not None:
            progress(spec.name)
    return exported


def _check_io(path: Path, spec: SubgraphSpec) -> None:
    import onnx

    from runtime.manifest import BuildError

    graph = onnx.load(str(path), load_external_data=False).graph
    inputs = [i.name for i in graph.input]
    outputs = [o.name for o in graph.output]
    if inputs != [t.name for t in spec.inputs] or outputs != [t.name for t in spec.outputs]:
        raise BuildError(
            f"{spec.file}: expected inputs {[t.name for t in spec.inputs]} and outputs {[t.name for t in spec.outputs]}; "
            f"the exporter produced inputs {inputs} and outputs {outputs}"
        )

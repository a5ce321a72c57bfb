"""``manifest.json``: the only contract between the exporter and the runtime.

A build folder holds one ONNX file per distinct subgraph, optional backend
engine files, the tokenizer and this manifest. The manifest names every file
with its sha256, every graph's inputs and outputs (names, dtypes, shapes with
named dynamic axes) and the chain of steps: the embeddings graph, then for each
layer the block graph it runs (ALBERT reuses one block at every layer) and the
graph that produces that layer's exit output.

``load_manifest`` refuses unknown schema versions, missing files and checksum
mismatches, naming the file concerned.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runtime.integrity import sha256_file

__all__ = [
    "MANIFEST_FILE",
    "SCHEMA_VERSION",
    "BuildError",
    "ChecksumError",
    "FileRef",
    "GraphSpec",
    "Manifest",
    "ManifestError",
    "StepSpec",
    "TensorSpec",
    "load_manifest",
]

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
DTYPES = ("int64", "int32", "float32", "float16")


class ManifestError(ValueError):
    """A build folder or its manifest is missing, malformed or of an unknown schema version."""


class ChecksumError(ManifestError):
    """A file in a build folder does not match the sha256 the manifest records."""


class BuildError(RuntimeError):
    """A build could not be produced (export, parity or engine failure)."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[str | int, ...]  # named dynamic axes ("batch", "sequence") or fixed sizes

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ManifestError(f"tensor {self.name!r}: dtype must be one of {DTYPES}; got {self.dtype!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TensorSpec":
        return cls(str(d["name"]), str(d["dtype"]), tuple(d["shape"]))


@dataclass(frozen=True)
class FileRef:
    file: str  # relative to the build folder
    sha256: str

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FileRef":
        return cls(str(d["file"]), str(d["sha256"]))


@dataclass(frozen=True)
class GraphSpec:
    """One exported subgraph and, for compiled backends, its engine file."""

    name: str
    onnx: FileRef
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    engine: FileRef | None = None  # None: the backend loads the ONNX file itself (onnxruntime)
    extra_files: tuple[FileRef, ...] = ()  # e.g. external weight data

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def files(self) -> list[FileRef]:
        refs = [self.onnx, *self.extra_files]
        if self.engine is not None:
            refs.append(self.engine)
        return refs

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GraphSpec":
        return cls(
            name=str(d["name"]),
            onnx=FileRef.from_dict(d["onnx"]),
            inputs=tuple(TensorSpec.from_dict(t) for t in d["inputs"]),
            outputs=tuple(TensorSpec.from_dict(t) for t in d["outputs"]),
            engine=FileRef.from_dict(d["engine"]) if d.get("engine") else None,
            extra_files=tuple(FileRef.from_dict(f) for f in d.get("extra_files", ())),
        )


@dataclass(frozen=True)
class StepSpec:
    """Layer ``layer`` (1-based): run graph ``block``, then read the exit output.

    ``exit`` is ``None`` when the block graph itself returns the exit output
    (one fused graph per layer); otherwise it names a separate exit-head graph.
    ``shares_block_with`` lists the other layers that run the same block graph.
    """

    layer: int
    block: str
    exit: str | None
    shares_block_with: tuple[int, ...] = ()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StepSpec":
        return cls(int(d["layer"]), str(d["block"]), d.get("exit"), tuple(int(x) for x in d.get("shares_block_with", ())))


@dataclass(frozen=True)
class Manifest:
    schema_version: int
    backbone: dict[str, Any]  # model_type, num_layers, hidden_size, config
    head: dict[str, Any]
    task: dict[str, Any]  # name, kind, labels
    default_policy: dict[str, Any]
    tokenizer: dict[str, Any]  # file, sha256, max_length, pad_id, uses_token_types
    max_seq_len: int
    embeddings: str
    graphs: dict[str, GraphSpec]
    steps: tuple[StepSpec, ...]
    backend: str
    build_options: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    tool_versions: dict[str, str] = field(default_factory=dict)
    source_model: dict[str, Any] = field(default_factory=dict)
    created: str = ""

    @property
    def num_layers(self) -> int:
        return len(self.steps)

    @property
    def is_regression(self) -> bool:
        return self.task["kind"] == "regression"

    @property
    def labels(self) -> list[str]:
        return list(self.task.get("labels", []))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    def all_files(self) -> list[FileRef]:
        refs = [FileRef(self.tokenizer["file"], self.tokenizer["sha256"])]
        for graph in self.graphs.values():
            refs.extend(graph.files())
        return refs

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Manifest":
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ManifestError(
                f"unknown manifest schema_version {version!r}; this runtime reads schema version {SCHEMA_VERSION} "
                f"(rebuild with a matching pabee-deploy)"
            )
        try:
            graphs = {name: GraphSpec.from_dict(g) for name, g in d["graphs"].items()}
            manifest = cls(
                schema_version=version,
                backbone=dict(d["backbone"]),
                head=dict(d["head"]),
                task=dict(d["task"]),
                default_policy=dict(d["default_policy"]),
                tokenizer=dict(d["tokenizer"]),
                max_seq_len=int(d["max_seq_len"]),
                embeddings=str(d["embeddings"]),
                graphs=graphs,
                steps=tuple(StepSpec.from_dict(s) for s in d["steps"]),
                backend=str(d["backend"]),
                build_options=dict(d.get("build_options", {})),
                parity=dict(d.get("parity", {})),
                tool_versions=dict(d.get("tool_versions", {})),
                source_model=dict(d.get("source_model", {})),
                created=str(d.get("created", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ManifestError):
                raise
            raise ManifestError(f"malformed manifest: {type(exc).__name__}: {exc}") from None
        manifest.validate()
        return manifest

    def validate(self) -> None:
        """Internal consistency: every referenced graph exists, layers are 1..L in order."""
        if self.embeddings not in self.graphs:
            raise ManifestError(f"embeddings graph {self.embeddings!r} is not among graphs {sorted(self.graphs)}")
        if not self.steps:
            raise ManifestError("manifest has no steps")
        for expected, step in enumerate(self.steps, start=1):
            if step.layer != expected:
                raise ManifestError(f"step {expected}: expected layer {expected}; found {step.layer}")
            for ref in (step.block, step.exit):
                if ref is not None and ref not in self.graphs:
                    raise ManifestError(f"layer {step.layer}: graph {ref!r} is not among graphs {sorted(self.graphs)}")
        if self.backbone.get("num_layers") != len(self.steps):
            raise ManifestError(
                f"backbone num_layers {self.backbone.get('num_layers')} != number of steps {len(self.steps)}"
            )
        if self.task.get("kind") not in ("classification", "regression"):
            raise ManifestError(f"task kind must be classification or regression; got {self.task.get('kind')!r}")


def verify_files(build_dir: Path, manifest: Manifest) -> None:
    for ref in manifest.all_files():
        path = build_dir / ref.file
        if not path.is_file():
            raise ManifestError(f"build {build_dir}: file {ref.file} listed in the manifest is missing")
        actual = sha256_file(path)
        if actual != ref.sha256:
            raise ChecksumError(
                f"build {build_dir}: checksum mismatch for {ref.file}: manifest records sha256 {ref.sha256[:16]}..., "
                f"file has {actual[:16]}... (corrupted or modified after the build)"
            )


def load_manifest(build_dir: str | os.PathLike, verify: bool = True) -> Manifest:
    """Read ``BUILD/manifest.json``; with ``verify`` also check every file's sha256."""
    build_dir = Path(build_dir)
    if not build_dir.is_dir():
        raise ManifestError(f"build folder not found: {build_dir}")
    path = build_dir / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(f"{build_dir} is not a build: {MANIFEST_FILE} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a JSON object; found {type(data).__name__}")
    manifest = Manifest.from_dict(data)
    if verify:
        verify_files(build_dir, manifest)
    return manifest

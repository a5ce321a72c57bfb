"""The victim: one query-counting wrapper around the compiled runtime and the PyTorch model.

* Queries (what the goal function sees) go through the compiled runtime
  (``runtime.Session``) in batches, in trace mode: every exit's output for every
  candidate. The exit layer of a candidate is what the exit policy decides on that
  trace (``runtime.policies.replay``), which the runtime documents as identical to
  the early-exit chain; the harness re-measures every adversarial text in the real
  early-exit mode afterwards and reports any difference.
* Gradients (white-box attacks) come from the PyTorch ``MultiExitModel`` that the
  build was exported from (same weights: checked by checksum and by comparing
  outputs on a probe text when the victim is loaded).
* The query budget is enforced here, per attacked example (``begin``): a batch that
  would exceed it is cut to the queries left, as TextAttack's goal functions do.
  Re-querying a text already seen for this example is free (cached).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from benchmarks.attacks.text import AttackedText
from runtime.policies import ExitPolicy, softmax
from runtime.session import Session

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from exporter.model import MultiExitModel

__all__ = ["LossFn", "QueryResult", "Victim", "VictimError", "WordGradients"]

LossFn = Callable[["torch.Tensor", int], "torch.Tensor"]  # (logits [layers, outputs], exit layer) -> scalar
PROBE_TEXT = "a quiet , well-made film that never quite finds its footing ."
PARITY_TOLERANCE = 1e-3


class VictimError(ValueError):
    """The runtime build and the PyTorch model do not describe the same model, or a bad query."""


@dataclass(frozen=True)
class QueryResult:
    """The compiled runtime's answer for one input."""

    trace: np.ndarray  # float32 [layers, outputs]: every exit's raw output
    exit_layer: int  # 1-based, as the exit policy decides
    output: np.ndarray  # float32 [outputs]: the output at the exit layer (the model's answer)

    @property
    def label(self) -> int:
        return int(np.argmax(self.output))

    @property
    def value(self) -> float:
        return float(self.output[0])

    def probabilities(self) -> np.ndarray:
        """Softmax of every exit's output, ``[layers, classes]``."""
        return softmax(self.trace)


@dataclass(frozen=True)
class WordGradients:
    """d(loss)/d(word embedding) at every token of one input, and which tokens make each word."""

    token_ids: np.ndarray  # int64 [tokens]
    grads: np.ndarray  # float32 [tokens, embedding_dim]
    word_tokens: tuple[tuple[int, ...], ...]  # per word of the perturbed column: token positions
    loss: float

    def word_l1(self) -> np.ndarray:
        """Per word: L1 norm of the gradient over the word's tokens (0 for words that were truncated away)."""
        per_token = np.abs(self.grads).sum(axis=1)
        return np.asarray([per_token[list(t)].sum() if t else 0.0 for t in self.word_tokens])


class Victim:
    """Compiled runtime for queries + PyTorch model for gradients, with a per-example query budget."""

    def __init__(
        self,
        session: Session,
        model: "MultiExitModel",
        policy: ExitPolicy,
        tokenizer_json: str,
        max_length: int,
        batch_size: int = 32,
    ) -> None:
        from tokenizers import Tokenizer

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        if model.num_layers != session.num_layers:
            raise VictimError(
                f"the PyTorch model has {model.num_layers} layers but the build has {session.num_layers}"
            )
        if model.task.kind != session.task.kind:
            raise VictimError(f"the PyTorch model is {model.task.kind} but the build is {session.task.kind}")
        self.session = session
        self.model = model.eval()
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.policy = session.check_policy(policy)
        self.batch_size = batch_size
        self._tokenizer = Tokenizer.from_str(tokenizer_json)
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(int(max_length), strategy="longest_first")
        self._budget: int | None = None
        self._queries = 0
        self._cache: dict[object, QueryResult] = {}
        self._embedding_matrix: np.ndarray | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_build(
        cls,
        build_dir: str | os.PathLike,
        policy: ExitPolicy | None = None,
        model_path: str | os.PathLike | None = None,
        threads: int = 1,
        batch_size: int = 32,
    ) -> "Victim":
        """Load the build (runtime) and the ``model.pt`` it was built from (gradients); check they match."""
        from exporter.checkpoint import load_model_source
        from runtime.engines import OrtOptions
        from runtime.integrity import sha256_file
        from runtime.manifest import load_manifest
        from runtime.session import load

        build_dir = Path(build_dir)
        manifest = load_manifest(build_dir)
        source = manifest.source_model or {}
        path = Path(model_path) if model_path is not None else Path(source.get("path") or "")
        if not str(path) or not path.exists():
            raise VictimError(
                f"white-box attacks need the model.pt the build was made from; expected it at "
                f"{source.get('path')!r} (manifest source_model.path), found nothing there: pass --model PATH"
            )
        expected_sha = source.get("sha256")
        if expected_sha and path.is_file():
            found_sha = sha256_file(path)
            if found_sha != expected_sha:
                raise VictimError(
                    f"{path} is not the model this build was made from: expected sha256 {expected_sha}, "
                    f"found {found_sha}"
                )
        session = load(build_dir, OrtOptions(intra_op_threads=threads), batch_size=batch_size)
        ckpt = load_model_source(path)
        tokenizer_json = (build_dir / manifest.tokenizer["file"]).read_text(encoding="utf-8")
        victim = cls(session, ckpt.model, policy or session.default_policy, tokenizer_json, manifest.max_seq_len,
                     batch_size=batch_size)
        victim.check_parity()
        return victim

    def check_parity(self, text: str = PROBE_TEXT, tolerance: float = PARITY_TOLERANCE) -> float:
        """Compare every exit's output of the runtime and the PyTorch model on a probe input."""
        probe = AttackedText.from_input(text)
        batch = self.session.encoder.encode([probe.input])
        runtime_trace = self.session.run_encoded(batch, self.policy, trace=True).trace[:, 0]
        torch_trace = self._torch_logits(probe.input, requires_grad=False)[0].numpy()
        diff = float(np.max(np.abs(runtime_trace - torch_trace)))
        if not diff <= tolerance:
            raise VictimError(
                f"the build and the PyTorch model disagree on a probe text: expected exit outputs within "
                f"{tolerance}, found a difference of {diff:.3g} (is --model the model.pt this build was made from?)"
            )
        return diff

    def set_policy(self, policy: ExitPolicy) -> None:
        """Use ``policy`` for every later query (checked against the task)."""
        self.policy = self.session.check_policy(policy)

    # ------------------------------------------------------------------ properties
    @property
    def num_layers(self) -> int:
        return self.session.num_layers

    @property
    def num_outputs(self) -> int:
        return self.model.task.num_outputs

    @property
    def is_regression(self) -> bool:
        return self.session.task.is_regression

    # ------------------------------------------------------------------ queries
    def begin(self, query_budget: int | None) -> None:
        """Start a new example: reset the query counter, the budget and the cache."""
        if query_budget is not None and query_budget < 1:
            raise ValueError(f"query_budget must be >= 1 or None; got {query_budget}")
        self._budget = query_budget
        self._queries = 0
        self._cache = {}

    @property
    def num_queries(self) -> int:
        return self._queries

    @property
    def queries_left(self) -> int | None:
        return None if self._budget is None else max(0, self._budget - self._queries)

    @property
    def exhausted(self) -> bool:
        return self._budget is not None and self._queries >= self._budget

    def query(self, texts: Sequence[AttackedText]) -> list[QueryResult]:
        """Results for ``texts`` in order; cut short (a prefix) when the budget runs out."""
        results: list[QueryResult | None] = []
        todo: dict[object, list[int]] = {}
        for i, text in enumerate(texts):
            key = text.input
            if key in self._cache:
                results.append(self._cache[key])
                continue
            if key not in todo:
                left = self.queries_left
                if left is not None and len(todo) >= left:
                    break
                todo[key] = []
            todo[key].append(i)
            results.append(None)
        keys = list(todo)
        for start in range(0, len(keys), self.batch_size):
            chunk = keys[start : start + self.batch_size]
            batch = self.session.encoder.encode(chunk)
            chain = self.session.run_encoded(batch, self.policy, trace=True)
            for row, key in enumerate(chunk):
                result = QueryResult(
                    trace=np.ascontiguousarray(chain.trace[:, row]),
                    exit_layer=int(chain.exit_layer[row]),
                    output=np.ascontiguousarray(chain.outputs[row]),
                )
                self._cache[key] = result
                for i in todo[key]:
                    results[i] = result
        self._queries += len(keys)
        return [r for r in results if r is not None]

    # ------------------------------------------------------------------ gradients
    def _encode_for_torch(self, item):
        import torch

        encoding = self._tokenizer.encode(item) if isinstance(item, str) else self._tokenizer.encode(*item)
        ids = torch.tensor([encoding.ids], dtype=torch.long)
        types = torch.tensor([encoding.type_ids], dtype=torch.long)
        return encoding, ids, types, torch.ones_like(ids)

    def _torch_logits(self, item, requires_grad: bool):
        import torch

        encoding, ids, types, mask = self._encode_for_torch(item)
        table = self.model.word_embeddings()
        with torch.set_grad_enabled(requires_grad):
            word = table(ids).detach().requires_grad_(requires_grad)
            hidden = self.model.embed_with_word_embeddings(word, ids, mask, types)
            outputs = []
            for layer in range(self.model.num_layers):
                hidden = self.model.run_layer(layer, hidden, mask)
                outputs.append(self.model.exit_output(layer, hidden, mask))
            logits = torch.cat(outputs, dim=0)  # [layers, outputs]
        return logits, word, encoding

    def gradients(self, text: AttackedText, loss_fn: LossFn) -> WordGradients:
        """d loss / d word embeddings for ``text``; ``loss_fn(logits [layers, outputs], exit_layer)``.

        The exit layer passed to ``loss_fn`` is the runtime's (a cached query: free
        when the text was already queried, as every text under search is).
        """
        (current,) = self.query([text]) or [None]
        if current is None:
            raise VictimError("query budget exhausted before the gradient of the current text could be taken")
        logits, word, encoding = self._torch_logits(text.input, requires_grad=True)
        loss = loss_fn(logits, current.exit_layer)
        loss.backward()
        grads = word.grad[0].detach().numpy().astype(np.float32, copy=True)
        return WordGradients(
            token_ids=np.asarray(encoding.ids, dtype=np.int64),
            grads=grads,
            word_tokens=self._word_tokens(text, encoding),
            loss=float(loss.detach()),
        )

    @staticmethod
    def _word_tokens(text: AttackedText, encoding) -> tuple[tuple[int, ...], ...]:
        sequence_ids = encoding.sequence_ids
        target = text.column if len(text.columns) > 1 else 0
        spans = text.word_char_spans()
        owners: list[list[int]] = [[] for _ in spans]
        starts = [s for s, _ in spans]
        import bisect

        for pos, (seq, (a, b)) in enumerate(zip(sequence_ids, encoding.offsets)):
            if seq != target or b <= a:
                continue
            # the word whose span overlaps [a, b)
            k = bisect.bisect_right(starts, a) - 1
            for j in (k, k + 1):
                if 0 <= j < len(spans) and spans[j][0] < b and a < spans[j][1]:
                    owners[j].append(pos)
        return tuple(tuple(o) for o in owners)

    # ------------------------------------------------------------------ vocabulary
    def embedding_matrix(self) -> np.ndarray:
        """The victim's word-embedding table ``[vocab, dim]`` (float32, cached)."""
        if self._embedding_matrix is None:
            self._embedding_matrix = self.model.word_embeddings().weight.detach().numpy().astype(np.float32)
        return self._embedding_matrix

    def vocabulary(self) -> list[str]:
        """Token strings by id (as many as the embedding table has rows; unknown ids are '')."""
        size = self.embedding_matrix().shape[0]
        vocab = [""] * size
        for token, idx in self._tokenizer.get_vocab(with_added_tokens=True).items():
            if 0 <= idx < size:
                vocab[idx] = token
        return vocab

    def special_token_ids(self) -> set[int]:
        specials = set()
        for token in ("[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]", "<s>", "</s>", "<pad>", "<mask>", "<unk>"):
            idx = self._tokenizer.token_to_id(token)
            if idx is not None:
                specials.add(int(idx))
        return specials

    def token_ids(self, word: str) -> list[int]:
        """Word pieces of ``word`` on its own (no special tokens)."""
        return list(self._tokenizer.encode(word, add_special_tokens=False).ids)

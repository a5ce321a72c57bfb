"""Build-time parity: every exit output of the compiled chain vs the eager PyTorch model.

Cases differ from the export shapes on purpose: random token batches at several
batch sizes and lengths with ragged padding, and real tokenized sentences
(single texts and pairs). The compiled side is chained exactly as at run time
(each engine consumes the previous engine's output), so errors accumulate as
they would in deployment. All cases run; every failure is reported together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from exporter.model import MultiExitModel
from exporter.reference import TorchExecutor
from runtime.chain import StepExecutor
from runtime.tokenization import EncodedBatch, TextEncoder

__all__ = ["ParityCase", "ParityReport", "check_parity", "default_cases"]

REAL_SENTENCES = (
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "the film is strictly routine .",
    "a gorgeous , witty , seductive movie .",
    "Nothing about this movie works, from the plot to the acting, and I wanted my money back.",
    "An astonishing achievement.",
    "A man is playing a flute.",
    "The cat sat quietly on the warm windowsill while rain fell outside.",
)
REAL_PAIRS = (
    ("A plane is taking off.", "An air plane is taking off."),
    ("A man is playing a large flute.", "A man is playing a flute."),
    ("Three men are playing chess.", "Two men are playing chess in the park on a sunny afternoon."),
)


@dataclass(frozen=True)
class ParityCase:
    name: str
    batch: EncodedBatch


@dataclass
class ParityReport:
    tolerance: float
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per case

    @property
    def max_abs_error(self) -> float:
        errors = [e for r in self.rows for e in r["exit_max_abs"]]
        return float(np.max(errors)) if errors else 0.0  # NaN propagates

    @property
    def passed(self) -> bool:
        return bool(self.rows) and not self.failures()

    def failures(self) -> list[str]:
        out = []
        for r in self.rows:
            for layer, err in enumerate(r["exit_max_abs"], start=1):
                if not err <= self.tolerance:  # also catches NaN
                    out.append(f"{r['case']}: exit {layer} max-abs {err:.3g} > {self.tolerance:g}")
        return out

    def table(self) -> str:
        n = len(self.rows[0]["exit_max_abs"]) if self.rows else 0
        head = "| case | batch x seq | " + " | ".join(f"exit {i}" for i in range(1, n + 1)) + " | hidden | ok |"
        lines = [head, "|---" * (n + 4) + "|"]
        for r in self.rows:
            ok = all(e <= self.tolerance for e in r["exit_max_abs"])
            errs = " | ".join(f"{e:.1e}" for e in r["exit_max_abs"])
            lines.append(f"| {r['case']} | {r['batch']}x{r['seq']} | {errs} | {r['hidden_max_abs']:.1e} | {'yes' if ok else 'NO'} |")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"tolerance": self.tolerance, "max_abs_error": self.max_abs_error, "passed": self.passed, "cases": self.rows}


def _random_batch(rng: np.random.Generator, batch: int, seq: int, vocab: int, pad_id: int) -> EncodedBatch:
    ids = rng.integers(1000 if vocab > 2000 else 1, vocab, size=(batch, seq), dtype=np.int64)
    lengths = rng.integers(2, seq + 1, size=batch)
    lengths[0] = seq  # at least one full row
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
    ids = np.where(mask == 1, ids, pad_id)
    types = np.zeros_like(ids)
    half = np.maximum(lengths // 2, 1)
    types[np.arange(seq)[None, :] >= half[:, None]] = 1
    types *= mask
    return EncodedBatch(ids, mask, types, np.zeros(batch, dtype=bool))


def default_cases(model: MultiExitModel, encoder: TextEncoder, seed: int = 0) -> list[ParityCase]:
    rng = np.random.default_rng(seed)
    vocab = int(model.config.vocab_size)
    type_vocab = int(getattr(model.config, "type_vocab_size", 1) or 1)
    cases = []
    for batch, seq in ((1, 5), (3, 17), (8, min(encoder.max_length, 48)), (2, encoder.max_length)):
        b = _random_batch(rng, batch, seq, vocab, encoder.pad_id)
        if type_vocab < 2:
            b.token_type_ids[:] = 0
        cases.append(ParityCase(f"random-{batch}x{seq}", b))
    cases.append(ParityCase("text-1", encoder.encode(list(REAL_SENTENCES[:1]))))
    cases.append(ParityCase(f"text-{len(REAL_SENTENCES)}", encoder.encode(list(REAL_SENTENCES))))
    pairs = encoder.encode(list(REAL_PAIRS))
    if type_vocab < 2:
        pairs.token_type_ids[:] = 0
    cases.append(ParityCase(f"pairs-{len(REAL_PAIRS)}", pairs))
    return cases


def _all_exits(executor: StepExecutor, batch: EncodedBatch) -> tuple[list[np.ndarray], list[np.ndarray]]:
    hidden = executor.embed(batch)
    hiddens, outs = [], []
    for index in range(executor.num_layers):
        hidden, out = executor.layer(index, hidden, batch.attention_mask)
        hiddens.append(hidden)
        outs.append(out)
    return hiddens, outs


def check_parity(
    model: MultiExitModel, compiled: StepExecutor, cases: list[ParityCase], tolerance: float = 1e-4, progress=None
) -> ParityReport:
    """Compare every exit output (and hidden states on real tokens) of ``compiled`` vs eager ``model``."""
    reference = TorchExecutor(model)
    report = ParityReport(tolerance)
    for case in cases:
        ref_hidden, ref_out = _all_exits(reference, case.batch)
        got_hidden, got_out = _all_exits(compiled, case.batch)
        valid = case.batch.attention_mask.astype(bool)
        exit_errs = [float(np.max(np.abs(g.astype(np.float64) - r))) for g, r in zip(got_out, ref_out)]
        hidden_err = max(float(np.max(np.abs(g[valid].astype(np.float64) - r[valid]))) for g, r in zip(got_hidden, ref_hidden))
        report.rows.append(
            {
                "case": case.name,
                "batch": int(case.batch.input_ids.shape[0]),
                "seq": int(case.batch.input_ids.shape[1]),
                "exit_max_abs": exit_errs,
                "hidden_max_abs": hidden_err,
            }
        )
        if progress is not None:
            progress(case.name)
    return report

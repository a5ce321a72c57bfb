"""Slowdown harness: run attack recipes, then measure clean vs adversarial sets on the compiled runtime.

Everything measured here runs the compiled runtime in its real early-exit mode
(``Session.predict``; no trace): task metric, exit layers, batch-1 latency
(interleaved repeats) and batch-32 throughput. The attacks themselves score
candidates in trace mode (see ``benchmarks.attacks.victim``); the exit layers they
recorded are compared with the real early-exit run and differences are reported.

Definitions (per set of n inputs, L layers, exit layers e_1..e_n):

* mean exit layer ``m``; layer speed-up ``L / m``; efficiency gain ``g = 1 - m / L``;
* gain erased (layers) ``(g_clean - g_adv) / g_clean`` (1 = as slow as full depth);
* efficacy: area under the cumulative exit curve, ``(1/L) sum_{i=1..L} F(i)`` with
  ``F(i)`` the fraction of inputs that exited at layer <= i (as DeepSloth/WAFFLE:
  1 = everything exits at layer 1, 1/L = everything runs to the last layer);
* latency: per request at batch 1, all sets interleaved request by request over
  repeated passes (set order reshuffled each pass); p50/p90/p99 over all
  requests; ``t`` = mean over inputs of the per-input median over passes;
  wall-clock gain erased ``(t_adv - t_clean) / (t_full - t_clean)``;
* the adversarial set of an attack holds one text per input: the perturbed text
  of a succeeded attack, the best text found by a failed one (what an attacker
  would send), the original for a skipped one (it already met the goal);
* attack success rate = succeeded / (succeeded + failed) (skipped excluded, as
  TextAttack); mean queries and mean fraction of words changed over attacked
  (non-skipped) inputs; attack seconds per sample over all n.
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from runtime.data import GlueTask, LabeledData, get_task, load_glue
from runtime.policies import ExitPolicy, FullDepthPolicy, PatiencePolicy, RegressionPatiencePolicy
from runtime.session import Session
from runtime.tokenization import TextInput

if TYPE_CHECKING:  # pragma: no cover
    from benchmarks.attacks.results import AttackResult

__all__ = [
    "SetMeasurement",
    "SlowdownConfig",
    "attack_summary",
    "efficacy",
    "efficiency_gain",
    "exit_metrics",
    "gain_erased",
    "latency_stats",
    "measure_latency",
    "measure_throughput",
    "run_slowdown",
    "wallclock_gain_erased",
]

FULL, CLEAN = "full_depth", "clean"


# --------------------------------------------------------------------------- metrics
def efficiency_gain(mean_exit: float, num_layers: int) -> float:
    """``1 - mean_exit / L``: the share of layer computation early exit saves."""
    return 1.0 - mean_exit / num_layers


def gain_erased(gain_clean: float, gain_adv: float) -> float | None:
    """``(g_clean - g_adv) / g_clean``; None when the clean set saves nothing."""
    if gain_clean <= 0:
        return None
    return (gain_clean - gain_adv) / gain_clean


def efficacy(exit_layers: Sequence[int], num_layers: int) -> float:
    """Area under the cumulative exit curve, ``(1/L) sum_i F(i)``."""
    exits = np.asarray(exit_layers)
    if exits.size == 0:
        raise ValueError("efficacy of an empty set of exit layers")
    if exits.min() < 1 or exits.max() > num_layers:
        raise ValueError(f"exit layers must be in 1..{num_layers}; found {exits.min()}..{exits.max()}")
    cumulative = [(exits <= i).mean() for i in range(1, num_layers + 1)]
    return float(np.mean(cumulative))


def exit_metrics(exit_layers: Sequence[int], num_layers: int) -> dict[str, Any]:
    exits = np.asarray(exit_layers)
    mean_exit = float(exits.mean())
    return {
        "mean_exit_layer": mean_exit,
        "layer_speedup": num_layers / mean_exit,
        "efficiency_gain": efficiency_gain(mean_exit, num_layers),
        "efficacy": efficacy(exits, num_layers),
        "exit_histogram": np.bincount(exits, minlength=num_layers + 1)[1:].tolist(),
    }


def wallclock_gain_erased(t_adv: float, t_clean: float, t_full: float) -> float | None:
    """``(t_adv - t_clean) / (t_full - t_clean)``; None when early exit saves no time."""
    if t_full - t_clean <= 0:
        return None
    return (t_adv - t_clean) / (t_full - t_clean)


def latency_stats(latencies_ms: np.ndarray) -> dict[str, float]:
    """``latencies_ms`` ``[inputs, passes]`` -> percentiles over all requests and the per-input-median mean."""
    flat = np.asarray(latencies_ms, dtype=np.float64).ravel()
    return {
        "latency_p50_ms": float(np.percentile(flat, 50)),
        "latency_p90_ms": float(np.percentile(flat, 90)),
        "latency_p99_ms": float(np.percentile(flat, 99)),
        "latency_mean_ms": float(np.median(latencies_ms, axis=1).mean()),
    }


def attack_summary(results: Sequence["AttackResult"]) -> dict[str, Any]:
    from benchmarks.attacks.results import AttackStatus

    counts = {s.value: sum(r.status is s for r in results) for s in AttackStatus}
    attacked = [r for r in results if r.attacked]
    tried = counts["succeeded"] + counts["failed"]
    return {
        "num_succeeded": counts["succeeded"],
        "num_failed": counts["failed"],
        "num_skipped": counts["skipped"],
        "success_rate": counts["succeeded"] / tried if tried else None,
        "mean_queries": float(np.mean([r.num_queries for r in attacked])) if attacked else None,
        "mean_fraction_words_changed": float(np.mean([r.fraction_changed for r in attacked])) if attacked else None,
        "seconds_per_sample": float(np.mean([r.seconds for r in results])) if results else None,
    }


# --------------------------------------------------------------------------- measurement
@dataclass
class SetMeasurement:
    """One set of inputs, measured on the compiled runtime in early-exit mode."""

    name: str
    inputs: list[TextInput]
    policy: ExitPolicy
    exit_layers: np.ndarray
    predictions: np.ndarray  # label index or value
    metrics: dict[str, float]
    latencies_ms: np.ndarray | None = None  # [inputs, passes]
    throughput: float | None = None  # samples / s at batch 32
    results: list["AttackResult"] = field(default_factory=list)


def predict_set(session: Session, inputs: Sequence[TextInput], policy: ExitPolicy, batch_size: int):
    preds = session.predict(list(inputs), policy=policy, batch_size=batch_size)
    exits = np.asarray([p.exit_layer for p in preds], dtype=np.int64)
    if session.task.is_regression:
        values = np.asarray([p.value for p in preds], dtype=np.float64)
    else:
        values = np.asarray([p.label_index for p in preds], dtype=np.int64)
    return exits, values


def measure_latency(
    session: Session,
    sets: dict[str, tuple[Sequence[TextInput], ExitPolicy]],
    passes: int,
    seed: int = 0,
    warmup: int = 8,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, np.ndarray]:
    """Batch-1 latency (ms) ``[inputs, passes]`` per set; requests interleaved across sets.

    Each pass visits the inputs in order and, for each input, sends that input of
    every set in an order reshuffled per pass, so drift and noise hit all sets alike.
    """
    if passes < 1:
        raise ValueError(f"passes must be >= 1; got {passes}")
    names = list(sets)
    sizes = {len(inputs) for inputs, _ in sets.values()}
    if len(sizes) != 1:
        raise ValueError(f"every set must have the same number of inputs; got {sorted(sizes)}")
    n = sizes.pop()
    rng = np.random.default_rng(seed)
    for i in range(min(warmup, n)):
        for name in names:
            inputs, policy = sets[name]
            session.predict([inputs[i]], policy=policy, batch_size=1)
    out = {name: np.zeros((n, passes)) for name in names}
    for p in range(passes):
        order = [names[k] for k in rng.permutation(len(names))]
        for i in range(n):
            for name in order:
                inputs, policy = sets[name]
                start = clock()
                session.predict([inputs[i]], policy=policy, batch_size=1)
                out[name][i, p] = (clock() - start) * 1000.0
    return out


def measure_throughput(
    session: Session,
    sets: dict[str, tuple[Sequence[TextInput], ExitPolicy]],
    batch_size: int = 32,
    passes: int = 3,
    seed: int = 0,
) -> dict[str, float]:
    """Samples per second streaming each set at ``batch_size`` (median over interleaved passes)."""
    rng = np.random.default_rng(seed + 1)
    names = list(sets)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(passes):
        for k in rng.permutation(len(names)):
            inputs, policy = sets[names[k]]
            start = time.perf_counter()
            session.predict(list(inputs), policy=policy, batch_size=batch_size)
            seconds[names[k]].append(time.perf_counter() - start)
    return {name: len(sets[name][0]) / statistics.median(seconds[name]) for name in names}


# --------------------------------------------------------------------------- the run
@dataclass(frozen=True)
class SlowdownConfig:
    build_dir: Path
    task: str
    out_dir: Path
    data_dir: Path | None = None
    attacks: tuple[str, ...] = ("accuracy", "same", "waffle")
    n: int = 200
    patience: int | None = None
    tau: float | None = None
    seed: int = 0
    threads: int = 1
    batch_size: int = 32
    latency_passes: int = 5
    throughput_passes: int = 3
    model_path: Path | None = None
    wordnet_dir: Path = Path("/usr/share/wordnet")
    cache_dir: Path | None = None
    split: str = "dev"
    machine: str = "unspecified"
    progress: bool = True
    recipe_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)


def select_policy(session: Session, patience: int | None, tau: float | None) -> ExitPolicy:
    if patience is None:
        return session.default_policy
    if session.task.is_regression:
        default_tau = getattr(session.default_policy, "tau", None)
        chosen = tau if tau is not None else default_tau
        if chosen is None:
            raise ValueError("a regression task needs --tau (the build's default policy has none)")
        return RegressionPatiencePolicy(patience, float(chosen))
    return PatiencePolicy(patience)


def full_depth_policy(session: Session, policy: ExitPolicy) -> ExitPolicy:
    """Full depth. Regression builds get a patience of L (never reached before the last layer), because
    ``FullDepthPolicy`` checks outputs as a classification policy and rejects one-output exits."""
    if session.task.is_regression:
        return RegressionPatiencePolicy(session.num_layers, float(getattr(policy, "tau", 1.0)))
    return FullDepthPolicy()


def sample_indices(total: int, n: int, seed: int) -> list[int]:
    """``n`` distinct indices of ``0..total-1``, seeded, in ascending order."""
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    if n >= total:
        return list(range(total))
    return sorted(int(i) for i in np.random.default_rng(seed).choice(total, size=n, replace=False))


def _labels_text(task: GlueTask, session: Session, values: np.ndarray) -> list[str]:
    if task.kind == "regression":
        return [f"{v:.3f}" for v in values]
    return [session.task.labels[int(v)] for v in values]


def run_attacks(recipes, data: LabeledData, progress: bool, log) -> dict[str, list["AttackResult"]]:
    from tqdm import tqdm

    out: dict[str, list[AttackResult]] = {}
    for recipe in recipes:
        results: list[AttackResult] = []
        bar = tqdm(range(len(data)), desc=f"attack {recipe.name}", disable=not progress, unit="sample")
        for i in bar:
            results.append(recipe.run(i, data.inputs[i], data.labels[i]))
            done = [r for r in results if r.attacked]
            bar.set_postfix(
                succeeded=f"{sum(r.status.value == 'succeeded' for r in results)}/{len(done)}",
                exit=f"{np.mean([r.exit_after for r in results]):.2f}",
            )
        bar.close()
        out[recipe.name] = results
        log(f"{recipe.name}: {attack_summary(results)}")
    return out


def run_slowdown(cfg: SlowdownConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Attack, measure, and write report.json/report.md/examples TSV/plots to ``cfg.out_dir``."""
    from benchmarks.attacks.recipes import Resources, build_recipe, recipe_names
    from benchmarks.attacks.victim import Victim
    from runtime.manifest import load_manifest

    unknown = [a for a in cfg.attacks if a not in recipe_names()]
    if unknown or not cfg.attacks:
        raise ValueError(f"--attacks: expected names from {recipe_names()}; got {list(cfg.attacks)}")
    task = get_task(cfg.task)
    manifest = load_manifest(cfg.build_dir)
    if manifest.task.get("name") != task.name:
        raise ValueError(f"--task {task.name!r} does not match the build's task {manifest.task.get('name')!r}")
    started = time.perf_counter()
    load = {"start": _load_average()}
    victim = Victim.from_build(cfg.build_dir, None, cfg.model_path, threads=cfg.threads, batch_size=cfg.batch_size)
    session = victim.session
    policy = select_policy(session, cfg.patience, cfg.tau)
    victim.set_policy(policy)

    full = load_glue(task, cfg.split, cfg.data_dir)
    indices = sample_indices(len(full), cfg.n, cfg.seed)
    data = LabeledData([full.inputs[i] for i in indices], full.labels[indices])
    log(f"{task.name} {cfg.split}: attacking {len(data)} of {len(full)} inputs (seed {cfg.seed}); policy {policy.to_dict()}")

    resources = Resources(wordnet_dir=cfg.wordnet_dir, cache_dir=cfg.cache_dir)
    recipes = [build_recipe(name, victim, resources, seed=cfg.seed, **cfg.recipe_overrides.get(name, {}))
               for name in cfg.attacks]
    for recipe in recipes:
        log(f"recipe {recipe.name}: {json.dumps(recipe.describe(), default=str)}")
    attack_start = time.perf_counter()
    results = run_attacks(recipes, data, cfg.progress, log)
    attack_wall_seconds = time.perf_counter() - attack_start
    attack_seconds = {name: sum(r.seconds for r in rs) for name, rs in results.items()}

    log("measuring clean and adversarial sets on the compiled runtime (early-exit mode)")
    sets: dict[str, SetMeasurement] = {}
    clean_inputs = list(data.inputs)
    for name, inputs, pol in [(FULL, clean_inputs, full_depth_policy(session, policy)), (CLEAN, clean_inputs, policy)] + [
        (r, [res.perturbed.text.input for res in results[r]], policy) for r in results
    ]:
        exits, preds = predict_set(session, inputs, pol, cfg.batch_size)
        metrics = task.metrics(preds, data.labels)
        sets[name] = SetMeasurement(name, inputs, pol, exits, preds, metrics, results=results.get(name, []))
    load["before_latency"] = _load_average()
    log(f"latency at batch 1: {cfg.latency_passes} interleaved passes over {len(data)} inputs x {len(sets)} sets")
    latencies = measure_latency(session, {k: (s.inputs, s.policy) for k, s in sets.items()}, cfg.latency_passes,
                                seed=cfg.seed)
    throughput = measure_throughput(session, {k: (s.inputs, s.policy) for k, s in sets.items()}, cfg.batch_size,
                                    cfg.throughput_passes, seed=cfg.seed)
    for name, s in sets.items():
        s.latencies_ms = latencies[name]
        s.throughput = throughput[name]

    load["end"] = _load_average()
    report = build_report(cfg, task, session, policy, sets, recipes, attack_seconds,
                          total_seconds=time.perf_counter() - started,
                          attack_wall_seconds=attack_wall_seconds)
    report["load_average_1min"] = load
    write_outputs(cfg.out_dir, report, sets, task, session, data)
    log(f"wrote {cfg.out_dir}/report.json, report.md, adversarial_examples.tsv, exit_histogram.png, latency_cdf.png")
    return report


def _load_average() -> float | None:
    """The machine's 1-minute load average (other work sharing the cores shows up here)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


# --------------------------------------------------------------------------- report
def build_report(cfg, task, session, policy, sets, recipes, attack_seconds, total_seconds, attack_wall_seconds):
    import datetime
    import platform

    num_layers = session.num_layers
    clean_gain = efficiency_gain(float(sets[CLEAN].exit_layers.mean()), num_layers)
    lat = {name: latency_stats(s.latencies_ms) for name, s in sets.items()}
    t_full, t_clean = lat[FULL]["latency_mean_ms"], lat[CLEAN]["latency_mean_ms"]
    out_sets: dict[str, Any] = {}
    for name, s in sets.items():
        em = exit_metrics(s.exit_layers, num_layers)
        entry: dict[str, Any] = {
            "metric_name": task.metric_name,
            "metric": s.metrics[task.metric_name],
            "metrics": s.metrics,
            **em,
            "gain_erased_layers": gain_erased(clean_gain, em["efficiency_gain"]),
            **lat[name],
            "gain_erased_wallclock": wallclock_gain_erased(lat[name]["latency_mean_ms"], t_clean, t_full),
            "throughput_b32_samples_per_s": s.throughput,
            "success_rate": None,
            "seconds_per_sample": None,
        }
        if s.results:
            entry.update(attack_summary(s.results))
            recorded = np.asarray([r.exit_after for r in s.results])
            entry["exit_mismatches_trace_vs_early_exit"] = int((recorded != s.exit_layers).sum())
        out_sets[name] = entry
    return {
        "harness": "pabee-deploy slowdown",
        "machine": cfg.machine,
        "date": datetime.date.today().isoformat(),
        "platform": platform.platform(),
        "task": task.name,
        "split": cfg.split,
        "build": str(cfg.build_dir),
        "num_layers": num_layers,
        "policy": policy.to_dict(),
        "n": len(sets[CLEAN].inputs),
        "seed": cfg.seed,
        "runtime_threads": cfg.threads,
        "latency_passes": cfg.latency_passes,
        "throughput_passes": cfg.throughput_passes,
        "batch_size_throughput": cfg.batch_size,
        "recipes": {r.name: r.describe() for r in recipes},
        "attack_seconds": attack_seconds,
        "attack_wall_seconds": attack_wall_seconds,
        "total_seconds": total_seconds,
        "sets": out_sets,
    }


def _fmt(value: Any, spec: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, spec)


def render_markdown(report: dict[str, Any]) -> str:
    L = report["num_layers"]
    lines = [
        f"# Slowdown attacks on {report['task']} ({report['split']}, n={report['n']})",
        "",
        f"- machine: {report['machine']}; date: {report['date']}; platform: `{report['platform']}`",
        f"- build: `{report['build']}` ({L} layers); policy: `{json.dumps(report['policy'])}`; "
        f"ONNX Runtime threads: {report['runtime_threads']}; seed: {report['seed']}",
        "- attack time: " + ", ".join(f"{k} {v:.0f} s" for k, v in report["attack_seconds"].items())
        + f" (all attacks {report['attack_wall_seconds'] / 60:.1f} min); whole run including loading and "
        f"measurement {report['total_seconds'] / 60:.1f} min",
        *(["- 1-minute load average (start / before latency / end): "
           + " / ".join(str(v) for v in report["load_average_1min"].values())]
          if report.get("load_average_1min") else []),
        "",
        "| set | " + report["sets"]["clean"]["metric_name"] + " | mean exit | layer speed-up | gain erased (layers) "
        "| efficacy | p50 ms | p90 ms | p99 ms | gain erased (wall-clock) | b32 samples/s | success | queries "
        "| words changed | attack s/sample |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in report["sets"].items():
        lines.append(
            f"| {name} | {_fmt(s['metric'])} | {_fmt(s['mean_exit_layer'], '.2f')} / {L} | "
            f"{_fmt(s['layer_speedup'], '.2f')}x | {_fmt(s['gain_erased_layers'])} | {_fmt(s['efficacy'])} | "
            f"{_fmt(s['latency_p50_ms'], '.2f')} | {_fmt(s['latency_p90_ms'], '.2f')} | {_fmt(s['latency_p99_ms'], '.2f')} | "
            f"{_fmt(s['gain_erased_wallclock'])} | {_fmt(s['throughput_b32_samples_per_s'], '.0f')} | "
            f"{_fmt(s['success_rate'])} | {_fmt(s.get('mean_queries'), '.0f')} | "
            f"{_fmt(s.get('mean_fraction_words_changed'))} | {_fmt(s['seconds_per_sample'], '.2f')} |"
        )
    lines += ["", "Exit-layer histograms (inputs exiting at layer 1..L):", ""]
    for name, s in report["sets"].items():
        extra = ""
        if "num_succeeded" in s:
            extra = (f"; succeeded/failed/skipped {s['num_succeeded']}/{s['num_failed']}/{s['num_skipped']}; "
                     f"exit layers recorded by the attack (trace mode) that differ from the early-exit run: "
                     f"{s['exit_mismatches_trace_vs_early_exit']}")
        lines.append(f"- {name}: {s['exit_histogram']}{extra}")
    lines += ["", "![exit layers](exit_histogram.png) ![latency CDF](latency_cdf.png)", "", "## Recipes", ""]
    for name, desc in report["recipes"].items():
        lines += [f"### {name}: {desc['paper']}", "", "```json", json.dumps({"params": desc["params"],
                  "parts": desc["parts"]}, indent=1, default=str), "```", ""]
    lines += ["## Definitions", "", (__doc__ or "").split("Definitions (per set of n inputs, L layers, exit layers e_1..e_n):")[-1].strip(), ""]
    return "\n".join(lines)


def write_outputs(out_dir: Path, report, sets: dict[str, SetMeasurement], task: GlueTask, session: Session,
                  data: LabeledData) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    (out_dir / "report.md").write_text(render_markdown(report), encoding="utf-8")
    write_examples_tsv(out_dir / "adversarial_examples.tsv", sets, task, session, data)
    plot_exit_histogram(out_dir / "exit_histogram.png", report)
    plot_latency_cdf(out_dir / "latency_cdf.png", sets)


def _cell(text: Any) -> str:
    return str(text).replace("\t", " ").replace("\n", " ")


def _side(item: TextInput, column: int) -> str:
    return item if isinstance(item, str) else item[column]


def write_examples_tsv(path: Path, sets: dict[str, SetMeasurement], task: GlueTask, session: Session,
                       data: LabeledData) -> None:
    clean = sets[CLEAN]
    clean_labels = _labels_text(task, session, clean.predictions)
    gold = _labels_text(task, session, data.labels) if task.kind == "regression" else [
        session.task.labels[int(v)] for v in data.labels]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(["attack", "index", "status", "original", "perturbed", "exit_before", "exit_after",
                         "label_before", "label_after", "gold", "words_changed", "queries"])
        for name, s in sets.items():
            if not s.results:
                continue
            after = _labels_text(task, session, s.predictions)
            for k, r in enumerate(s.results):
                column = r.original.text.column
                writer.writerow([name, k, r.status.value, _cell(_side(r.original.text.input, column)),
                                 _cell(_side(r.perturbed.text.input, column)), int(clean.exit_layers[k]),
                                 int(s.exit_layers[k]), clean_labels[k], after[k], gold[k], r.words_changed,
                                 r.num_queries])


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_exit_histogram(path: Path, report: dict[str, Any]) -> None:
    plt = _pyplot()
    L = report["num_layers"]
    names = [n for n in report["sets"] if n != FULL]
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=80)
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        hist = np.asarray(report["sets"][name]["exit_histogram"], dtype=float)
        ax.bar(np.arange(1, L + 1) + (k - (len(names) - 1) / 2) * width, hist / hist.sum(), width, label=name)
    ax.set_xlabel("exit layer")
    ax.set_ylabel("fraction of inputs")
    ax.set_xticks(range(1, L + 1))
    ax.set_title(f"{report['task']}: exit layers, {json.dumps(report['policy'])}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_latency_cdf(path: Path, sets: dict[str, SetMeasurement]) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=80)
    for name, s in sets.items():
        values = np.sort(np.asarray(s.latencies_ms).ravel())
        ax.plot(values, np.arange(1, len(values) + 1) / len(values), label=name, linewidth=1.2)
    ax.set_xlabel("latency per request at batch 1 (ms)")
    ax.set_ylabel("fraction of requests")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

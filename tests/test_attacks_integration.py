"""The attack harness on tiny random models: victim (runtime + torch), recipes end to end, the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.attacks.recipes import Resources, build_recipe
from benchmarks.attacks.results import AttackStatus
from benchmarks.attacks.text import AttackedText
from benchmarks.attacks.victim import Victim, VictimError
from runtime.policies import PatiencePolicy, RegressionPatiencePolicy
from tests.conftest import make_checkpoint

WORDNET = Path("/usr/share/wordnet")
needs_wordnet = pytest.mark.skipif(
    not (WORDNET / "data.noun").exists(),
    reason="WordNet not installed at /usr/share/wordnet (apt-get install -y wordnet-base)",
)
SENTENCES = [
    "a charming and often affecting journey .",
    "the plot is nothing but boilerplate clichés from start to finish .",
    "an absorbing , well-acted film that never quite finds its footing .",
    "it 's slow -- very , very slow .",
    "a gorgeous , witty , seductive movie .",
    "the acting is stiff and the story makes no sense at all .",
]
PAIRS = [
    ("a man is playing a guitar .", "a man plays the guitar loudly ."),
    ("a woman is slicing an onion .", "someone is cutting vegetables in the kitchen ."),
    ("two dogs run on the beach .", "the cat sleeps on a sofa near the window ."),
    ("a child rides a red bike .", "a kid is riding a bicycle down the street ."),
]
SAME_SMALL = dict(hotflip_top_n=20, char_max_candidates=20, beam_width=2, max_rounds=2)


@pytest.fixture(scope="module")
def victim(bert_build):
    return Victim.from_build(bert_build, PatiencePolicy(1), threads=1)


@pytest.fixture(scope="module")
def wordnet_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("wordnet-cache")


@pytest.mark.parametrize("backbone", ["bert", "roberta", "albert", "distilbert", "electra"])
def test_embed_with_word_embeddings_equals_embed(tmp_path, backbone):
    _, ckpt = make_checkpoint(tmp_path, backbone)
    model = ckpt.model
    ids = torch.randint(1000, 5000, (2, 7))
    ids[:, 0] = 101
    mask = torch.ones_like(ids)
    types = torch.zeros_like(ids)
    with torch.no_grad():
        plain = model.embed(ids, mask, types)
        words = model.word_embeddings()(ids)
        hooked = model.embed_with_word_embeddings(words, ids, mask, types)
        shifted = model.embed_with_word_embeddings(words + 1.0, ids, mask, types)
    torch.testing.assert_close(hooked, plain)
    assert not torch.allclose(shifted, plain)
    with torch.no_grad():
        assert torch.equal(model.embed(ids, mask, types), plain)  # the hook is gone afterwards
    with pytest.raises(ValueError, match="word_embeds must have shape"):
        model.embed_with_word_embeddings(words[:, :3], ids, mask, types)


def test_victim_budget_cache_and_trace_exits(victim):
    texts = [AttackedText.from_input(s) for s in SENTENCES]
    victim.begin(query_budget=3)
    first = victim.query(texts[:2])
    assert len(first) == 2 and victim.num_queries == 2
    again = victim.query(texts[:2])  # cached: free
    assert victim.num_queries == 2 and again[0] is first[0]
    cut = victim.query(texts)  # 4 new texts, 1 query left: cut to a prefix
    assert len(cut) == 3 and victim.exhausted and victim.num_queries == 3
    assert victim.query(texts[3:]) == []
    victim.begin(None)
    results = victim.query(texts)
    preds = victim.session.predict([t.input for t in texts], policy=victim.policy, batch_size=1)
    assert [r.exit_layer for r in results] == [p.exit_layer for p in preds]  # trace replay == early exit
    for r, p in zip(results, preds):
        np.testing.assert_allclose(r.probabilities()[r.exit_layer - 1], p.scores, atol=1e-5)
    with pytest.raises(ValueError, match="query_budget"):
        victim.begin(0)


def test_victim_gradients_map_words_to_tokens(victim):
    text = AttackedText.from_input("unflinchingly bleak and desperate")
    victim.begin(None)
    grads = victim.gradients(text, lambda logits, exit_layer: logits[exit_layer - 1].sum())
    assert grads.grads.shape == (len(grads.token_ids), victim.model.word_embeddings().embedding_dim)
    assert all(grads.word_tokens) and len(grads.word_tokens) == 4
    assert len(grads.word_tokens[0]) > 1  # "unflinchingly" is several word pieces
    covered = sorted(p for w in grads.word_tokens for p in w)
    assert covered == list(range(1, len(grads.token_ids) - 1))  # every piece but [CLS]/[SEP]
    assert np.isfinite(grads.grads).all() and np.abs(grads.grads).sum() > 0
    assert victim.check_parity() < 1e-3


def test_victim_refuses_a_different_model(bert_build, tmp_path):
    other, _ = make_checkpoint(tmp_path, "bert", seed=7)
    with pytest.raises(VictimError, match="expected sha256"):
        Victim.from_build(bert_build, model_path=other)


def test_same_recipe_is_deterministic_and_typed(victim):
    res = Resources()
    recipe = build_recipe("same", victim, res, seed=3, **SAME_SMALL)
    first = [recipe.run(i, s, 1) for i, s in enumerate(SENTENCES[:3])]
    second = [build_recipe("same", victim, res, seed=3, **SAME_SMALL).run(i, s, 1) for i, s in enumerate(SENTENCES[:3])]
    assert [r.perturbed.text.input for r in first] == [r.perturbed.text.input for r in second]
    for r in first:
        assert r.status in (AttackStatus.SUCCEEDED, AttackStatus.FAILED, AttackStatus.SKIPPED)
        assert r.exit_after >= r.exit_before  # best seen is kept: never faster than the original
        assert r.words_changed <= max(3, int(np.ceil(0.1 * r.original.text.num_words)))
        if r.status is AttackStatus.SUCCEEDED:
            assert r.exit_after == victim.num_layers
    desc = recipe.describe()
    assert desc["params"]["hotflip_top_n"] == 20 and "Chen" in desc["paper"]


@needs_wordnet
def test_accuracy_and_waffle_recipes_respect_budget_and_constraints(victim, wordnet_cache):
    res = Resources(cache_dir=wordnet_cache)
    acc = build_recipe("accuracy", victim, res, query_budget=15)
    for i, s in enumerate(SENTENCES[:3]):
        r = acc.run(i, s, 0)
        assert r.num_queries <= 15
        if r.status is AttackStatus.SKIPPED:
            assert r.perturbed.text == r.original.text
    waffle = build_recipe("waffle", victim, res, query_budget=60)
    for i, s in enumerate(SENTENCES[:2]):
        r = waffle.run(i, s, 0)
        assert r.num_queries <= 60
        assert r.words_changed <= 4
        if r.words_changed:
            sim = res.sentence_encoder().similarity(r.original.text.text, [r.perturbed.text.text])[0]
            assert sim >= 0.9 - 1e-6


def _glue_dir(tmp_path: Path) -> Path:
    sst = tmp_path / "glue" / "SST-2"
    sst.mkdir(parents=True)
    (sst / "dev.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{i % 2}\n" for i, s in enumerate(SENTENCES)))
    sts = tmp_path / "glue" / "STS-B"
    sts.mkdir(parents=True)
    rows = "".join(f"{a}\t{b}\t{(i * 1.3) % 5:.2f}\n" for i, (a, b) in enumerate(PAIRS))
    (sts / "dev.tsv").write_text("sentence1\tsentence2\tscore\n" + rows)
    return tmp_path / "glue"


def test_cli_sst2_end_to_end(bert_build, tmp_path, capsys):
    from benchmarks.cli import main

    attacks = "accuracy,same,waffle" if (WORDNET / "data.noun").exists() else "same"
    out = tmp_path / "out"
    code = main([
        "slowdown", str(bert_build), "--task", "sst2", "--data-dir", str(_glue_dir(tmp_path)), "--attacks", attacks,
        "--n", "4", "--patience", "1", "--out", str(out), "--latency-passes", "1", "--throughput-passes", "1",
        "--machine", "test VM", "--no-progress", "--cache-dir", str(tmp_path / "cache"),
    ])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["machine"] == "test VM" and report["n"] == 4 and report["policy"] == {"kind": "patience", "patience": 1}
    names = attacks.split(",")
    assert set(report["sets"]) == {"full_depth", "clean", *names}
    for key in ("metric", "mean_exit_layer", "layer_speedup", "gain_erased_layers", "latency_p50_ms",
                "latency_p99_ms", "gain_erased_wallclock", "success_rate", "seconds_per_sample"):
        assert all(key in s for s in report["sets"].values()), key
    assert report["sets"]["full_depth"]["mean_exit_layer"] == 3.0
    assert report["sets"]["clean"]["gain_erased_layers"] == pytest.approx(0.0)
    for name in names:
        assert report["sets"][name]["exit_mismatches_trace_vs_early_exit"] == 0
        assert set(report["recipes"][name]["params"])
    with open(out / "adversarial_examples.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert len(rows) == 4 * len(names)
    assert {"original", "perturbed", "exit_before", "exit_after", "label_before", "label_after"} <= set(rows[0])
    assert (out / "exit_histogram.png").stat().st_size > 1000 and (out / "latency_cdf.png").stat().st_size > 1000
    assert "| clean |" in (out / "report.md").read_text()


def test_cli_rejects_a_task_mismatch(bert_build, tmp_path, capsys):
    from benchmarks.cli import main

    code = main(["slowdown", str(bert_build), "--task", "stsb", "--data-dir", str(_glue_dir(tmp_path)), "--n", "2",
                 "--out", str(tmp_path / "o"), "--no-progress"])
    assert code == 2
    assert "does not match the build's task 'sst2'" in capsys.readouterr().err


def test_stsb_regression_attacks_perturb_the_second_sentence_only(stsb_build, tmp_path):
    from benchmarks.slowdown import SlowdownConfig, run_slowdown

    attacks = ("same", "waffle") if (WORDNET / "data.noun").exists() else ("same",)
    cfg = SlowdownConfig(
        build_dir=stsb_build, task="stsb", out_dir=tmp_path / "out", data_dir=_glue_dir(tmp_path), attacks=attacks,
        n=3, patience=1, tau=0.05, latency_passes=1, throughput_passes=1, progress=False,
        cache_dir=tmp_path / "cache", recipe_overrides={"same": SAME_SMALL, "waffle": {"query_budget": 40}},
    )
    report = run_slowdown(cfg, log=lambda _: None)
    assert report["policy"] == RegressionPatiencePolicy(1, 0.05).to_dict()
    assert report["sets"]["clean"]["metric_name"] == "pearson"
    assert "regression analogue" in json.dumps(report["recipes"]["same"])
    with open(tmp_path / "out" / "adversarial_examples.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    second = {b for _, b in PAIRS}
    assert all(r["original"] in second for r in rows)  # the TSV shows the perturbed (second) sentence


def test_wordnet_missing_database_is_a_clear_error(tmp_path):
    from benchmarks.attacks.wordnet import WordNet, WordNetError

    with pytest.raises(WordNetError, match="apt-get install -y wordnet-base"):
        WordNet(tmp_path / "no-wordnet", cache_dir=tmp_path / "cache").synonyms("film")


@needs_wordnet
def test_wordnet_synonyms_offline(wordnet_cache):
    from benchmarks.attacks.wordnet import WordNet, lexnames_text

    wn = WordNet(cache_dir=wordnet_cache)
    assert wn.version() == "3.0"
    movies = wn.synonyms("movies")
    assert "film" in movies and "flick" in movies
    assert all("_" not in w and w != "movies" for w in movies)
    assert wn.synonyms("zzqx") == ()
    lexnames = (wordnet_cache / "wordnet-3.0" / "lexnames").read_text()
    assert lexnames == lexnames_text() and lexnames.splitlines()[44] == "44\tadj.ppl\t3"

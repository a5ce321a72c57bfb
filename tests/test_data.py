"""GLUE loaders (both header styles) and metrics."""

import numpy as np
import pytest

from runtime.data import DataError, accuracy, load_glue, pearson, spearman


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_sst2_simplified_and_original_headers(tmp_path):
    _write(tmp_path / "a" / "SST-2" / "dev.tsv", "text\tlabel\ngood film \t1\nbad film\t0\n")
    _write(tmp_path / "b" / "SST-2" / "dev.tsv", "sentence\tlabel\ngood film \t1\nbad film\t0\n")
    for root in ("a", "b"):
        data = load_glue("sst2", "dev", tmp_path / root)
        assert data.inputs == ["good film", "bad film"]
        assert data.labels.tolist() == [1, 0] and data.labels.dtype == np.int64


def test_stsb_pairs(tmp_path):
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    row = "0\tmain\tMSRvid\t2012\t0001\tnone\tnone\tA plane takes off.\tA jet takes off.\t4.500\n"
    _write(tmp_path / "STS-B" / "train.tsv", header + row)
    data = load_glue("stsb", "train", tmp_path)
    assert data.inputs == [("A plane takes off.", "A jet takes off.")]
    assert data.labels.tolist() == [4.5]


def test_real_glue_dir(glue_dir):
    sst = load_glue("sst2", "dev", glue_dir)
    assert len(sst) == 872 and set(sst.labels.tolist()) == {0, 1}
    sts = load_glue("stsb", "dev", glue_dir)
    assert len(sts) == 1500 and isinstance(sts.inputs[0], tuple)


def test_missing_and_malformed(tmp_path):
    with pytest.raises(DataError, match="GLUE data not found"):
        load_glue("sst2", "dev", tmp_path)
    _write(tmp_path / "SST-2" / "dev.tsv", "words\tlabel\nx\t1\n")
    with pytest.raises(DataError, match=r"one of \['sentence', 'text'\]"):
        load_glue("sst2", "dev", tmp_path)
    _write(tmp_path / "SST-2" / "dev.tsv", "text\tlabel\nx\tpositive\n")
    with pytest.raises(DataError, match="not a number"):
        load_glue("sst2", "dev", tmp_path)
    with pytest.raises(DataError, match="unknown task"):
        load_glue("mnli", "dev", tmp_path)


def test_fetch_fallback_is_used_only_without_data_dir(tmp_path):
    calls = []

    def fetcher(task, split):
        calls.append((task.name, split))
        from runtime.data import LabeledData
        return LabeledData(["x"], np.array([1]))

    assert len(load_glue("sst2", "dev", tmp_path / "none", fetch=True, fetcher=fetcher)) == 1
    assert calls == [("sst2", "dev")]


def test_metrics():
    assert accuracy(np.array([1, 0, 1]), np.array([1, 1, 1])) == pytest.approx(2 / 3)
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert spearman(x, x ** 3) == pytest.approx(1.0)
    # ties get average ranks: ranks of [1, 2, 2, 3] are [1, 2.5, 2.5, 4]
    assert spearman(np.array([1.0, 2.0, 2.0, 3.0]), np.array([1.0, 2.5, 2.5, 4.0])) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)

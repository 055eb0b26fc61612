"""Text datasets: ibn-nlu (seeded split, nlu.md fallback) and CLINC150."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tinylarge.data import load_text_dataset
from tinylarge.data.text import parse_rasa_markdown
from tinylarge.errors import DataFileMissingError, UnknownNameError


def test_ibn_nlu_counts_and_stratified_split() -> None:
    ds = load_text_dataset("ibn-nlu", seed=0)
    assert ds.num_classes == 6
    assert "create_flow+apply_filter" in ds.label_names
    assert len(ds.texts_train) + len(ds.texts_test) == 2270
    total = np.bincount(ds.y_train, minlength=6) + np.bincount(ds.y_test, minlength=6)
    by_name = dict(zip(ds.label_names, total.tolist(), strict=True))
    assert by_name["allocate_batch"] == 270
    assert by_name["remove_flow"] == 400
    np.testing.assert_allclose(np.bincount(ds.y_test) / total, 0.2, atol=0.003)
    assert ds.texts_val is None


def test_ibn_nlu_split_follows_the_seed() -> None:
    a = load_text_dataset("ibn-nlu", seed=0)
    b = load_text_dataset("ibn-nlu", seed=0)
    c = load_text_dataset("ibn-nlu", seed=1)
    assert a.texts_test == b.texts_test
    assert a.texts_test != c.texts_test


def test_nlu_md_gives_the_same_examples(tmp_path: Path, shared_dir: Path) -> None:
    src = shared_dir / "ibn-nlu"
    pairs = parse_rasa_markdown((src / "nlu.md").read_text(encoding="utf-8"))
    lines = (src / "ibn_intents.jsonl").read_text(encoding="utf-8").splitlines()
    assert pairs == [(r["text"], r["intent"]) for r in map(json.loads, lines)]
    (tmp_path / "nlu.md").symlink_to(src / "nlu.md")
    from_md = load_text_dataset("ibn-nlu", data_dir=tmp_path, seed=3)
    from_jsonl = load_text_dataset("ibn-nlu", seed=3)
    assert from_md.texts_train == from_jsonl.texts_train
    np.testing.assert_array_equal(from_md.y_test, from_jsonl.y_test)


def test_rasa_markup_is_removed() -> None:
    text = "## intent:greet\n- hi [Bob](name:person) in [s1](target)\n## synonym:x\n- ignored\n"
    assert parse_rasa_markdown(text) == [("hi Bob in s1", "greet")]


def test_clinc150_official_splits_and_domains() -> None:
    ds = load_text_dataset("clinc150")
    assert (len(ds.texts_train), len(ds.texts_test)) == (15100, 5500)
    assert ds.texts_val is not None
    assert len(ds.texts_val) == 3100
    assert ds.num_classes == 151
    assert ds.label_names[-1] == "oos"
    counts = np.bincount(ds.y_train, minlength=151)
    assert counts[:150].tolist() == [100] * 150
    assert counts[150] == 100
    assert int((ds.y_test == 150).sum()) == 1000
    assert ds.group_names is not None
    assert len(ds.group_names) == 11
    assert ds.groups_train is not None
    assert np.bincount(ds.groups_train).tolist() == [1500] * 10 + [100]


def test_text_subset_and_errors(tmp_path: Path) -> None:
    small = load_text_dataset("clinc150", subset=302, seed=0)
    assert len(small.texts_train) == 302
    assert len(small.texts_test) == 60
    assert small.texts_val is not None
    assert len(small.texts_val) == 60
    with pytest.raises(UnknownNameError, match="known: clinc150, ibn-nlu"):
        load_text_dataset("snips")
    with pytest.raises(DataFileMissingError, match=r"ibn_intents\.jsonl or nlu\.md not found"):
        load_text_dataset("ibn-nlu", data_dir=tmp_path)

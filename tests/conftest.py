"""Shared fixtures: a small real tokenizer and small real shards, made once per test session."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import yaml

from osum.tasks.labels import MINI_LABEL_SETS, all_tags

sys.path.insert(0, str(Path(__file__).resolve().parent))  # test helper modules (rlazyload) for every folder

DIGITS = "zero one two three four five six seven eight nine".split()


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    from data_prep.tokenizer import build_tokenizer
    from osum.tasks.registry import TaskRegistry

    prompts = yaml.safe_load(open(TaskRegistry.__module__.replace(".", "/").rsplit("/", 1)[0] + "/prompts/en.yaml"))
    rng = random.Random(0)
    texts = [" ".join(rng.choice(DIGITS) for _ in range(5)) for _ in range(100)]
    texts += [p for pool in prompts.values() for p in pool] + ["what is two plus three", "turn on the light"]
    out = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer(texts, all_tags(MINI_LABEL_SETS) + ["<开始回答>"], out, vocab_size=400)
    return str(out)


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from osum.text import load_tokenizer

    return load_tokenizer(tokenizer_dir)


@pytest.fixture(scope="session")
def mini_data(tmp_path_factory):
    """A data root with a tiny mini corpus (real TTS audio, every task) in ``mini/``."""
    from data_prep.mini_corpus import build

    root = tmp_path_factory.mktemp("data_root")
    build(root / "mini", seed=1, num_train=24, num_valid=6, num_test=6, num_test_novel=0, workers=1)
    return root

"""R lazy-load reading and Austen sentence extraction (on a small database written like R writes one)."""

from __future__ import annotations

import pytest
from rlazyload import serialize, write_lazyload

from data_prep.rdata import read_lazyload, unserialize
from data_prep.text_sources import austen_sentences, normalize, sentences

NOVELS = {
    "emma": ["EMMA", "", "CHAPTER I", "", "Emma Woodhouse, handsome, clever, and rich, with a comfortable",
             "home and happy disposition, seemed to unite some of the best blessings.", "",
             "Mr. Knightley was a sensible man of about seven or eight-and-thirty; he was a very old friend.",
             "", "It was 1815.  Too short.", ""],
    "sensesensibility": ["He was not an ill-disposed young man, unless to be rather cold hearted.", ""],
}


def test_unserialize_named_list_of_vectors() -> None:
    value = {"a": ["x", "y"], "b": [3, 4]}
    assert unserialize(serialize(value)) == value


def test_read_lazyload_gives_every_object(tmp_path) -> None:
    write_lazyload(tmp_path / "data" / "Rdata", NOVELS)
    assert read_lazyload(tmp_path / "data" / "Rdata") == NOVELS


def test_normalize_expands_abbreviations_and_drops_punctuation() -> None:
    assert normalize("Mr. Knightley's -- \"dear\" Emma!") == "mister knightley's dear emma"


def test_sentences_skip_headings_numbers_and_short_ones() -> None:
    got = sentences(NOVELS["emma"])
    assert got == ["emma woodhouse handsome clever and rich with a comfortable home and happy disposition "
                   "seemed to unite some of the best blessings",
                   "mister knightley was a sensible man of about seven or eight and thirty",
                   "he was a very old friend"]


def test_the_evaluation_book_never_reaches_training(tmp_path) -> None:
    write_lazyload(tmp_path / "data" / "Rdata", NOVELS)
    texts = austen_sentences(tmp_path)
    assert texts and not any("ill disposed" in t for t in texts)
    assert austen_sentences(tmp_path, exclude={"he was a very old friend"}) == texts[:2]


def test_missing_package_names_where_it_looked(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="janeaustenr"):
        austen_sentences(tmp_path)

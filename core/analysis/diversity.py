"""Diversity of a set of answers and questions: self-BLEU, compression, templates, near-duplicates.

Every function is pure (texts in, numbers out) so that the report, the prompt lab and the
quality gates can share one definition of each figure.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sacrebleu.metrics.bleu import BLEU
from sacrebleu.metrics.helpers import extract_all_word_ngrams
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from visinstruct.core.text.gates import similarity as jaccard  # one Jaccard, the gates'
from visinstruct.core.text.synonyms import words

SAMPLE_CAP = 2000          # answers per figure; more are sampled with a fixed seed
TOP_TEMPLATES = 10
SHINGLE_WORDS = 3
NEAR_DUPLICATE_JACCARD = 0.8
BLEU_ORDER = 4
ZLIB_LEVEL = 6           # zlib's default: level 9 costs several times more for the same ranking

# Words kept in a question template; every other word is content and becomes "_".
FUNCTION_WORDS: frozenset[str] = frozenset((
    "a", "an", "the", "this", "that", "these", "those", "there", "here", "it", "its", "it's",
    "they", "them", "their", "what", "whats", "what's", "where", "why", "how", "who", "whom",
    "whose", "which", "when", "is", "are", "was", "were", "be", "been", "being", "do", "does",
    "did", "can", "could", "will", "would", "should", "shall", "may", "might", "must", "has",
    "have", "had", "of", "in", "on", "at", "to", "for", "from", "with", "by", "about", "into",
    "onto", "over", "under", "above", "below", "between", "behind", "near", "next", "up",
    "down", "out", "off", "and", "or", "but", "if", "than", "then", "so", "as", "not", "no",
    "any", "some", "all", "each", "every", "one", "you", "your", "i", "me", "my", "we", "our",
    "he", "she", "his", "her", "him", "many", "much", "more", "most", "other", "another",
    "kind", "type", "sort", "color", "colour", "doing",
))


def sample_texts(texts: Sequence[str], cap: int = SAMPLE_CAP, seed: int = 0) -> list[str]:
    """`texts` as given when there are at most `cap`, else `cap` of them drawn with `seed`."""
    if len(texts) <= cap:
        return list(texts)
    return random.Random(seed).sample(list(texts), cap)


# -- self-BLEU -----------------------------------------------------------------------------------
_TOKENIZE = Tokenizer13a()


def self_bleu(answers: Sequence[str]) -> float | None:
    """Mean sentence BLEU (0..1) of each answer against all the others as references.

    High means the answers repeat each other's phrasing. sacrebleu does the tokenising
    (13a, lowercased), the n-gram counting and the smoothed BLEU formula. The clipped
    counts against "every other answer" need no pairwise work: an n-gram an answer holds
    once matches when any other answer holds it; only repeated n-grams need the largest
    count among the others. None for fewer than two answers.
    """
    if len(answers) < 2:
        return None
    tokenized = [_TOKENIZE(answer.lower()) for answer in answers]
    lengths = [len(text.split()) for text in tokenized]
    correct = [[0] * BLEU_ORDER for _ in answers]
    for order in range(1, BLEU_ORDER + 1):
        counters = [extract_all_word_ngrams(text, order, order)[0] for text in tokenized]
        holders = Counter(itertools.chain.from_iterable(counters))   # answers holding each
        repeated = [{g: c for g, c in counter.items() if c > 1} for counter in counters]
        # For n-grams some answer repeats: the two largest counts and who has the largest.
        best: dict[tuple[str, ...], tuple[int, int, int]] = {}
        for index, mine in enumerate(repeated):
            for ngram, count in mine.items():
                top, holder, second = best.get(ngram, (1, -1, 1))
                if count > top:
                    best[ngram] = (count, index, top)
                elif count > second:
                    best[ngram] = (top, holder, count)
        for index, counter in enumerate(counters):
            matched = sum(1 for ngram in counter if holders[ngram] > 1)
            for ngram, count in repeated[index].items():
                if holders[ngram] < 2:
                    continue
                top, holder, second = best[ngram]
                # Any other holder has at least 1; the largest other count may be more.
                matched += min(count, second if holder == index else top) - 1
            correct[index][order - 1] = matched
    ordered = sorted(lengths)
    scores = []
    for index, length in enumerate(lengths):
        total = [max(0, length - n + 1) for n in range(1, BLEU_ORDER + 1)]
        score = BLEU.compute_bleu(correct[index], total, length, _closest_other(ordered, length),
                                  smooth_method="exp", effective_order=True)
        scores.append(score.score / 100.0)
    return math.fsum(scores) / len(scores)


def _closest_other(lengths: list[int], length: int) -> int:
    """BLEU's reference length: the other answers' length closest to `length`, shorter on ties.

    `lengths` is every answer's length, sorted, `length` among them once or more.
    """
    position = bisect.bisect_left(lengths, length)
    if position + 1 < len(lengths) and lengths[position + 1] == length:
        return length
    others = [lengths[i] for i in (position - 1, position + 1) if 0 <= i < len(lengths)]
    return min(others, key=lambda other: (abs(other - length), other))


# -- compression ---------------------------------------------------------------------------------
def compression_ratio(texts: Sequence[str]) -> float | None:
    """Bytes of the texts (one per line, UTF-8) over their zlib size; higher = more repetitive.

    It grows with the amount of text too, so compare equal-size samples.
    """
    raw = "\n".join(texts).encode("utf-8")
    if not raw:
        return None
    return len(raw) / len(zlib.compress(raw, ZLIB_LEVEL))


def first_words(texts: Sequence[str], limit: int) -> list[str]:
    """The texts cut so that together they hold at most `limit` words (for equal-size samples)."""
    taken: list[str] = []
    left = limit
    for text in texts:
        if left <= 0:
            break
        tokens = text.split()[:left]
        left -= len(tokens)
        taken.append(" ".join(tokens))
    return taken


# -- question templates --------------------------------------------------------------------------
def question_skeleton(question: str) -> str:
    """A question with its content words masked, as a template.

    "What colour is the bus?" -> "what colour is the _". Lowercase words; every word outside
    FUNCTION_WORDS becomes "_", and runs of "_" merge, so questions that differ only in the
    object asked about share one template.
    """
    masked: list[str] = []
    for word in words(question.replace("<image>", " ")):
        token = word if word in FUNCTION_WORDS else "_"
        if token == "_" and masked and masked[-1] == "_":
            continue
        masked.append(token)
    return " ".join(masked)


@dataclass(frozen=True)
class TemplateShare:
    """How much of a question set the TOP_TEMPLATES most common skeletons cover."""

    questions: int
    templates: int
    share: float | None
    top: tuple[tuple[str, int], ...]


def template_share(questions: Sequence[str], top: int = TOP_TEMPLATES) -> TemplateShare:
    """The share of `questions` whose skeleton is one of the `top` most common skeletons."""
    counts = Counter(question_skeleton(q) for q in questions)
    # Ties broken by text so the figure never depends on the order rows arrived in.
    common = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    covered = sum(n for _text, n in common)
    return TemplateShare(len(questions), len(counts),
                         covered / len(questions) if questions else None, tuple(common))


# -- near-duplicates -----------------------------------------------------------------------------
def shingles(text: str, size: int = SHINGLE_WORDS) -> frozenset[tuple[str, ...]]:
    """The word `size`-grams of a text (lowercase words); a shorter text is one shingle."""
    tokens = words(text)
    if len(tokens) <= size:
        return frozenset([tuple(tokens)]) if tokens else frozenset()
    return frozenset(tuple(tokens[i:i + size]) for i in range(len(tokens) - size + 1))


def near_duplicate_pairs(texts: Sequence[str], threshold: float = NEAR_DUPLICATE_JACCARD,
                         size: int = SHINGLE_WORDS) -> list[tuple[int, int]]:
    """Index pairs (i < j) whose shingle Jaccard similarity is at least `threshold`.

    Exact, without comparing every pair: two sets with Jaccard >= t must share one of the
    first |A| - ceil(t|A|) + 1 shingles of each, in a fixed (rarest-first) order.
    """
    sets = [shingles(text, size) for text in texts]
    frequency = Counter(s for shingle_set in sets for s in shingle_set)
    index: dict[tuple[str, ...], list[int]] = {}
    found: set[tuple[int, int]] = set()
    empty: list[int] = []
    for position, shingle_set in enumerate(sets):
        if not shingle_set:
            found.update((other, position) for other in empty)
            empty.append(position)
            continue
        ordered = sorted(shingle_set, key=lambda s: (frequency[s], s))
        prefix = len(ordered) - math.ceil(threshold * len(ordered) - 1e-9) + 1
        candidates: set[int] = set()
        for shingle in ordered[:prefix]:
            candidates.update(index.setdefault(shingle, []))
            index[shingle].append(position)
        found.update((other, position) for other in candidates
                     if jaccard(sets[other], shingle_set) >= threshold)
    return sorted(found)


def near_duplicate_rate(texts: Sequence[str], threshold: float = NEAR_DUPLICATE_JACCARD,
                        size: int = SHINGLE_WORDS) -> float | None:
    """The share of texts with at least one near-duplicate among the others."""
    if not texts:
        return None
    involved = {i for pair in near_duplicate_pairs(texts, threshold, size) for i in pair}
    return len(involved) / len(texts)


# -- every figure of one side, on samples of equal size -------------------------------------------
def distinct_n(answers: Sequence[str], limit: int) -> tuple[float | None, float | None]:
    """Distinct-1 and distinct-2 over the first `limit` words of `answers`, pairs within answers."""
    unigrams: set[str] = set()
    bigrams: set[tuple[str, str]] = set()
    taken = bigram_count = 0
    for answer in answers:
        if taken >= limit:
            break
        tokens = words(answer)[: limit - taken]
        taken += len(tokens)
        unigrams.update(tokens)
        pairs = list(itertools.pairwise(tokens))
        bigrams.update(pairs)
        bigram_count += len(pairs)
    return (len(unigrams) / taken if taken else None,
            len(bigrams) / bigram_count if bigram_count else None)


@dataclass(frozen=True)
class Diversity:
    """One side's diversity figures, each over a sample the same size as the other sides'.

    distinct-1/2 over `sample_tokens` words; self-BLEU and the near-duplicate rate over
    `sample_answers` answers; the compression ratio over `compression_words` words of those
    answers; the template share over `sample_questions` questions.
    """

    total_tokens: int
    sample_tokens: int
    distinct_1: float | None
    distinct_2: float | None
    sample_answers: int = 0
    self_bleu: float | None = None
    near_duplicate_rate: float | None = None
    compression_words: int = 0
    compression_ratio: float | None = None
    sample_questions: int = 0
    template_share: float | None = None
    templates: int = 0
    top_templates: tuple[tuple[str, int], ...] = ()


def _equal_size(sizes: Sequence[int], cap: int | None = None) -> int:
    """The smallest non-zero size (the sample every side can fill), at most `cap`."""
    size = min((s for s in sizes if s), default=0)
    return size if cap is None else min(size, cap)


def measure_sides(sides: Mapping[str, tuple[Sequence[str], Sequence[str]]], *, seed: int = 0,
                  cap: int = SAMPLE_CAP,
                  totals: Mapping[str, int] | None = None) -> dict[str, Diversity]:
    """Diversity of each side's (answers, questions), every figure on equal-size samples.

    Each side's answers and questions are shuffled with `seed` and cut to `cap`, so a large
    store costs no more than a small one; each figure then takes the first so many, the size
    being the smallest side's (sides with none are not counted). `totals`: each side's word
    count when the caller knows it (it is reported, not sampled); else it is counted here.
    """
    shuffled: dict[str, tuple[list[str], list[str], int]] = {}
    for name, (answers, questions) in sides.items():
        answer_list, question_list = list(answers), list(questions)
        random.Random(seed).shuffle(answer_list)
        random.Random(seed).shuffle(question_list)
        del answer_list[cap:], question_list[cap:]
        shuffled[name] = (answer_list, question_list, sum(len(words(a)) for a in answer_list))
    tokens = _equal_size([in_sample for _a, _q, in_sample in shuffled.values()])
    count = _equal_size([len(a) for a, _q, _w in shuffled.values()])
    asked = _equal_size([len(q) for _a, q, _w in shuffled.values()])
    compressed = _equal_size([sum(len(a.split()) for a in answers[:count])
                              for answers, _q, _w in shuffled.values()])
    result = {}
    for name, (answers, questions, in_sample) in shuffled.items():
        sampled = answers[:count]
        d1, d2 = distinct_n(answers, min(tokens, in_sample))
        templates = template_share(questions[:asked])
        squeezed = first_words(sampled, compressed)
        result[name] = Diversity(
            totals[name] if totals is not None else in_sample, min(tokens, in_sample), d1, d2,
            len(sampled), self_bleu(sampled), near_duplicate_rate(sampled),
            sum(len(a.split()) for a in squeezed),
            compression_ratio(squeezed) if compressed else None,
            templates.questions, templates.share, templates.templates, templates.top)
    return result

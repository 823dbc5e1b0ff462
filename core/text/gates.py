"""Quality gates: cheap, deterministic checks that stop garbage pairs before the judge sees them.

A judge is a model and can be talked past (it scored a copied prompt example 9); these rules
cannot. No model calls: each rule reads the pair, the image's boxes and the prompt text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from visinstruct.core.config import GatesConfig
from visinstruct.core.records import Image, Pair
from visinstruct.core.text.prompts import PromptTemplate, render_context
from visinstruct.core.text.synonyms import category_mentions, question_family, words

# In the order they are tried: a pair is stopped by the first rule that drops it.
RULES: tuple[str, ...] = ("placeholder", "refusal", "cut_off", "same_as_question",
                          "prompt_copy", "repeated_sentence", "duplicate", "ungrounded_object")
DROP, FLAG = "drop", "flag"
# Finish reasons that mean "stopped at the token limit", as the wires spell them
# (OpenAI/TGI/llama.cpp `length`, Bedrock/Anthropic `max_tokens`).
CUT_OFF_REASONS = frozenset({"length", "max_tokens", "max_length", "model_length"})


@dataclass(frozen=True)
class GateVerdict:
    """One rule's word on one pair: `drop` keeps it from the judge and export, `flag` marks it."""

    rule: str
    action: str
    reason: str


@dataclass(frozen=True)
class PromptText:
    """The fixed part of a generation prompt (system, instruction, format, worked examples).

    It leaves out the image's own captions, boxes and facts, which a pair may repeat freely.
    """

    key: str
    text: str


Verdicts = tuple[GateVerdict, ...]


def prompt_text(template: PromptTemplate) -> PromptText:
    """What a model was told besides the image's own data, for the prompt_copy rule."""
    parts = [template.system, template.instruction, template.output_format]
    for context, output in template.examples:
        parts.extend((context, output))
    return PromptText(template.version, "\n".join(parts))


def is_cut_off(finish_reason: str) -> bool:
    """Whether a finish reason says the reply stopped at the token limit."""
    return finish_reason.strip().lower() in CUT_OFF_REASONS


class _Words:
    """A pair's words, read once for every rule (the gates run on every pair of a run)."""

    __slots__ = ("_sets", "answer", "pair", "question")

    def __init__(self, pair: Pair) -> None:
        self.pair = pair
        self.question = words(pair.question)
        self.answer = words(pair.answer)
        self._sets: tuple[frozenset[str], frozenset[str]] | None = None

    def sets(self) -> tuple[frozenset[str], frozenset[str]]:
        """The question's and the answer's words as sets (built only for the duplicate rule)."""
        if self._sets is None:
            self._sets = (frozenset(self.question), frozenset(self.answer))
        return self._sets


def pair_similarity(one: _Words, other: _Words) -> float:
    """Jaccard similarity of two pairs' words, the question's kept apart from the answer's.

    Single words, so short pairs reworded by one or two words ("What is the colour of..." /
    "What colour is...") still come out close; a word counts once in each part, as if tagged
    "q " or "a " (the two parts never share an element).
    """
    (q1, a1), (q2, a2) = one.sets(), other.sets()
    return similarity(q1, q2, a1, a2)


def gate_pairs(pairs: Sequence[Pair], image: Image, task: str, settings: GatesConfig, *,
               prompt: PromptText | None = None,
               finish_reason: str = "stop") -> tuple[Verdicts, ...]:
    """Every rule's verdicts for each pair of one reply, in order; at most one `drop` per pair."""
    verdicts: list[Verdicts] = []
    earlier: list[_Words] = []  # the pairs that passed so far, for the duplicate rule
    cut = is_cut_off(finish_reason) and task != "detail"  # detail keeps its complete sentences
    context = _Context(image, prompt, settings.prompt_copy_words)
    for position, pair in enumerate(pairs):
        said = _Words(pair)
        reason = _first_drop(said, settings, context, cut and position == len(pairs) - 1)
        if not reason and settings.duplicate:
            reason = _duplicate_of(said, earlier, settings.duplicate_similarity)
        found: tuple[GateVerdict, ...] = ()
        if reason:
            found = (GateVerdict(reason[0], DROP, reason[1]),)
        elif settings.ungrounded_object != "off":
            ungrounded = _ungrounded(said.answer, image)
            if ungrounded:
                action = DROP if settings.ungrounded_object == "drop" else FLAG
                found = (GateVerdict("ungrounded_object", action, ungrounded),)
        if not any(v.action == DROP for v in found):
            earlier.append(said)
        verdicts.append(found)
    return tuple(verdicts)


def _first_drop(said: _Words, settings: GatesConfig, context: _Context,
                cut_here: bool) -> tuple[str, str] | None:
    pair = said.pair
    if settings.placeholder:
        why = (_placeholder(pair.question, said.question, "question")
               or _placeholder(pair.answer, said.answer, "answer"))
        if why:
            return "placeholder", why
    if settings.refusal and _REFUSAL_WORDS.intersection(said.answer):
        why = refusal(pair.answer)
        if why:
            return "refusal", why
    if settings.cut_off and cut_here and not ends_sentence(pair.answer):
        return "cut_off", "the reply stopped at the token limit inside this answer"
    if settings.same_as_question:
        why = _same_as_question(pair.question, said.question, said.answer)
        if why:
            return "same_as_question", why
    if settings.prompt_copy:
        why = context.copied(said)
        if why:
            return "prompt_copy", why
    if settings.repeated_sentence:
        why = repeated_sentence(pair.answer, settings.repeated_sentence_similarity)
        if why:
            return "repeated_sentence", why
    return None


# -- placeholder ---------------------------------------------------------------------------------
_PLACEHOLDER_WORDS = frozenset({
    "n/a", "n.a", "na", "tbd", "todo", "placeholder", "question", "answer", "description",
    "caption", "response", "null", "undefined", "nan", "xxx", "string", "text", "...",
})
_WHOLE_BRACKET = re.compile(r"^\s*(?:\[[^\]]*\]|<[^>]*>|\{[^}]*\})\s*[.?!]?\s*$")
_TEMPLATE_SLOT = re.compile(
    r"\{\s*[A-Za-z_][\w ]{0,30}\}"                                       # {caption}
    r"|<\s*/?\s*(?:question|answer|caption|description|text|insert|your)\b[^>]{0,40}>"  # <answer>
    r"|\[\s*(?:question|answer|insert|your|caption|description|placeholder)\b[^\]]{0,60}\]"
    r"|\b(?:goes|go|comes) here\b|\binsert (?:the |your |an? )?\w+ here\b"
    r"|\blorem ipsum\b",
    re.IGNORECASE,
)


def placeholder(text: str, part: str = "text") -> str:
    """Why `text` is template filler rather than content, or ''."""
    return _placeholder(text, words(text), part)


def _placeholder(text: str, tokens: Sequence[str], part: str) -> str:
    stripped = text.strip()
    if not stripped:
        return f"the {part} is empty"
    if not tokens:
        return f"the {part} is only punctuation ({_short(stripped)})"
    if len(tokens) <= 2:
        bare = " ".join(stripped.lower().split()).strip(" .!?:;\"'`*_")
        if bare in _PLACEHOLDER_WORDS:
            return f"the {part} is a placeholder ({_short(stripped)})"
    # The regexes only where they can match: brackets, "... here", lorem ipsum.
    if (any(c in stripped for c in "[<{") or "here" in tokens or "lorem" in tokens) and (
            _WHOLE_BRACKET.match(stripped) or _TEMPLATE_SLOT.search(stripped)):
        return f"the {part} holds template text ({_short(stripped)})"
    return ""


# A judge's reason that only names the slot it fills (a copy of the reply format's key).
_REASON_SLOTS = frozenset({"reason", "reasons", "rationale", "explanation", "justification",
                           "comment", "why", "your reason", "brief reason", "short reason",
                           "one sentence", "none", "no reason"})


def missing_reason(reason: str) -> str:
    """Why a judge's reason for a score says nothing (empty, "...", "N/A", "reason"), or ''.

    The score still counts; review shows the pair as scored without a reason.
    """
    why = placeholder(reason, "reason")
    if why:
        return why.replace("the reason is", "the judge's reason is", 1).replace(
            "the reason holds", "the judge's reason holds", 1)
    if " ".join(words(reason)) in _REASON_SLOTS:
        return f"the judge's reason is a placeholder ({_short(reason.strip())})"
    return ""


# -- refusal -------------------------------------------------------------------------------------
_PICTURE = (r"(?:the |this |that |these |your |an? |any )?"
            r"(?:images?|pictures?|photos?|photographs?|visuals?|visual content)")
_CANNOT = (r"(?:can ?not|can't|cant|am unable to|'m unable to|am not able to|'m not able to"
           r"|do not have the (?:ability|capability) to|don't have the (?:ability|capability) to)")
_REFUSAL = re.compile(
    r"\bas an? (?:ai|artificial intelligence|language model|text[- ]based)\b"
    r"|\bi(?:'m| am) (?:just |only |merely )?an? (?:ai|artificial intelligence|language model"
    r"|text[- ]based (?:ai|model|assistant))\b"
    r"|\b(?:an? )?ai (?:language )?model\b"
    rf"|\bi {_CANNOT} (?:see|view|look at|access|perceive|process|analy[sz]e|open|display)"
    rf" {_PICTURE}"
    r"|\bi (?:do not|don't) have (?:access to (?:the |this |any )?(?:image|picture|photo)"
    r"|eyes\b|visual)"
    r"|\bi (?:can ?not|can't|am unable to|'m unable to|won't|will not|must decline to|refuse to)"
    r" (?:answer|help|assist|comply|fulfil|fulfill|respond)\b"
    r"|^\W*(?:i'?m sorry|i am sorry|sorry|i apologi[sz]e),? (?:but )?i\b",
    re.IGNORECASE,
)


# Every refusal pattern has one of these words; an answer without them skips the regex.
_REFUSAL_WORDS = frozenset({"i", "i'm", "ai", "sorry", "apologize", "apologise", "model"})


def refusal(answer: str) -> str:
    """Why `answer` is the assistant declining (an AI, cannot see, will not answer), or ''."""
    match = _REFUSAL.search(answer.replace("\u2019", "'"))
    return f"the answer refuses: {_short(match.group(0))}" if match else ""


# -- cut off -------------------------------------------------------------------------------------
_SENTENCE_END = re.compile(r"[.!?…。][\"')\]”’*_]*\s*$")


def ends_sentence(text: str) -> bool:
    """Whether `text` ends a sentence (a full stop, question or exclamation mark)."""
    return bool(_SENTENCE_END.search(text))


# -- same as question ----------------------------------------------------------------------------
def same_as_question(question: str, answer: str) -> str:
    """Why `answer` only repeats `question`, or ''.

    A yes/no question may be answered by restating it ("Is there a dog?" "There is a dog."),
    so there only a word-for-word copy counts.
    """
    return _same_as_question(question, words(question), words(answer))


def _same_as_question(question: str, asked: Sequence[str], said: Sequence[str]) -> str:
    if not said:
        return ""
    if list(asked) == list(said):
        return "the answer is the question again"
    said_set = set(said)
    asked_set = set(asked)
    if not said_set <= asked_set or len(said_set) < 0.75 * len(asked_set):
        return ""
    if question_family(question) == "yes/no":
        return ""
    return "the answer only restates the question's words"


# -- prompt copy ---------------------------------------------------------------------------------
_PROMPT_SHINGLES: dict[tuple[str, int], tuple[frozenset[str], frozenset[tuple[str, ...]]]] = {}


def _ngrams(tokens: Sequence[str], n: int) -> Iterable[tuple[str, ...]]:
    return (tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _prompt_shingles(prompt: PromptText,
                     n: int) -> tuple[frozenset[str], frozenset[tuple[str, ...]]]:
    """The prompt's words and its runs of `n` words, cached by prompt version."""
    cached = _PROMPT_SHINGLES.get((prompt.key, n))
    if cached is None:
        # Prompt versions are content hashes: a key never changes meaning, so caching is safe.
        tokens = words(prompt.text)
        cached = (frozenset(tokens), frozenset(_ngrams(tokens, n)))
        _PROMPT_SHINGLES[(prompt.key, n)] = cached
    return cached


def _longest_run(tokens: Sequence[str], vocabulary: frozenset[str]) -> int:
    """The most words in a row of `tokens` that all occur in `vocabulary`."""
    best = current = 0
    for token in tokens:
        if token in vocabulary:
            current += 1
            if current > best:  # noqa: PLR1730 - max() per word costs more than the gate's rules
                best = current
        else:
            current = 0
    return best


class _Context:
    """One reply's view of its prompt and image, with the image's own word runs read lazily."""

    def __init__(self, image: Image, prompt: PromptText | None, n: int) -> None:
        self.image = image
        self.n = max(1, n)
        self.vocabulary, self.shingles = (_prompt_shingles(prompt, self.n) if prompt is not None
                                          else (frozenset(), frozenset()))
        self._own: frozenset[tuple[str, ...]] | None = None

    def own(self) -> frozenset[tuple[str, ...]]:
        if self._own is None:
            self._own = frozenset(_ngrams(words(render_context(self.image, True)), self.n))
        return self._own

    def copied(self, said: _Words) -> str:
        if not self.shingles:
            return ""
        for part, tokens in (("question", said.question), ("answer", said.answer)):
            # Most pairs never have n prompt words in a row: skip building their runs.
            if _longest_run(tokens, self.vocabulary) < self.n:
                continue
            for run in _ngrams(tokens, self.n):
                if run in self.shingles and run not in self.own():
                    return (f"the {part} repeats {self.n} words in a row from the prompt: "
                            f"\"{' '.join(run)}\"")
        return ""


# -- repeated sentence ---------------------------------------------------------------------------
# Words that carry no content of their own: two sentences differing only in these say the same.
_FILLER = frozenset("""
    a an the this that these those there here it its is are was were be been being am
    of in on at to for with by from into onto over under near off up down and or but nor so
    as also too very just some any one has have had do does did can could may might will would
    should shall which who whom whose what while where when how his her their they them he she
    we you i my our your me us
""".split())
_SENTENCE_BREAK = re.compile(r"(?<=[.!?…])[\"')\]”’*_]*\s+|\n+")
REPEAT_LEAST_WORDS = 3   # a sentence repeated word for word counts from this many words
REPEAT_LEAST_CONTENT = 3  # a near repeat needs this many content words in each sentence


def _stem(word: str) -> str:
    """A word without its commonest English ending, so "playing" and "play", "dogs" and "dog"
    count as one content word (crude on purpose: both sentences are cut the same way)."""
    for suffix, least in (("ing", 6), ("ed", 5), ("es", 5), ("s", 4)):
        if word.endswith(suffix) and len(word) >= least and not word.endswith("ss"):
            return word[:-len(suffix)]
    return word


def sentences(text: str) -> list[str]:
    """`text` cut into sentences at end punctuation followed by a space, and at line breaks."""
    return [part.strip() for part in _SENTENCE_BREAK.split(text) if part.strip()]


def repeated_sentence(answer: str, threshold: float = 0.6) -> str:
    """Why `answer` says the same thing twice (a sentence repeated or nearly so), or ''.

    Two sentences of one answer are the same when their words are, or when their content
    words (articles, pronouns, prepositions and auxiliaries aside, endings like -ing and -s
    cut) overlap by `threshold` Jaccard or more. GPT-4's LLaVA-Bench answers reach 0.36 at
    most; a reworded repeat ("The kitchen has a white fridge." / "There is a white fridge in
    the kitchen.") is 1.0, the bundled model's "A person and a dog play fetch ..." / "A
    person and a dog are playing catch ..." 0.63.
    """
    seen: list[tuple[list[str], frozenset[str], str]] = []
    for sentence in sentences(answer):
        if sentence.endswith(":"):
            continue  # a heading ("Suggestions for improvement:") may come back per section
        tokens = words(sentence)
        content = frozenset(_stem(t) for t in tokens if t not in _FILLER)
        for earlier, earlier_content, text in seen:
            if len(tokens) >= REPEAT_LEAST_WORDS and tokens == earlier:
                return f"the answer says the same sentence twice: {_short(text)}"
            if (min(len(content), len(earlier_content)) >= REPEAT_LEAST_CONTENT
                    and similarity(content, earlier_content) >= threshold):
                return f"the answer says the same thing twice: {_short(text)} / {_short(sentence)}"
        seen.append((tokens, content, sentence))
    return ""


# -- duplicate -----------------------------------------------------------------------------------
def similarity(a: frozenset[Any], b: frozenset[Any], *more: frozenset[Any]) -> float:
    """Jaccard similarity of two shingle sets; two empty sets are the same text (1.0).

    `more` adds further (a, b) parts whose elements never meet the others', as if each part's
    elements were tagged with the part: the union's and intersection's sizes add up.
    """
    union, common = len(a | b), len(a & b)
    for index in range(0, len(more) - 1, 2):
        union += len(more[index] | more[index + 1])
        common += len(more[index] & more[index + 1])
    return common / union if union else 1.0


def _duplicate_of(said: _Words, earlier: Sequence[_Words],
                  threshold: float) -> tuple[str, str] | None:
    for other in earlier:
        if said.question and said.question == other.question:
            return "duplicate", ("asks the same question as an earlier pair: "
                                 f"{_short(other.pair.question)}")
        score = pair_similarity(said, other)
        if score >= threshold:
            return "duplicate", (f"{score:.0%} the same as an earlier pair of this image: "
                                 f"{_short(other.pair.question)}")
    return None


def template_key(pair: Pair) -> str:
    """A pair's words, for counting the same pair word for word across images."""
    return " ".join(words(pair.question)) + "\x00" + " ".join(words(pair.answer))


# -- ungrounded object ---------------------------------------------------------------------------
_NEGATORS = frozenset({"no", "not", "without", "never", "none", "nor", "neither", "zero",
                       "nothing", "lacks", "absent"})


def ungrounded_objects(answer: str, image: Image) -> str:
    """Which COCO categories `answer` affirms although the image has no box for them, or ''.

    An image without any boxes is not judged: nothing says what it lacks.
    """
    return _ungrounded(words(answer), image)


def _ungrounded(tokens: Sequence[str], image: Image) -> str:
    if not image.boxes:
        return ""
    boxed = {box.category for box in image.boxes}
    missing: dict[str, str] = {}
    for category, form, position in category_mentions(tokens):
        if category in boxed or category in missing:
            continue
        before = tokens[max(0, position - 4):position]
        if any(w in _NEGATORS or w.endswith("n't") for w in before):
            continue
        missing[category] = form
    if not missing:
        return ""
    named = ", ".join(f"{c} ({f!r})" if c != f else c for c, f in missing.items())
    return f"the answer names {named} but the image has no box for it"


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

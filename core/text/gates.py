"""Quality gates: cheap, deterministic checks that stop garbage pairs before the judge sees them.

A judge is a model and can be talked past (it scored a copied prompt example 9); these rules
cannot. No model calls: each rule reads the pair, the image's boxes and the prompt text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from visinstruct.core.config import GatesConfig
from visinstruct.core.records import Image, Pair
from visinstruct.core.text.prompts import PromptTemplate, render_context
from visinstruct.core.text.synonyms import category_mentions, question_family, words

# In the order they are tried: a pair is stopped by the first rule that drops it.
RULES: tuple[str, ...] = ("placeholder", "refusal", "cut_off", "same_as_question",
                          "prompt_copy", "duplicate", "ungrounded_object")
DROP, FLAG = "drop", "flag"
# Finish reasons that mean "stopped at the token limit", as the wires spell them
# (OpenAI/TGI/llama.cpp `length`, Bedrock/Anthropic `max_tokens`).
CUT_OFF_REASONS = frozenset({"length", "max_tokens", "max_length", "model_length"})


@dataclass(frozen=True)
class GateVerdict:
    """One rule's word on one pair: `drop` keeps it from the judge and the export, `flag` marks it."""

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


def gate_pairs(pairs: Sequence[Pair], image: Image, task: str, settings: GatesConfig, *,
               prompt: PromptText | None = None, finish_reason: str = "stop") -> tuple[Verdicts, ...]:
    """Every rule's verdicts for each pair of one reply, in order; at most one `drop` per pair."""
    verdicts: list[Verdicts] = []
    earlier: list[tuple[Pair, frozenset[str]]] = []  # passing pairs, for the duplicate rule
    cut = is_cut_off(finish_reason) and task != "detail"  # detail keeps its complete sentences
    context = _Context(image, prompt, settings.prompt_copy_words)
    for position, pair in enumerate(pairs):
        found: list[GateVerdict] = []
        reason = _first_drop(pair, settings, context, cut and position == len(pairs) - 1)
        shingles = _shingles(pair)
        if not reason and settings.duplicate:
            reason = _duplicate_of(pair, shingles, earlier, settings.duplicate_similarity)
        if reason:
            found.append(GateVerdict(reason[0], DROP, reason[1]))
        if not found and settings.ungrounded_object != "off":
            ungrounded = ungrounded_objects(pair.answer, image)
            if ungrounded:
                action = DROP if settings.ungrounded_object == "drop" else FLAG
                found.append(GateVerdict("ungrounded_object", action, ungrounded))
        if not any(v.action == DROP for v in found):
            earlier.append((pair, shingles))
        verdicts.append(tuple(found))
    return tuple(verdicts)


def _first_drop(pair: Pair, settings: GatesConfig, context: "_Context",
                cut_here: bool) -> tuple[str, str] | None:
    if settings.placeholder:
        why = placeholder(pair.question, "question") or placeholder(pair.answer, "answer")
        if why:
            return "placeholder", why
    if settings.refusal:
        why = refusal(pair.answer)
        if why:
            return "refusal", why
    if settings.cut_off and cut_here and not ends_sentence(pair.answer):
        return "cut_off", "the reply stopped at the token limit inside this answer"
    if settings.same_as_question:
        why = same_as_question(pair.question, pair.answer)
        if why:
            return "same_as_question", why
    if settings.prompt_copy:
        why = context.copied(pair)
        if why:
            return "prompt_copy", why
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
    stripped = text.strip()
    if not stripped:
        return f"the {part} is empty"
    if not any(ch.isalnum() for ch in stripped):
        return f"the {part} is only punctuation ({_short(stripped)})"
    bare = " ".join(stripped.lower().split()).strip(" .!?:;\"'`*_")
    if bare in _PLACEHOLDER_WORDS:
        return f"the {part} is a placeholder ({_short(stripped)})"
    if _WHOLE_BRACKET.match(stripped) or _TEMPLATE_SLOT.search(stripped):
        return f"the {part} holds template text ({_short(stripped)})"
    return ""


# -- refusal -------------------------------------------------------------------------------------
_PICTURE = r"(?:the |this |that |these |your |an? |any )?(?:images?|pictures?|photos?|photographs?|visuals?|visual content)"
_CANNOT = (r"(?:can ?not|can't|cant|am unable to|'m unable to|am not able to|'m not able to"
           r"|do not have the (?:ability|capability) to|don't have the (?:ability|capability) to)")
_REFUSAL = re.compile(
    r"\bas an? (?:ai|artificial intelligence|language model|text[- ]based)\b"
    r"|\bi(?:'m| am) (?:just |only |merely )?an? (?:ai|artificial intelligence|language model"
    r"|text[- ]based (?:ai|model|assistant))\b"
    r"|\b(?:an? )?ai (?:language )?model\b"
    rf"|\bi {_CANNOT} (?:see|view|look at|access|perceive|process|analy[sz]e|open|display) {_PICTURE}"
    r"|\bi (?:do not|don't) have (?:access to (?:the |this |any )?(?:image|picture|photo)|eyes\b|visual)"
    r"|\bi (?:can ?not|can't|am unable to|'m unable to|won't|will not|must decline to|refuse to)"
    r" (?:answer|help|assist|comply|fulfil|fulfill|respond)\b"
    r"|^\W*(?:i'?m sorry|i am sorry|sorry|i apologi[sz]e),? (?:but )?i\b",
    re.IGNORECASE,
)


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
    asked, said = words(question), words(answer)
    if not said:
        return ""
    if asked == said:
        return "the answer is the question again"
    if question_family(question) == "yes/no":
        return ""
    asked_set, said_set = set(asked), set(said)
    if said_set <= asked_set and len(said_set) >= 0.75 * len(asked_set):
        return "the answer only restates the question's words"
    return ""


# -- prompt copy ---------------------------------------------------------------------------------
_PROMPT_SHINGLES: dict[tuple[str, int], frozenset[tuple[str, ...]]] = {}


def _ngrams(tokens: Sequence[str], n: int) -> Iterable[tuple[str, ...]]:
    return (tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _prompt_shingles(prompt: PromptText, n: int) -> frozenset[tuple[str, ...]]:
    cached = _PROMPT_SHINGLES.get((prompt.key, n))
    if cached is None:
        # Prompt versions are content hashes: a key never changes meaning, so caching is safe.
        cached = frozenset(_ngrams(words(prompt.text), n))
        _PROMPT_SHINGLES[(prompt.key, n)] = cached
    return cached


class _Context:
    """One reply's view of its prompt and image, with the image's own word runs read lazily."""

    def __init__(self, image: Image, prompt: PromptText | None, n: int) -> None:
        self.image = image
        self.n = max(1, n)
        self.shingles = _prompt_shingles(prompt, self.n) if prompt is not None else frozenset()
        self._own: frozenset[tuple[str, ...]] | None = None

    def own(self) -> frozenset[tuple[str, ...]]:
        if self._own is None:
            self._own = frozenset(_ngrams(words(render_context(self.image, True)), self.n))
        return self._own

    def copied(self, pair: Pair) -> str:
        if not self.shingles:
            return ""
        for part, text in (("question", pair.question), ("answer", pair.answer)):
            tokens = words(text)
            for run in _ngrams(tokens, self.n):
                if run in self.shingles and run not in self.own():
                    return (f"the {part} repeats {self.n} words in a row from the prompt: "
                            f"\"{' '.join(run)}\"")
        return ""


# -- duplicate -----------------------------------------------------------------------------------
def _shingles(pair: Pair) -> frozenset[str]:
    # Single words, the question's apart from the answer's: short pairs reworded by one or two
    # words ("What is the colour of..." / "What colour is...") still come out close.
    return frozenset([*("q " + w for w in words(pair.question)),
                      *("a " + w for w in words(pair.answer))])


def similarity(a: frozenset[str], b: frozenset[str]) -> float:
    """Jaccard similarity of two shingle sets."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _duplicate_of(pair: Pair, shingles: frozenset[str], earlier: Sequence[tuple[Pair, frozenset[str]]],
                  threshold: float) -> tuple[str, str] | None:
    asked = words(pair.question)
    for number, (other, other_shingles) in enumerate(earlier, 1):
        if asked and asked == words(other.question):
            return "duplicate", f"asks the same question as an earlier pair: {_short(other.question)}"
        score = similarity(shingles, other_shingles)
        if score >= threshold:
            return "duplicate", (f"{score:.0%} the same as an earlier pair of this image: "
                                 f"{_short(other.question)}")
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
    if not image.boxes:
        return ""
    boxed = {box.category for box in image.boxes}
    lowered = answer.lower().replace("\u2019", "'")
    missing: dict[str, str] = {}
    for category, form, start in category_mentions(answer):
        if category in boxed or category in missing:
            continue
        before = words(lowered[max(0, start - 40):start])[-4:]
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

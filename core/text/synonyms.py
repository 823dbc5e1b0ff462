"""The words the analysis knows: COCO category names, plurals and synonyms; question openers."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

# The 80 category names of the COCO instances files, in category-id order.
COCO_CATEGORIES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)

# Words people use for a category. Generic words ("vehicle", "animal", "food", "glass",
# "plant", "screen") are left out on purpose: they name no one category.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "person": ("people", "man", "woman", "boy", "girl", "child", "kid", "baby", "toddler",
               "guy", "lady", "gentleman", "adult", "teenager", "player", "pedestrian",
               "rider", "skier", "surfer", "skateboarder", "snowboarder", "batter", "catcher",
               "umpire", "chef", "worker", "officer"),
    "bicycle": ("bike",),
    "car": ("taxi", "sedan", "suv"),
    "motorcycle": ("motorbike", "motor bike", "dirt bike"),
    "airplane": ("plane", "aeroplane", "jet", "airliner", "aircraft"),
    "truck": ("lorry", "pickup truck"),
    "boat": ("ship", "sailboat", "canoe", "kayak", "yacht"),
    "traffic light": ("traffic signal", "stoplight", "stop light"),
    "fire hydrant": ("hydrant",),
    "bird": ("pigeon", "seagull", "duck", "parrot"),
    "cat": ("kitten", "kitty"),
    "dog": ("puppy",),
    "horse": ("pony", "foal"),
    "sheep": ("lamb",),
    "cow": ("cattle", "calf", "bull"),
    "backpack": ("back pack", "knapsack", "rucksack"),
    "umbrella": ("parasol",),
    "handbag": ("hand bag", "purse"),
    "tie": ("necktie",),
    "suitcase": ("suit case", "luggage"),
    "skis": ("pair of skis",),
    "sports ball": ("ball", "soccer ball", "tennis ball"),
    "baseball bat": ("bat",),
    "baseball glove": ("baseball mitt", "mitt"),
    "skateboard": ("skate board",),
    "surfboard": ("surf board",),
    "tennis racket": ("racket", "racquet", "tennis racquet"),
    "wine glass": ("wineglass",),
    "cup": ("mug",),
    "hot dog": ("hotdog",),
    "donut": ("doughnut",),
    "cake": ("cupcake",),
    "couch": ("sofa",),
    "potted plant": ("houseplant", "house plant"),
    "dining table": ("table",),
    "tv": ("television", "tv set"),
    "laptop": ("laptop computer",),
    "mouse": ("computer mouse",),
    "remote": ("remote control",),
    "cell phone": ("cellphone", "phone", "smartphone", "mobile phone"),
    "microwave": ("microwave oven",),
    "refrigerator": ("fridge",),
    "teddy bear": ("teddy",),
    "hair drier": ("hair dryer", "hairdryer", "blow dryer"),
    "toothbrush": ("tooth brush",),
}

# Forms that are too often another word to count as a mention: "orange" is mostly a colour and
# "ski" mostly an adjective ("ski slope"), so only their plurals ("oranges", "skis") count.
AMBIGUOUS_FORMS: frozenset[str] = frozenset({"orange", "ski"})

_IRREGULAR_PLURALS: dict[str, tuple[str, ...]] = {
    "person": ("people", "persons"),
    "man": ("men",),
    "woman": ("women",),
    "child": ("children",),
    "gentleman": ("gentlemen",),
    "mouse": ("mice",),
    "knife": ("knives",),
    "calf": ("calves",),
    "sheep": ("sheep",),
    "cattle": ("cattle",),
    "skis": ("skis",),
    "scissors": ("scissors",),
    "broccoli": ("broccoli",),
    "bus": ("buses", "busses"),
    "tv": ("tvs", "tv's"),
}


def plural(word: str) -> tuple[str, ...]:
    """English plural forms of a (possibly two-word) name, inflecting the last word."""
    head, _, last = word.rpartition(" ")
    prefix = f"{head} " if head else ""
    if last in _IRREGULAR_PLURALS:
        return tuple(prefix + form for form in _IRREGULAR_PLURALS[last])
    if re.search(r"(s|x|z|ch|sh)$", last):
        return (f"{prefix}{last}es",)
    if re.search(r"[^aeiou]y$", last):
        return (f"{prefix}{last[:-1]}ies",)
    return (f"{prefix}{last}s",)


@lru_cache(maxsize=1)
def surface_forms() -> dict[str, str]:
    """Every form we match (lowercase) mapped to its COCO category."""
    forms: dict[str, str] = {}
    for category in COCO_CATEGORIES:
        for name in (category, *SYNONYMS.get(category, ())):
            for form in (name, *plural(name)):
                forms.setdefault(form, category)
    # "ski" is the singular of "skis" that plural() never makes; keep it out with the others.
    for form in AMBIGUOUS_FORMS:
        forms.pop(form, None)
    return forms


@lru_cache(maxsize=1)
def _mention_pattern() -> re.Pattern[str]:
    # Longest forms first, so "hot dog" wins over "dog" and "teddy bear" over "bear".
    forms = sorted(surface_forms(), key=lambda form: (-len(form), form))
    alternatives = "|".join(re.escape(form).replace(r"\ ", r"\s+") for form in forms)
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])")


def mentioned_categories(text: str) -> frozenset[str]:
    """The COCO categories a text names, by category name, plural or synonym, on word boundaries."""
    forms = surface_forms()
    lowered = text.lower().replace("\u2019", "'")
    return frozenset(forms[re.sub(r"\s+", " ", match.group(0))]
                     for match in _mention_pattern().finditer(lowered))


@lru_cache(maxsize=1)
def _forms_by_words() -> tuple[dict[tuple[str, ...], str], frozenset[str], int]:
    """Surface forms as word tuples, the words forms start with, and the longest form's length."""
    table = {tuple(words(form)): category for form, category in surface_forms().items()}
    return table, frozenset(form[0] for form in table), max(map(len, table))


def category_mentions(tokens: Sequence[str]) -> list[tuple[str, str, int]]:
    """(category, form, word position) of each COCO category named in `tokens` (from `words`).

    The word-list twin of `mentioned_categories`, for callers that have the words already;
    the longest form wins ("hot dog" over "dog").
    """
    table, starts, longest = _forms_by_words()
    if starts.isdisjoint(tokens):
        return []
    mentions: list[tuple[str, str, int]] = []
    position = 0
    while position < len(tokens):
        if tokens[position] in starts:
            for size in range(min(longest, len(tokens) - position), 0, -1):
                form = tuple(tokens[position:position + size])
                category = table.get(form)
                if category is not None:
                    mentions.append((category, " ".join(form), position))
                    position += size - 1
                    break
        position += 1
    return mentions


# Question types by their opening words; "how much" counts with "how many" (both ask a quantity).
QUESTION_FAMILIES: tuple[str, ...] = (
    "what", "how many", "where", "why", "how", "who", "which", "when", "yes/no", "describe",
    "other",
)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")
_YES_NO = frozenset((
    "is", "are", "was", "were", "am", "does", "do", "did", "can", "could", "will", "would",
    "should", "shall", "has", "have", "had", "may", "might", "must", "isn't", "aren't", "wasn't",
    "weren't", "doesn't", "don't", "didn't", "can't", "couldn't", "won't", "wouldn't", "shouldn't",
    "hasn't", "haven't",
))
_REQUEST = frozenset((
    "describe", "explain", "analyze", "analyse", "tell", "provide", "give", "list", "write",
    "elaborate", "identify", "summarize", "summarise", "discuss", "share", "detail", "imagine",
    "examine", "portray", "narrate", "illustrate", "characterize", "break", "walk", "offer",
    "present", "compose", "create", "depict", "clarify", "outline", "talk", "help", "suggest",
))
_WH = ("what", "where", "why", "how", "who", "which", "when")


def words(text: str) -> list[str]:
    """Lowercase word tokens; "don't" and "it's" stay one word."""
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def question_family(question: str) -> str:
    """The question type by its first words (a clause before a comma is skipped)."""
    tokens = words(question)
    family = _family_of(tokens)
    head = question.split(",", 1)[0]
    if family == "other" and "," in question and len(words(head)) <= 8:
        family = _family_of(words(question.split(",", 1)[1]))
    return family


def _family_of(tokens: list[str]) -> str:
    while tokens and tokens[0] in ("please", "so", "and", "now", "then", "also", "okay", "ok"):
        tokens = tokens[1:]
    if not tokens:
        return "other"
    first = tokens[0].removesuffix("'s")
    if first in ("what", "whats"):
        return "what"
    if first == "how" and len(tokens) > 1 and tokens[1] in ("many", "much"):
        return "how many"
    if first in ("whom", "whose"):
        return "who"
    if first in _WH:
        return first
    if first in _REQUEST:
        return "describe"
    if first in _YES_NO:
        # "Can you describe ..." asks for a description, not a yes or a no.
        if len(tokens) > 2 and tokens[1] == "you" and tokens[2] in _REQUEST:
            return "describe"
        return "yes/no"
    return "other"


def question_template(question: str) -> str:
    """A question normalised for near-duplicate counting: lowercase, digits as #, no punctuation."""
    text = re.sub(r"\d+", "#", question.lower().replace("\u2019", "'"))
    return " ".join(re.sub(r"[^a-z#' ]+", " ", text).replace("'", "").split())

"""Which part of llava_v1_5_mix665k.json a record belongs to, by its image path and prompts.

The one classifier of mix665k records: `prepare` reads the GPT-4 baseline through it and
`export --mix` decides through it what goes into the training mix. docs/training-mix.md lists
the parts, the patterns that place a record in each, and where each part came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from visinstruct.dataset.records import Pair

IMAGE_TOKEN = "<image>"
COCO_PREFIX = "coco/train2017/"
GQA_PREFIX = "gqa/images/"

# Part names: the keys of PARTS, plus the two a record falls in when it cannot be placed.
LLAVA_INSTRUCT = "llava_instruct"
SHAREGPT = "sharegpt"
VQA_COCO = "vqav2_okvqa"
AOKVQA = "aokvqa"
REFCOCO = "refcoco"
GQA = "gqa"
OCR_VQA = "ocr_vqa"
TEXTCAPS = "textcaps"
VISUAL_GENOME = "vg"
UNCLASSIFIED = "unclassified"
MALFORMED = "malformed"


@dataclass(frozen=True)
class MixPart:
    """One part of mix665k: what it is, who made its answers, and its terms where known."""

    name: str
    title: str
    made_by: str        # "people" (an academic set's own answers), "GPT-4" or "ChatGPT"
    license: str        # the SPDX id its authors publish, "unknown", or both for a shared part
    link: str           # where its terms are published
    academic: bool      # kept as it is in the training mix


_COCO_TERMS = "https://cocodataset.org/#termsofuse"
PARTS: dict[str, MixPart] = {part.name: part for part in (
    MixPart(LLAVA_INSTRUCT, "LLaVA-Instruct (conversation, detail, complex reasoning; COCO)",
            "GPT-4", "CC-BY-NC-4.0",
            "https://huggingface.co/datasets/liuhaotian/LLaVA-Instruct-150K", False),
    MixPart(SHAREGPT, "ShareGPT (text-only conversations)", "ChatGPT", "unknown",
            "https://huggingface.co/datasets/liuhaotian/LLaVA-Instruct-150K", False),
    # One part holds two sets (they share a prompt), so one licence cannot be claimed for it.
    MixPart(VQA_COCO, "VQAv2 and OK-VQA (COCO)", "people",
            "CC-BY-4.0 (VQAv2); unknown (OK-VQA)", "https://visualqa.org/terms.html", True),
    MixPart(AOKVQA, "A-OKVQA multiple choice (COCO)", "people", "unknown",
            "https://allenai.org/project/a-okvqa/home", True),
    MixPart(REFCOCO, "RefCOCO regions (COCO)", "people", "unknown",
            "https://github.com/lichengunc/refer", True),
    MixPart(GQA, "GQA", "people", "CC-BY-4.0",
            "https://cs.stanford.edu/people/dorarad/gqa/about.html", True),
    MixPart(OCR_VQA, "OCR-VQA (book covers)", "people", "unknown",
            "https://ocr-vqa.github.io/", True),
    MixPart(TEXTCAPS, "TextCaps (TextVQA images)", "people", "CC-BY-4.0",
            "https://textvqa.org/textcaps/", True),
    MixPart(VISUAL_GENOME, "Visual Genome regions", "people", "CC-BY-4.0",
            "https://homes.cs.washington.edu/~ranjay/visualgenome/", True),
)}
COCO_IMAGES_TERMS = _COCO_TERMS

# Image folders of the academic sets other than COCO: the path alone places the record.
_FOLDER_PARTS: tuple[tuple[str, str], ...] = (
    (GQA_PREFIX, GQA), ("ocr_vqa/", OCR_VQA), ("textvqa/", TEXTCAPS), ("vg/", VISUAL_GENOME))

# The prompts LLaVA-1.5 gave each academic set on COCO images (and close rewordings),
# matched in the lower-cased questions: plain substrings where they are literal.
_OPTION_PROMPTS = ("answer with the option", "option's letter")
_OPTION_LINE = re.compile(r"^\s*[A-H][.)]\s+\S", re.MULTILINE)
_REGION_PROMPTS = ("short description for this region", "bounding box coordinate",
                   "region this sentence describes")
_NUMBER = r"\s*-?(?:\d+\.?\d*|\.\d+)\s*"
_BOX_LIST = re.compile(rf"\[{_NUMBER},{_NUMBER},{_NUMBER},{_NUMBER}\]")
_SHORT_ANSWER_PROMPT = re.compile(
    r"answer (?:the question )?(?:using|with|in) (?:only )?(?:a|one) (?:single )?(?:word|phrase)"
    r"|answer (?:with )?(?:yes or no|a number)|one-sentence caption")

# Ways of asking for a description of the whole image (the detail task), written for the
# questions of LLaVA-Instruct's detail_23k and the paper's list of description requests.
_DETAIL_REQUEST = re.compile(
    r"\bin (?:great |more |full |rich |fine )?detail"
    r"|\bdetailed\b|\bwell-detailed\b"
    r"|\b(?:comprehensive|thorough|exhaustive)\b"
    r"|\belaborate (?:on|explanation|description|account)\b"
    r"|\bdescribe (?:the |this )?(?:following |given |provided |presented )?"
    r"(?:image|picture|photo|photograph|scene|snapshot)\b"
    r"|\bwhat do you (?:see|think is) (?:happening|going on)\b"
    r"|\bwhat(?:'s| is) (?:happening|going on) in (?:the|this) (?:scene|snapshot)\b"
    r"|\bwhat is this (?:photo|picture|image|photograph) about\b"
    r"|\bkey elements\b|\bmain features\b|\bvarious aspects\b"
    r"|\bexplain (?:what you see|the visual content)\b"
    r"|\b(?:walk through|narrate|portray|characterize|break down|rundown|illustrate"
    r"|examine|clarify)\b.*\b(?:image|picture|photo|contents|details)\b",
    re.IGNORECASE,
)
# Words of a question that asks for inference rather than what is visible (complex_reasoning).
_REASONING_CUE = re.compile(
    r"\b(?:why|might|could|may|would|potential(?:ly)?|possible|possibly|likely|infer(?:red)?"
    r"|reasons?|purpose|imagine|benefits?|challenges?|concerns?|precautions?|suggests?"
    r"|significance|implications?|impact|factors?|aftermath|measures)\b",
    re.IGNORECASE,
)
_SHORT_ANSWER_WORDS = 3      # VQA ground truths are one to three words
_LONG_ANSWER_WORDS = 60      # single answers this long are reasoning, not a conversation turn
_REASONED_ANSWER_WORDS = 35  # ... or this long when the question asks for inference


@dataclass(frozen=True)
class Placement:
    """Where a record goes: its part, and for a COCO record its image id and pairs.

    `task` is set for LLaVA-Instruct records only: conversation, detail or complex_reasoning.
    """

    part: str
    task: str = ""
    image_id: int = 0
    pairs: tuple[Pair, ...] = ()


def place_record(record: Any, *, with_task: bool = True) -> Placement:
    """The part of mix665k `record` belongs to (MALFORMED or UNCLASSIFIED when none fits).

    `with_task=False` skips what only `prepare` needs: a LLaVA-Instruct record's task and pairs.
    """
    if not isinstance(record, dict):
        return Placement(MALFORMED)
    image = record.get("image")
    if image is None or image == "":
        return Placement(SHAREGPT) if isinstance(record.get("conversations"), list) \
            else Placement(MALFORMED)
    if not isinstance(image, str):
        return Placement(MALFORMED)
    if not image.startswith(COCO_PREFIX):
        for prefix, part in _FOLDER_PARTS:
            if image.startswith(prefix):
                return Placement(part)
        return Placement(UNCLASSIFIED)
    image_id = coco_image_id(image)
    if image_id is None:
        return Placement(MALFORMED)
    texts = _turn_texts(record.get("conversations"))
    if texts is None:
        return Placement(MALFORMED, image_id=image_id)
    questions, answers = texts
    academic = academic_part(questions, answers)
    if academic:
        return Placement(academic, image_id=image_id)
    if _mostly_terse(answers):
        # Short answers with none of LLaVA-1.5's prompts: neither GPT-4's nor a known set's.
        return Placement(UNCLASSIFIED, image_id=image_id)
    if not with_task:
        return Placement(LLAVA_INSTRUCT, image_id=image_id)
    pairs = tuple(Pair(q.replace(IMAGE_TOKEN, "").strip(), a.strip())
                  for q, a in zip(questions, answers, strict=True))
    return Placement(LLAVA_INSTRUCT, instruct_task(pairs), image_id, pairs)


def _turn_texts(turns: Any) -> tuple[list[str], list[str]] | None:
    """The questions and answers of turns that alternate human, gpt (a dangling question is
    dropped), or None when a turn is not so or nothing was answered."""
    if type(turns) is not list or len(turns) < 2:
        return None
    questions: list[str] = []
    answers: list[str] = []
    # Plain loops and type() checks: this runs on most of mix665k's 665K records.
    for index, turn in enumerate(turns):
        asking = index % 2 == 0
        speaker = "human" if asking else "gpt"
        value = turn.get("value") if type(turn) is dict and turn.get("from") == speaker else None
        if type(value) is not str:
            return None
        (questions if asking else answers).append(value)
    if len(questions) > len(answers):
        questions.pop()
    return questions, answers


def academic_part(questions: list[str], answers: list[str]) -> str:
    """The academic set whose prompts these COCO turns use, or "" when none matches."""
    # Each pattern runs once over all the questions, lower-cased, and only where a plain
    # substring test says it may match: this runs on most of mix665k's 665K records.
    joined = "\n".join(questions)
    lowered = joined.lower()
    if any(prompt in lowered for prompt in _OPTION_PROMPTS) or (
            len(_OPTION_LINE.findall(joined)) >= 2
            and any(len(_OPTION_LINE.findall(q)) >= 2 for q in questions)):
        return AOKVQA
    if (any(prompt in lowered for prompt in _REGION_PROMPTS)
            or ("[" in joined and _BOX_LIST.search(joined))
            or any(a.lstrip().startswith("[") and _BOX_LIST.fullmatch(a.strip())
                   for a in answers)):
        return REFCOCO
    if ("answer" in lowered or "caption" in lowered) and _SHORT_ANSWER_PROMPT.search(lowered):
        return VQA_COCO
    return ""


def instruct_task(pairs: tuple[Pair, ...]) -> str:
    """conversation, detail or complex_reasoning for the pairs of a LLaVA-Instruct record."""
    if len(pairs) > 1:
        return "conversation"
    question, answer = pairs[0].question, pairs[0].answer
    if _DETAIL_REQUEST.search(question):
        return "detail"
    words = len(answer.split(maxsplit=_LONG_ANSWER_WORDS))  # counted up to what matters
    if words >= _LONG_ANSWER_WORDS or (
        words >= _REASONED_ANSWER_WORDS and _REASONING_CUE.search(question)
    ):
        return "complex_reasoning"
    return "conversation"


def _mostly_terse(answers: list[str]) -> bool:
    short = sum(len(answer.split(maxsplit=_SHORT_ANSWER_WORDS)) <= _SHORT_ANSWER_WORDS
                for answer in answers)
    return short * 4 >= len(answers) * 3


def coco_image_id(image: str) -> int | None:
    """The COCO id in 'coco/train2017/000000123456.jpg', or None when the name has none."""
    stem = image[len(COCO_PREFIX):].rsplit(".", 1)[0]
    return int(stem) if stem.isdigit() else None


def gqa_image_id(image: str) -> str:
    """The GQA id in 'gqa/images/2354786.jpg', or '' for any other image."""
    if not image.startswith(GQA_PREFIX):
        return ""
    return image[len(GQA_PREFIX):].rsplit(".", 1)[0]

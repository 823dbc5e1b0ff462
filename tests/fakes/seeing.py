"""What a seeing model behind a fake wire receives: the pictures in a body, decoded to pixels,
and replies that depend on the picture's colour (a generator and a judge that look)."""

from __future__ import annotations

import base64
import io
import json
import re
from typing import Any

from PIL import Image as PILImage

from tests.fakes.model_replies import prompt_text
from tests.fakes.scripting import RecordedRequest

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (30, 60, 220)}


def pictures_in(body: Any) -> list[PILImage.Image]:
    """Every picture in a chat-completions, Anthropic Messages or Converse body, decoded."""
    found: list[bytes] = []
    for message in (body.get("messages") or []) if isinstance(body, dict) else []:
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "image_url":  # OpenAI-compatible, SageMaker Messages
                head, _, data = part["image_url"]["url"].partition(",")
                assert head.startswith("data:image/") and head.endswith(";base64")
                found.append(base64.b64decode(data))
            elif part.get("type") == "image":  # Anthropic Messages (InvokeModel, batch)
                found.append(base64.b64decode(part["source"]["data"]))
            elif "image" in part:  # Converse: botocore sends the bytes as base64
                found.append(base64.b64decode(part["image"]["source"]["bytes"]))
    pictures = []
    for data in found:
        picture = PILImage.open(io.BytesIO(data))
        picture.load()
        pictures.append(picture)
    return pictures


def colour_of(picture: PILImage.Image) -> str:
    """The named colour nearest to the picture's middle pixel."""
    pixel = picture.convert("RGB").getpixel((picture.width // 2, picture.height // 2))
    assert isinstance(pixel, tuple)
    return min(COLOURS, key=lambda name: sum((a - b) ** 2
                                             for a, b in zip(COLOURS[name], pixel, strict=True)))


def other_colour(colour: str) -> str:
    names = list(COLOURS)
    return names[(names.index(colour) + 1) % len(names)]


def seeing_generator(request: RecordedRequest) -> str:
    """Two pairs per picture: one true of its colour, one false."""
    pictures = pictures_in(request.json)
    if not pictures:
        return json.dumps({"pairs": [{"question": "What is shown here?",
                                      "answer": "A scene described by its notes."}]})
    true = colour_of(pictures[0])
    return json.dumps({"pairs": [
        {"question": "Which colour fills the middle of the photo?",
         "answer": f"The middle of the photo is {true}."},
        {"question": "What shade covers the far edges of the frame?",
         "answer": f"The edges of the frame are {other_colour(true)}."}]})


def seeing_judge(request: RecordedRequest) -> str:
    """A judge that looks: 9 for an answer naming the picture's colour, 2 for another colour."""
    text = prompt_text(request.json)
    pictures = pictures_in(request.json)
    truth = colour_of(pictures[0]) if pictures else ""
    answers = re.findall(r"^Pair \d+\nQuestion: .*\nAnswer: (.*)$", text, re.M)
    scores = []
    for n, answer in enumerate(answers, 1):
        named = [c for c in COLOURS if c in answer.lower()]
        score = 5 if not truth or not named else 9 if truth in named else 2
        scores.append({"index": n, "score": score, "reason": f"{truth or 'unseen'} picture"})
    return json.dumps({"scores": scores})

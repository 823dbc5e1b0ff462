"""The text a model sees instead of the picture: captions, boxes, scene graph and known answers."""

from __future__ import annotations

from visinstruct.core.records import Image, SceneObject
from visinstruct.core.sanitize.clean import clean_pair_text

# Beyond this many known answers the context only grows, it tells the model little more
# (GQA's *_all_questions hold about 190 per image).
MAX_FACTS_IN_CONTEXT = 40
OBJECTS_HEADING = "Objects:"
RELATIONS_HEADING = "Relations:"
FACTS_HEADING = "Known answers:"


# The last images rendered: a run renders each image for every task's prompt, for the
# judge's and for the gates; this keeps the text of the few images being worked on.
_RENDERED: dict[tuple[int, bool], tuple[Image, str]] = {}
_RENDERED_MAX = 512


def render_context(image: Image, include_boxes: bool) -> str:
    """Every caption, then optionally the boxes; a scene graph's objects and relations; facts.

    Crowd boxes are kept and not marked, as in LLaVA's own context: the captions usually
    name the crowd, and a marker would only invite the model to talk about annotations.
    """
    key = (id(image), include_boxes)
    cached = _RENDERED.get(key)
    if cached is not None and cached[0] is image:  # the same object (an id may be reused)
        return cached[1]
    text = _render(image, include_boxes)
    if len(_RENDERED) >= _RENDERED_MAX:
        _RENDERED.clear()
    _RENDERED[key] = (image, text)
    return text


def _render(image: Image, include_boxes: bool) -> str:
    # Captions are data too: an `<image>` token or a control byte in one would be echoed back.
    captions = [" ".join(clean_pair_text(c).split()) for c in image.captions]
    blocks: list[list[str]] = [[c for c in captions if c]]
    if include_boxes and image.boxes:
        blocks.append([f"{box.category}: {_box(box.bbox)}" for box in image.boxes])
    if image.location or image.weather:
        blocks.append([", ".join(p for p in (
            f"Place: {image.location}" if image.location else "",
            f"Weather: {image.weather}" if image.weather else "") if p)])
    if image.objects:
        blocks.append([OBJECTS_HEADING, *(_object_line(o, include_boxes) for o in image.objects)])
        triples = relation_triples(image)
        if triples:
            blocks.append([RELATIONS_HEADING, *triples])
    if image.facts:
        blocks.append([FACTS_HEADING, *(
            f"Q: {' '.join(clean_pair_text(f.question).split())} A: {clean_pair_text(f.answer)}"
            for f in image.facts[:MAX_FACTS_IN_CONTEXT])])
    return "\n\n".join("\n".join(block) for block in blocks if block)


def describe(obj: SceneObject) -> str:
    """An object with its attributes in front: 'silver open laptop'."""
    return " ".join((*obj.attributes, obj.name))


def relation_triples(image: Image) -> list[str]:
    """The scene graph's relations as readable triples, each once, in graph order."""
    seen: set[str] = set()
    triples: list[str] = []
    for relation in image.relations:
        if not (0 <= relation.subject < len(image.objects)
                and 0 <= relation.object < len(image.objects)):
            continue
        text = (f"{describe(image.objects[relation.subject])} {relation.name} "
                f"{describe(image.objects[relation.object])}")
        if text not in seen:
            seen.add(text)
            triples.append(text)
    return triples


def _object_line(obj: SceneObject, include_boxes: bool) -> str:
    attributes = f" ({', '.join(obj.attributes)})" if obj.attributes else ""
    box = f": {_box(obj.bbox)}" if include_boxes else ""
    return f"{obj.name}{attributes}{box}"


def _box(bbox: tuple[float, float, float, float]) -> str:
    return f"[{', '.join(f'{v:.3f}' for v in bbox)}]"

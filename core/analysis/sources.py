"""Per-source views for the analysis: which source an image is from, and what CHAIR checks there.

On COCO images the grounding check compares mentioned COCO categories with the image's boxes;
on GQA images it compares mentioned scene graph object names with the image's objects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from visinstruct.core.store.database import Store
from visinstruct.core.store.scene_queries import image_sources, object_names


class SourceView:
    """Each image's source, and its GQA object names with the words that mention them."""

    def __init__(self, store: Store) -> None:
        self.sources: Mapping[int, str] = image_sources(store)
        self.names: Mapping[int, frozenset[str]] = object_names(store)
        self.several = bool(self.sources) and int(store.scalar(
            "SELECT COUNT(*) FROM images WHERE source = 'coco'") or 0) > 0
        vocabulary = sorted({n for names in self.names.values() for n in names if n.strip()},
                            key=lambda n: (-len(n), n))
        # Longest names first, so "coffee table" is one mention rather than "table".
        self._pattern = re.compile(
            r"\b(" + "|".join(re.escape(n) for n in vocabulary) + r")(?:s|es)?\b"
        ) if vocabulary else None

    def source(self, image_id: int) -> str:
        """coco or gqa."""
        return self.sources.get(image_id, "coco")

    def is_gqa(self, image_id: int) -> bool:
        return self.sources.get(image_id) == "gqa"

    def gqa_mentions(self, text: str) -> frozenset[str]:
        """The GQA object names (of any image in the store) that `text` names."""
        if self._pattern is None:
            return frozenset()
        return frozenset(m.group(1) for m in self._pattern.finditer(text.lower()))

    def present(self, image_id: int, boxes: Mapping[int, frozenset[str]]) -> frozenset[str] | None:
        """What a mention may name on this image: its object names (GQA) or box categories."""
        if self.is_gqa(image_id):
            return self.names.get(image_id)
        return boxes.get(image_id)

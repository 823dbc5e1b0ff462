"""Replies a well-behaved model would give to visinstruct's own prompts, for the wire fakes.

The fakes see only the wire body, so the kind of request is read from the prompt text:
a judge prompt lists numbered pairs, a detail prompt asks for a description.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from tests.fakes.scripting import RecordedRequest


def prompt_text(body: Any) -> str:
    """The prompt inside a TGI / LMI / Messages / OpenAI / Bedrock (any family) body."""
    if isinstance(body, dict):
        if isinstance(body.get("inputs"), str):
            return body["inputs"]
        if isinstance(body.get("prompt"), str):  # Mistral and Llama InvokeModel bodies
            return body["prompt"]
        messages = body.get("messages") or []
        parts: list[str] = []
        for message in messages:
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(str(c.get("text", "")) for c in content if isinstance(c, dict))
        return "\n".join(parts)
    return ""


def reply_for(text: str) -> str:
    """A deterministic, well-formed answer to one of visinstruct's prompts."""
    digest = int(hashlib.sha256(text.encode()).hexdigest(), 16)
    last = text.rsplit("Context:", 1)[-1]
    pair_numbers = re.findall(r"^Pair (\d+)$", last, re.M)
    if pair_numbers:
        n = max(int(p) for p in pair_numbers)
        return json.dumps({"scores": [
            {"index": i + 1, "score": 5 + (digest >> (3 * i)) % 6, "reason": "fits the context"}
            for i in range(n)]})
    captions = [line.strip() for line in last.splitlines()
                if line.strip() and not re.search(r"\[\d\.\d+", line) and ":" not in line[:12]
                and "[/INST]" not in line]
    captions = captions[:5] or ["a scene"]
    if '"description"' in text.rsplit("Reply format:", 1)[-1].split("\n", 1)[0]:
        return json.dumps({"description": " ".join(captions)})
    n = 2 + digest % 3
    return json.dumps({"pairs": [
        {"question": f"What stands out in part {i + 1} of the picture?",
         "answer": captions[i % len(captions)]} for i in range(n)]})


def reply_to_request(request: RecordedRequest) -> str:
    """Reply callable for `scripting.Reply(text=...)`."""
    return reply_for(prompt_text(request.json))

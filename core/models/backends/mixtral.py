"""Mixtral Instruct's chat template, which has no system role."""

from __future__ import annotations

from collections.abc import Sequence

from visinstruct.core.models.backends.base import Message


def fold_system(messages: Sequence[Message]) -> tuple[Message, ...]:
    """The messages with system text folded into the first user turn, same-role turns merged.

    Mixtral's template rejects a system role and expects strictly alternating turns.
    """
    system_texts = [m.content for m in messages if m.role == "system" and m.content]
    turns: list[Message] = []
    for message in messages:
        if message.role == "system":
            continue
        if message.role not in ("user", "assistant"):
            raise ValueError(
                f"unknown message role {message.role!r}; use system, user or assistant"
            )
        if turns and turns[-1].role == message.role:
            previous = turns[-1]
            turns[-1] = Message(
                previous.role,
                f"{previous.content}\n\n{message.content}",
                previous.images + message.images,
            )
        else:
            turns.append(message)
    if system_texts:
        system_text = "\n\n".join(system_texts)
        first_user = next((i for i, m in enumerate(turns) if m.role == "user"), None)
        if first_user is None:
            turns.insert(0, Message("user", system_text))
        else:
            user = turns[first_user]
            turns[first_user] = Message("user", f"{system_text}\n\n{user.content}", user.images)
    return tuple(turns)


def mixtral_prompt(messages: Sequence[Message]) -> str:
    """Render messages as `<s>[INST] user [/INST] answer</s>[INST] user [/INST]`."""
    turns = fold_system(messages)
    if not turns or turns[0].role != "user":
        raise ValueError("a Mixtral prompt must start with a user (or system) message")
    parts = ["<s>"]
    for turn in turns:
        if turn.role == "user":
            parts.append(f"[INST] {turn.content} [/INST]")
        else:
            parts.append(f" {turn.content}</s>")
    return "".join(parts)

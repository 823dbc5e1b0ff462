"""Prompt versions in the store: every version by content hash, and the one runs use per prompt."""

from __future__ import annotations

import sqlite3

from visinstruct.core.store.database import Store, now
from visinstruct.core.text.prompts import PromptTemplate, load_prompt, parse_prompt


def _register(conn: sqlite3.Connection, template: PromptTemplate) -> None:
    conn.execute("INSERT OR IGNORE INTO prompts (version, name, task, text, created_at) "
                 "VALUES (?, ?, ?, ?, ?)",
                 (template.version, template.name, template.task, template.text, now()))


def active_template(store: Store, name: str) -> PromptTemplate:
    """The version runs use: one the prompt lab chose, else the packaged file (registered here)."""
    row = store.reader().execute(
        "SELECT a.version, a.chosen_by, p.text FROM active_prompts a "
        "JOIN prompts p ON p.version = a.version WHERE a.name = ?", (name,)).fetchone()
    if row is not None and row[1] == "user":
        return parse_prompt(row[2], source=f"stored prompt {name} {row[0]}")
    packaged = load_prompt(name)

    def work(conn: sqlite3.Connection) -> None:
        _register(conn, packaged)
        conn.execute("INSERT INTO active_prompts (name, version, chosen_by) "
                     "VALUES (?, ?, 'package') "
                     "ON CONFLICT(name) DO UPDATE SET version = excluded.version, "
                     "chosen_by = 'package'", (name, packaged.version))

    store.write_sync(work)
    return packaged


def save_version(store: Store, template: PromptTemplate, *, activate: bool = True) -> str:
    """Store a (possibly edited) template by its hash; make it the one runs use when `activate`."""
    def work(conn: sqlite3.Connection) -> None:
        _register(conn, template)
        if activate:
            conn.execute("INSERT INTO active_prompts (name, version, chosen_by) "
                         "VALUES (?, ?, 'user') "
                         "ON CONFLICT(name) DO UPDATE SET version = excluded.version, "
                         "chosen_by = 'user'", (template.name, template.version))

    store.write_sync(work)
    return template.version


def reset_to_package(store: Store, name: str) -> PromptTemplate:
    """Forget the prompt lab's choice for `name`: runs use the packaged file again."""
    store.write_sync(lambda c: c.execute("DELETE FROM active_prompts WHERE name = ?", (name,)))
    return active_template(store, name)


def versions(store: Store, name: str) -> list[tuple[str, float]]:
    """Every stored version of prompt `name`, newest first, as (version, created_at)."""
    return [(r[0], r[1]) for r in store.query(
        "SELECT version, created_at FROM prompts WHERE name = ? ORDER BY created_at DESC", (name,))]


def stored_template(store: Store, version: str) -> PromptTemplate | None:
    """A stored version by its hash."""
    row = store.reader().execute("SELECT name, text FROM prompts WHERE version = ?",
                                 (version,)).fetchone()
    return None if row is None else parse_prompt(row[1], source=f"stored prompt {row[0]} {version}")

"""Full-text search over pairs: the FTS5 index (`pairs_fts`, migration 7) and its queries.

Pairs are append-only (edits are review rows), so the index catches up when a run ends and
before each search instead of through triggers: a trigger costs the writer ~100 us a pair,
most of a run's store time, while catching up costs only the pairs written since last time.
"""

from __future__ import annotations

import re
import sqlite3

from visinstruct.core.store.database import Store

INDEXED_UP_TO = "pairs_fts_upto"  # meta key: the highest pair id in the index
# Generation ids with a pair matching :text (an FTS5 query made by `match_query`).
MATCHING_GENERATIONS_SQL = (
    "SELECT p.generation_id FROM pairs p WHERE p.id IN "
    "(SELECT rowid FROM pairs_fts WHERE pairs_fts MATCH :text)")
_WORD = re.compile(r"\w+", re.UNICODE)


def catch_up(store: Store) -> int:
    """Index the pairs written since the last call; returns how many were added."""

    def work(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (INDEXED_UP_TO,)).fetchone()
        done = int(row[0]) if row else 0
        top = int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM pairs").fetchone()[0])
        if top <= done:
            return 0
        added = conn.execute(
            "INSERT INTO pairs_fts (rowid, question, answer) "
            "SELECT id, question, answer FROM pairs WHERE id > ? AND id <= ?", (done, top)).rowcount
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (INDEXED_UP_TO, str(top)))
        return int(added)

    return int(store.write_sync(work))


def match_query(text: str) -> str | None:
    """An FTS5 query matching every word of `text` (prefixes of the last); None if no words.

    Words are quoted, so what a user types is never FTS syntax (NOT, OR, quotes, colons).
    """
    words = _WORD.findall(text)
    if not words:
        return None
    quoted = [f'"{word}"' for word in words]
    quoted[-1] += "*"  # the search narrows while the user is still typing the last word
    return " ".join(quoted)


def search_pairs(store: Store, text: str, limit: int = 50) -> list[int]:
    """Ids of pairs whose question or answer holds every word of `text`, best match first."""
    query = match_query(text)
    if query is None:
        return []
    catch_up(store)
    return [int(row[0]) for row in store.query(
        "SELECT rowid FROM pairs_fts WHERE pairs_fts MATCH ? ORDER BY rank LIMIT ?",
        (query, limit))]

"""The app's own small settings (the chosen theme), kept in the user's config folder."""

from __future__ import annotations

import json
import os
from pathlib import Path


def settings_path() -> Path:
    """$XDG_CONFIG_HOME/visinstruct/settings.json (default ~/.config/visinstruct/settings.json)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "visinstruct" / "settings.json"


def load_settings() -> dict[str, object]:
    """The saved settings; empty when there are none or the file cannot be read."""
    try:
        data = json.loads(settings_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_setting(key: str, value: object) -> None:
    """Save one setting; a folder that cannot be written only means it is not remembered."""
    path = settings_path()
    data = load_settings()
    data[key] = value
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(data, indent=2), encoding="utf-8")
        os.replace(partial, path)
    except OSError:
        pass

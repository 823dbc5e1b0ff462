"""What every screen of the app shares: the config and the store path."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visinstruct.core.config import Config


@dataclass
class AppContext:
    """Set once when the app starts; screens reach it as `self.app.ctx`."""

    config: Config
    db_path: Path
    config_path: Path | None = None
    poll_seconds: float = 1.0
    chosen: bool = False      # --config given: runs use ctx.config, not the store's recorded one
    # --set (and --limit) as given: put on top of the config the store recorded, at each Start.
    overrides: dict[str, Any] = field(default_factory=dict)

"""What every screen of the app shares: the config and the store path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from visinstruct.core.config import Config


@dataclass
class AppContext:
    """Set once when the app starts; screens reach it as `self.app.ctx`."""

    config: Config
    db_path: Path
    config_path: Path | None = None
    poll_seconds: float = 1.0
    chosen: bool = False      # --config or --set given: runs use ctx.config, not the store's last

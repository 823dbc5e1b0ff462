"""The key footer of every screen: rebuilt only when the keys it shows have changed, and
never wider than the terminal (the keys that do not fit are left to `?` and the palette)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from textual.binding import Binding
from textual.events import Resize
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer as TextualFooter
from textual.widgets._footer import FooterKey

# (binding, enabled, tooltip, key as shown) of one key the footer could show.
Shown = tuple[Binding, bool, str, str]
HELP_ACTION = "help"          # `? Keys` is never left out: it lists every key
QUIT_ACTION = "request_quit"
SCREEN_SWITCH = "show_mode("  # m, r, p, e: F2-F5, `?` and the palette reach them too


def key_width(display: str, description: str, *, compact: bool) -> int:
    """Columns one key takes in Textual's footer: ' k desc ' (compact: 'k desc' and a gap)."""
    return len(display) + len(description) + (2 if compact else 3)


def palette_width(display: str, *, compact: bool) -> int:
    """Columns the command palette's key takes at the right end (and one to spare)."""
    return key_width(display, "palette", compact=compact) + 1


def fitted(shown: Sequence[Shown], width: int, *, compact: bool, current_mode: str,
           reserved: int = 0) -> list[Shown]:
    """The keys that fit in `width` columns (less `reserved`), in their order.

    Left out first: the key of the screen already shown, then the other screens' keys (the
    last first), then quit, then the screen's own keys (the last first); `?` always stays.
    """
    kept = list(shown)

    def used() -> int:
        return reserved + sum(key_width(display, binding.description, compact=compact)
                              for binding, _enabled, _tip, display in kept)

    def order() -> Iterator[Shown]:
        switches = [item for item in kept if item[0].action.startswith(SCREEN_SWITCH)]
        here = f"{SCREEN_SWITCH}'{current_mode}')"
        yield from (item for item in switches if item[0].action == here)
        yield from reversed([item for item in switches if item[0].action != here])
        yield from (item for item in kept if item[0].action == QUIT_ACTION)
        yield from reversed([item for item in kept if item[0].action not in (HELP_ACTION,
                                                                               QUIT_ACTION)
                             and not item[0].action.startswith(SCREEN_SWITCH)])

    for item in list(order()):
        if used() <= width:
            break
        kept.remove(item)
    return kept


class Footer(TextualFooter):
    """Textual's footer, rebuilt at most once per refresh, only in view, only when its keys change.

    Textual rebuilds every key (~25 ms of the event loop) on each change of a screen's bindings,
    and a screen switch makes several, on the screen being left too; a screen coming back into
    view changes its bindings, so its footer catches up then. Keys that would not fit the
    terminal's width are left out (see `fitted`), so none is ever cut in half.
    """

    _rebuild_due = False
    _shown: object = None
    _kept: frozenset[str] = frozenset()

    def bindings_changed(self, screen: Screen[object]) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen and not self._rebuild_due:
            self._rebuild_due = True
            self.call_after_refresh(self._rebuild)

    def on_resize(self, _event: Resize) -> None:
        if self.is_attached and self.screen.is_current and not self._rebuild_due:
            self._rebuild_due = True
            self.call_after_refresh(self._rebuild)

    def _keys(self) -> tuple[Any, ...]:
        """What the footer's compose reads: the keys that fit, their labels, the options."""
        shown = [(binding, enabled, tooltip, self.app.get_key_display(binding))
                 for _, binding, enabled, tooltip in self.screen.active_bindings.values()
                 if binding.show]
        reserved = 0
        if self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE:
            palette = Binding(self.app.COMMAND_PALETTE_BINDING, "")
            reserved = palette_width(self.app.get_key_display(palette), compact=self.compact)
        kept = fitted(shown, self.app.size.width, compact=self.compact,
                      current_mode=self.app.current_mode, reserved=reserved)
        return (self.show_command_palette, self.compact, self.combine_groups, tuple(kept))

    def compose(self) -> Iterator[Widget]:  # type: ignore[override]
        kept = self._kept
        for widget in super().compose():
            if isinstance(widget, FooterKey) and widget.action not in kept \
                    and widget.key != self.app.COMMAND_PALETTE_BINDING:
                continue
            yield widget

    async def _rebuild(self) -> None:
        # Cleared first: a change during the rebuild asks for another, with the newer keys.
        self._rebuild_due = False
        if not self.is_attached or not self.screen.is_current:
            return
        keys = self._keys()
        if keys != self._shown:
            self._shown = keys
            self._kept = frozenset(binding.action for binding, *_rest in keys[-1])
            await self.recompose()

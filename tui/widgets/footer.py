"""The key footer of every screen, rebuilt only when the keys it shows have changed."""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer as TextualFooter


class Footer(TextualFooter):
    """Textual's footer, rebuilt at most once per refresh, only in view, only when its keys change.

    Textual rebuilds every key (~25 ms of the event loop) on each change of a screen's bindings,
    and a screen switch makes several, on the screen being left too; a screen coming back into
    view changes its bindings, so its footer catches up then.
    """

    _rebuild_due = False
    _shown: object = None

    def bindings_changed(self, screen: Screen[object]) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen and not self._rebuild_due:
            self._rebuild_due = True
            self.call_after_refresh(self._rebuild)

    def _keys(self) -> object:
        """What the footer's compose reads: the shown bindings, their key labels, the options."""
        return (self.show_command_palette, self.compact, self.combine_groups, tuple(
            (binding, enabled, tooltip, self.app.get_key_display(binding))
            for _, binding, enabled, tooltip in self.screen.active_bindings.values()
            if binding.show))

    async def _rebuild(self) -> None:
        # Cleared first: a change during the rebuild asks for another, with the newer keys.
        self._rebuild_due = False
        if not self.is_attached or not self.screen.is_current:
            return
        keys = self._keys()
        if keys != self._shown:
            self._shown = keys
            await self.recompose()

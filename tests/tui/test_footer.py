"""Every screen's key footer fits the terminal at 80x24 and 120x40: no key is cut, `? Keys`
is always there, and a key left out at 80 columns comes back when the terminal widens."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.binding import Binding
from textual.widgets._footer import FooterKey

from tests.tui.support_screens import SIZE, SMALL, make_app, wait_for
from visinstruct.tui.app import VisinstructApp
from visinstruct.tui.screens.blind_review import BlindReviewScreen
from visinstruct.tui.screens.evaluation import EvaluationScreen
from visinstruct.tui.screens.monitor import MonitorScreen
from visinstruct.tui.screens.prompt_lab import PromptLabScreen
from visinstruct.tui.screens.review import ReviewScreen
from visinstruct.tui.widgets.footer import Footer, fitted

pytestmark = pytest.mark.anyio
SCREENS = (("m", MonitorScreen), ("r", ReviewScreen), ("p", PromptLabScreen),
           ("e", EvaluationScreen), ("B", BlindReviewScreen))


def footer_keys(app: VisinstructApp) -> list[FooterKey]:
    return list(app.screen.query_one(Footer).query(FooterKey))


def footer_line(app: VisinstructApp) -> str:
    strips = app.screen._compositor.render_strips()
    return strips[-1].text.rstrip()


def assert_fits(app: VisinstructApp, where: str) -> None:
    """Every key lies whole left of the palette's key (or of the right edge)."""
    keys = footer_keys(app)
    palette = [key for key in keys if key.has_class("-command-palette")]
    shown = [key for key in keys if not key.has_class("-command-palette")]
    limit = palette[0].region.x if palette else app.size.width
    assert any(key.action == "help" for key in shown), where
    for key in shown:
        assert key.region.width and key.region.right <= limit, (where, key.key, key.region,
                                                                limit, footer_line(app))
        assert f"{key.key_display} {key.description}" in footer_line(app), where


async def visit_every_screen(app: VisinstructApp, size: tuple[int, int]) -> dict[str, str]:
    lines: dict[str, str] = {}
    async with app.run_test(size=size) as pilot:
        for key, screen_type in SCREENS:
            if key == "B":
                await pilot.press("r")
                await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen), "review")
                await pilot.pause(0.3)
            elif key != "m":
                await pilot.press("escape")
            await pilot.press(key)
            await wait_for(pilot, lambda t=screen_type: isinstance(app.screen, t)  # type: ignore[misc]
                           and any(k.action == "help" for k in footer_keys(app)),
                           f"the {screen_type.__name__} footer")
            await pilot.pause(0.2)
            assert_fits(app, f"{screen_type.__name__} at {size}")
            lines[screen_type.__name__] = footer_line(app)
            if key == "B":
                await pilot.press("escape")
    return lines


async def test_every_footer_fits_at_80_and_120_columns(config_path: Path) -> None:
    small = await visit_every_screen(make_app(config_path), SMALL)
    wide = await visit_every_screen(make_app(config_path), SIZE)
    # The evaluation footer was cut at 80 columns ('e E▏^p palette'); now whole keys only.
    assert small["EvaluationScreen"].startswith(" o Open in review  s Sort  g Reload")
    assert small["EvaluationScreen"].endswith("▏^p palette")
    # At 120 columns the screens' keys come back.
    assert "r Review" in wide["EvaluationScreen"] and "e Eval" in wide["PromptLabScreen"]
    assert "B Blind review" in wide["ReviewScreen"]


def test_keys_are_left_out_in_order_and_help_always_stays() -> None:
    def item(key: str, action: str, description: str) -> tuple[Binding, bool, str, str]:
        return (Binding(key, action, description), True, "", key)

    shown = [item("o", "open", "Open in review"), item("s", "sort", "Sort"),
             item("m", "show_mode('monitor')", "Monitor"),
             item("e", "show_mode('evaluation')", "Eval"),
             item("?", "help", "Keys"), item("q", "request_quit", "Quit")]

    def kept(width: int) -> list[str]:
        return [binding.key for binding, *_ in fitted(shown, width, compact=False,
                                                      current_mode="evaluation")]

    assert kept(200) == ["o", "s", "m", "e", "?", "q"]
    assert kept(55) == ["o", "s", "m", "?", "q"]      # the screen already shown goes first
    assert kept(45) == ["o", "s", "?", "q"]           # then the other screens
    assert kept(36) == ["o", "s", "?"]                # then quit
    assert kept(30) == ["o", "?"]                     # then the screen's own, the last first
    assert kept(1) == ["?"]                           # `? Keys` always stays

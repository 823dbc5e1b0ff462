"""What the CLI tells a user in passing: an empty export, a folder it made, every flag's help."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.test_cli_export_status import scripted_run
from visinstruct.core.cli.main import build_parser
from visinstruct.core.errors import ExitCode
from visinstruct.dataset import sample

CliResult = tuple[int, str, str]
RunCli = Callable[..., CliResult]


@pytest.fixture
def run_db(run_cli: RunCli, tmp_path: Path) -> Path:
    return scripted_run(run_cli, tmp_path)


def test_an_export_with_no_kept_pair_warns_and_still_exits_0(run_cli: RunCli,
                                                              tmp_path: Path) -> None:
    db = tmp_path / "prepared.db"
    code, _, err = run_cli("prepare", "--db", db, "--coco-captions", sample.captions_path(),
                           "--coco-instances", sample.instances_path())
    assert code == ExitCode.OK, err
    code, out, err = run_cli("export", "--db", db, "--out", tmp_path / "empty.json",
                             "--threshold", "9")
    assert code == ExitCode.OK
    assert "warning: the export is empty: no pair is kept at threshold 9" in err
    assert out.strip() == str(tmp_path / "empty.json")


def test_an_export_with_records_does_not_warn(run_cli: RunCli, run_db: Path,
                                              tmp_path: Path) -> None:
    code, _, err = run_cli("export", "--db", run_db, "--out", tmp_path / "all.json",
                           "--threshold", "1")
    assert code == ExitCode.OK and "warning" not in err and "created folder" not in err


@pytest.mark.parametrize("fmt", ["llava", "jsonl", "hf"])
def test_an_export_into_a_missing_folder_says_it_created_it(
        run_cli: RunCli, run_db: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "new" / "deeper" / ("data" if fmt == "hf" else f"data.{fmt}")
    code, _, err = run_cli("export", "--db", run_db, "--format", fmt, "--out", out)
    assert code == ExitCode.OK, err
    assert f"created folder {tmp_path / 'new'} (it did not exist)" in err
    # Into the folder now there: nothing to say.
    code, _, err = run_cli("export", "--db", run_db, "--format", fmt, "--out", out)
    assert code == ExitCode.OK and "created folder" not in err


def _options(parser: argparse.ArgumentParser, name: str = "visinstruct"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                yield from _options(sub, f"{name} {command}")
        elif action.option_strings:
            yield name, action


def test_every_flag_of_every_command_has_help() -> None:
    missing = [(command, action.option_strings[-1]) for command, action in
               _options(build_parser()) if not action.help]
    assert missing == []


def test_evaluate_help_names_the_modes_and_the_usage_shows_sample_and_seed(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--help"])
    text = capsys.readouterr().out
    usage = text.split("\n\n", 1)[0]
    assert "[--sample N]" in usage and "[--seed N]" in usage and "--mode" in usage
    assert "answers: our generation model answers GPT-4's own questions" in " ".join(text.split())


def test_one_of_a_thing_is_worded_in_the_singular(run_cli: RunCli, tmp_path: Path) -> None:
    """'1 pair judged', '1 image', '1 call': never '1 pairs'."""
    import json

    from visinstruct.core.cli.headless import store_text
    from visinstruct.core.events import RunFinished
    from visinstruct.core.pipeline.tally import RunFigures, calls_text, run_pairs_text

    finished = RunFinished(1, "finished", done_units=1, total_units=1, failed_units=0, pairs=1,
                           kept_pairs=1, parse_failures=1, calls=1, failed_calls=0,
                           elapsed_s=1.0, cost_usd=0.0)
    assert store_text(finished) == "1 pair, 1 kept, 0 dropped, 1 parse failure, 1 call (0 failed)"
    figures = RunFigures(1, "finished", 1, 1, 0, 0, 1, 0, 1, 1, 0, (), 0.0, None, None, 1.0,
                         None, None, None)
    assert run_pairs_text(figures).startswith("this run: 1 pair judged · 1 kept")
    assert calls_text(figures).startswith("1 call ·")
    # prepare on one image with one caption and one box
    captions = json.loads(Path(sample.captions_path()).read_text(encoding="utf-8"))
    instances = json.loads(Path(sample.instances_path()).read_text(encoding="utf-8"))
    image = captions["images"][0]
    captions.update(images=[image], annotations=[
        next(a for a in captions["annotations"] if a["image_id"] == image["id"])])
    instances.update(images=[image], annotations=[
        next(a for a in instances["annotations"] if a["image_id"] == image["id"])])
    (tmp_path / "c.json").write_text(json.dumps(captions), encoding="utf-8")
    (tmp_path / "i.json").write_text(json.dumps(instances), encoding="utf-8")
    code, out, err = run_cli("prepare", "--db", tmp_path / "one.db", "--coco-captions",
                             tmp_path / "c.json", "--coco-instances", tmp_path / "i.json")
    assert code == ExitCode.OK, err
    assert "indexed 1 image, 1 caption, 1 box," in err
    assert ": 1 image, 1 caption, 1 box on 1 image," in out

"""The plan the start dialog shows: on an empty store it counts the units the source will make."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from visinstruct.core.config import load_config
from visinstruct.core.pipeline import plan
from visinstruct.core.pipeline.indexer import index_sources
from visinstruct.core.store.database import Store
from visinstruct.dataset import sample

IMAGES = 24  # the bundled sample


def sample_config(folder: Path, limit: int = 0):  # type: ignore[no-untyped-def]
    path = folder / "run.toml"
    path.write_text(f'db = "{folder / "run.db"}"\n[source]\nlimit = {limit}\n'
                    f'coco_captions = "{sample.captions_path()}"\n'
                    f'coco_instances = "{sample.instances_path()}"\n', encoding="utf-8")
    return load_config(path)


def test_an_empty_store_counts_the_units_its_source_makes(tmp_path: Path) -> None:
    config = sample_config(tmp_path)
    with Store(config.db) as store:
        made = plan.plan_run(config, store)
        assert made.source_units == IMAGES * len(config.generation.tasks)
        assert f"then all {made.source_units} units run." in made.describe()
        assert not store.scalar("SELECT COUNT(*) FROM images")  # counted aside, not here
    limited = sample_config(tmp_path, limit=5)
    with Store(limited.db) as store:
        assert plan.plan_run(limited, store).source_units == 5 * len(limited.generation.tasks)


def test_a_large_source_is_not_read_before_the_run(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan, "SOURCE_COUNT_BYTES", 10)
    config = sample_config(tmp_path)
    with Store(config.db) as store:
        made = plan.plan_run(config, store)
    assert made.source_units is None
    assert "then every unit runs" in made.describe() and "prepare" in made.describe()


def test_an_indexed_store_says_what_is_left(tmp_path: Path) -> None:
    config = sample_config(tmp_path)
    with Store(config.db) as store:
        index_sources(store, config.source)
        made = plan.plan_run(config, store)
    total = IMAGES * len(config.generation.tasks)
    assert made.source_units is None
    assert f"{total} of {total} units left" in made.describe()


def test_one_unit_is_worded_in_the_singular(tmp_path: Path) -> None:
    config = sample_config(tmp_path)
    with Store(config.db) as store:
        made = plan.plan_run(config, store)
    assert "then its 1 unit runs." in replace(made, source_units=1).describe()


def test_the_plan_shows_each_models_licence(tmp_path: Path) -> None:
    config = sample_config(tmp_path)
    tiny = replace(config.models["tiny"], license="gemma")
    config = replace(config, models={**config.models, "tiny": tiny})
    with Store(config.db) as store:
        assert "\nLicences: tiny gemma\n" in plan.plan_run(config, store).describe()
    unset = replace(config, models={**config.models, "tiny": replace(tiny, license="")})
    with Store(unset.db) as store:
        assert "tiny not recorded ([models.tiny] license)" in plan.plan_run(unset, store).describe()

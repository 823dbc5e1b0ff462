"""The monitor lists a store's Bedrock batch jobs: model, records, status and age."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tests.tui.support_monitor import (
    make_app,
    run_pipeline,
    wait_for,
    wait_for_redraw,
    write_config,
)
from visinstruct.tui.widgets.endpoint_table import EndpointTable

ARN = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abcd12345678"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio


@pytest.mark.anyio
async def test_a_stored_run_shows_its_batch_jobs(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    db = run_pipeline(config)
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO batch_jobs (arn, job_id, run_id, stage, model, model_id, region, token, "
            "input_uri, output_uri, records, status, submitted_at, updated_at) VALUES "
            "(?, 'abcd12345678', 1, 'judge', 'fake', 'mistral.x', 'us-east-1', 't', 's3://b/i', "
            "'s3://b/o/', 1234, 'InProgress', ?, ?)", (ARN, time.time() - 600, time.time()))
    app = make_app(config)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: bool(app.state.batch_jobs), "the store's batch jobs")
        await wait_for_redraw(pilot, app)
        rows = [row for row in app.screen.query_one(EndpointTable).rows
                if "abcd12345678" in str(row[0])]
    assert len(rows) == 1
    assert "judge" in str(rows[0][0]) and "1,234" in str(rows[0][0])
    assert str(rows[0][-1]) == "InProgress" and str(rows[0][6]) == "10m"
    assert str(rows[0][7]) == "ETA ?"

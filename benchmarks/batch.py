"""A run whose generation and judging both go through Bedrock batch jobs, on loopback fakes.

moto's S3 (server mode) and the fake control plane stand in for AWS; the figure is the time
visinstruct itself spends writing records, polling, reading outputs and storing results,
which on AWS is small beside the jobs' own hours. Usage: python benchmarks/batch.py [IMAGES]
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

from visinstruct.core import pipeline
from visinstruct.core.config import load_config
from visinstruct.core.events import ignore
from visinstruct.core.store.database import Store

# The loopback fakes live in the checkout's tests/ (as pytest imports them), not in the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fakes.aws import aws_env_vars  # noqa: E402
from tests.fakes.bedrock_batch_server import BatchControlPlane  # noqa: E402


def synthetic_captions(path: Path, images: int) -> None:
    """COCO-shaped captions: five per image, all different."""
    path.write_text(json.dumps({
        "images": [{"id": i, "file_name": f"{i:012d}.jpg", "width": 640, "height": 480}
                   for i in range(1, images + 1)],
        "annotations": [{"id": i * 10 + k, "image_id": i,
                         "caption": f"A cyclist ({i}) rides past shop {k} on a sunny street."}
                        for i in range(1, images + 1) for k in range(5)]}))


def main(images: int) -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        synthetic_captions(work / "captions.json", images)
        s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        s3.start()
        host, port = s3.get_host_and_port()
        os.environ.update(aws_env_vars())
        os.environ["AWS_ENDPOINT_URL_S3"] = f"http://{host}:{port}"
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="bench-batch")
        plane = BatchControlPlane(f"http://{host}:{port}").start()
        os.environ["AWS_ENDPOINT_URL_BEDROCK"] = plane.url
        (work / "run.toml").write_text(f'''db = "{work / 'run.db'}"
[source]
coco_captions = "{work / 'captions.json'}"
[generation]
model = "mixtral"
[judge]
model = "mixtral"
[models.mixtral]
backend = "bedrock-batch"
model_id = "mistral.mixtral-8x7b-instruct-v0:1"
s3_uri = "s3://bench-batch/runs/"
role_arn = "arn:aws:iam::123456789012:role/BedrockBatch"
poll_seconds = 0.05
max_records_per_job = 2000
price_in_per_million = 0.225
price_out_per_million = 0.35
''')
        config = load_config(work / "run.toml")
        started = time.monotonic()
        try:
            with Store(config.db) as store:
                summary = pipeline.run(config, store, ignore)
                # The records the jobs carried (gated generations send no judge record).
                records = int(store.scalar("SELECT COALESCE(SUM(records), 0) FROM batch_jobs"))
        finally:
            plane.stop()
            s3.stop()
        elapsed = time.monotonic() - started
        print(f"{images:,} images: {summary.status}, {summary.done_units:,}/"
              f"{summary.total_units:,} units, {len(plane.jobs)} jobs, {records:,} records in "
              f"{elapsed:,.1f} s ({records / elapsed:,.0f} records/s); cost "
              f"${summary.cost_usd:,.4f} at batch prices")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)

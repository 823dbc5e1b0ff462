"""Fixtures of the AWS tests: a moto server per module; for Bedrock batch, S3, the control plane
and the runtime."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.fakes.aws import aws_env, aws_env_vars
from tests.fakes.bedrock_batch_server import BatchControlPlane
from tests.fakes.bedrock_server import BedrockServer
from tests.fakes.model_replies import reply_to_request
from tests.fakes.scripting import Reply, Script
from tests.integration.support_batch import BUCKET, Aws


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """One moto server per test module (the fixtures using it empty it before each test)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """An empty moto S3 with the bucket, the control plane and an on-demand Bedrock runtime."""
    runtime = BedrockServer(Script(Reply(text=reply_to_request))).start()
    aws_env(monkeypatch, bedrock_url=runtime.url)
    reset = urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset, timeout=10).close()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_url)
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    plane = BatchControlPlane(moto_url).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK", plane.url)
    env = {**aws_env_vars(bedrock_url=runtime.url), "AWS_ENDPOINT_URL_S3": moto_url,
           "AWS_ENDPOINT_URL_BEDROCK": plane.url}
    try:
        yield Aws(plane, runtime, env)
    finally:
        plane.stop()
        runtime.stop()

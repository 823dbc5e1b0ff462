"""`visinstruct deploy` / `teardown` against moto's SageMaker control plane on loopback."""

from __future__ import annotations

import json
import socket
import sys
import urllib.request
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.fakes.aws import aws_env
from visinstruct.core.cli.deploy import wait_until_in_service
from visinstruct.core.errors import DeployError, ExitCode

ROLE = "arn:aws:iam::123456789012:role/visinstruct-sagemaker"
# moto's instance-type list predates g5, so the loopback runs use a type it knows.
MOTO_INSTANCE = "ml.g4dn.12xlarge"
TOKEN = "hf_not_a_real_token_1234"
CliResult = tuple[int, str, str]


@pytest.fixture
def sagemaker(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 SageMaker client on an empty moto, with the CLI's environment pointed there too."""
    aws_env(monkeypatch)  # first: it sets NO_PROXY, so the reset below stays on loopback
    reset = urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset, timeout=10).close()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", moto_url)
    for name in ("SAGEMAKER_ROLE_ARN", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return boto3.client("sagemaker", region_name="us-east-1")


@pytest.fixture
def closed_port_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """SageMaker pointed at a port nobody listens on, and no credentials: any request would fail."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    aws_env(monkeypatch)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "SAGEMAKER_ROLE_ARN", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", f"http://127.0.0.1:{port}")


def deploy(run_cli: Callable[..., CliResult], *extra: str) -> CliResult:
    return run_cli("deploy", "--name", "mix", "--role", ROLE, "--instance-type", MOTO_INSTANCE,
                   "--instance-count", "2", "--gpus", "4", "--poll-seconds", "0", *extra)


def missing(describe: Callable[..., Any], **name: str) -> bool:
    try:
        describe(**name)
    except ClientError:
        return True
    return False


def test_dry_run_prints_the_three_requests_and_sends_nothing(
        run_cli: Callable[..., CliResult], closed_port_env: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    code, out, err = run_cli("deploy", "--name", "mix", "--role", ROLE, "--instance-count", "3",
                             "--dry-run")
    assert code == ExitCode.OK, err
    requests = json.loads(out)
    model = requests["CreateModel"]
    assert model["ModelName"] == "mix-model" and model["ExecutionRoleArn"] == ROLE
    assert model["PrimaryContainer"]["Image"] == (
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:"
        "2.4.0-tgi2.4.0-gpu-py311-cu124-ubuntu22.04-v2.2")
    assert model["PrimaryContainer"]["Environment"] == {
        "HF_MODEL_ID": "mistralai/Mixtral-8x7B-Instruct-v0.1", "SM_NUM_GPUS": "8",
        "MAX_INPUT_TOKENS": "24000", "MAX_TOTAL_TOKENS": "32000",
        "MAX_BATCH_TOTAL_TOKENS": "512000", "MAX_BATCH_PREFILL_TOKENS": "24000",
        "HUGGING_FACE_HUB_TOKEN": "***"}
    assert requests["CreateEndpointConfig"] == {
        "EndpointConfigName": "mix-config",
        "ProductionVariants": [{
            "VariantName": "AllTraffic", "ModelName": "mix-model",
            "InstanceType": "ml.g5.48xlarge", "InitialInstanceCount": 3,
            "ContainerStartupHealthCheckTimeoutInSeconds": 1800,
            "ModelDataDownloadTimeoutInSeconds": 1800}]}
    assert requests["CreateEndpoint"] == {"EndpointName": "mix", "EndpointConfigName": "mix-config"}
    assert TOKEN not in out + err
    assert "nothing sent" in err


def test_without_the_deploy_extra_one_line_says_how_to_install_it(
        run_cli: Callable[..., CliResult], closed_port_env: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sagemaker", None)  # as if the extra were not installed
    monkeypatch.setitem(sys.modules, "sagemaker.core", None)
    code, out, err = run_cli("deploy", "--name", "mix", "--dry-run")
    assert code == ExitCode.BAD_INPUT and out == ""
    assert "pip install 'visinstruct[deploy]'" in err and len(err.strip().splitlines()) == 1
    # --image-uri needs no SDK.
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/tgi:2.4.0-tgi2.4.0-gpu"
    code, out, _ = run_cli("deploy", "--name", "mix", "--image-uri", image, "--dry-run")
    assert code == ExitCode.OK
    assert json.loads(out)["CreateModel"]["PrimaryContainer"]["Image"] == image


def test_dry_run_picks_the_region_image_and_old_tgi_input_name(
        run_cli: Callable[..., CliResult], closed_port_env: None) -> None:
    code, out, _ = run_cli("deploy", "--name", "mix", "--region", "eu-south-1", "--dry-run")
    assert code == ExitCode.OK
    image = json.loads(out)["CreateModel"]["PrimaryContainer"]["Image"]
    assert image.startswith("692866216735.dkr.ecr.eu-south-1.amazonaws.com/")
    # A region the hand-kept account table never had: the SDK knows its account.
    code, out, err = run_cli("deploy", "--name", "mix", "--region", "ap-southeast-5", "--dry-run")
    assert code == ExitCode.OK, err
    image = json.loads(out)["CreateModel"]["PrimaryContainer"]["Image"]
    assert image.startswith("550225433462.dkr.ecr.ap-southeast-5.amazonaws.com/"
                            "huggingface-pytorch-tgi-inference:2.4.0-tgi2.4.0")
    old = "763104351884.dkr.ecr.us-east-1.amazonaws.com/x:2.1.1-tgi1.4.5-gpu-py310-cu121"
    code, out, _ = run_cli("deploy", "--name", "mix", "--image-uri", old, "--dry-run")
    environment = json.loads(out)["CreateModel"]["PrimaryContainer"]["Environment"]
    # TGI 2 refuses both names at once, so exactly one is sent.
    assert environment["MAX_INPUT_LENGTH"] == "24000" and "MAX_INPUT_TOKENS" not in environment
    assert "HUGGING_FACE_HUB_TOKEN" not in environment


@pytest.mark.parametrize(("flags", "named"), [
    (("--max-input-tokens", "4000", "--max-total-tokens", "4000"), "--max-input-tokens"),
    (("--max-total-tokens", "9000", "--max-batch-total-tokens", "8000"), "--max-total-tokens"),
    (("--instance-count", "0"), "--instance-count"),
    (("--name", "bad_name"), "--name"),
])
def test_impossible_settings_are_refused_before_anything_is_sent(
        run_cli: Callable[..., CliResult], closed_port_env: None,
        flags: tuple[str, ...], named: str) -> None:
    code, out, err = run_cli("deploy", "--name", "mix", "--role", ROLE, *flags)
    assert code == ExitCode.BAD_INPUT and out == ""
    assert named in err and "Traceback" not in err


def test_missing_role_exits_2_with_one_clear_line(
        run_cli: Callable[..., CliResult], closed_port_env: None) -> None:
    code, out, err = run_cli("deploy", "--name", "mix")
    assert code == ExitCode.BAD_INPUT and out == ""
    assert "--role" in err and "SAGEMAKER_ROLE_ARN" in err
    assert len(err.strip().splitlines()) == 1


def test_no_credentials_is_a_clear_error(
        run_cli: Callable[..., CliResult], closed_port_env: None) -> None:
    code, _, err = run_cli("deploy", "--name", "mix", "--role", ROLE)
    assert code == ExitCode.BAD_INPUT
    assert "no AWS credentials" in err and "Traceback" not in err


def test_unreachable_control_plane_is_a_clear_error(
        run_cli: Callable[..., CliResult], closed_port_env: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    code, _, err = run_cli("teardown", "--name", "mix")
    assert code == ExitCode.FAILED
    assert "cannot reach http://127.0.0.1:" in err and "Traceback" not in err


def test_deploy_creates_model_config_and_endpoint_and_waits(
        run_cli: Callable[..., CliResult], sagemaker: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    code, out, err = deploy(run_cli)
    assert code == ExitCode.OK, err
    assert out.strip() == "mix"
    assert "InService" in err and TOKEN not in out + err
    model = sagemaker.describe_model(ModelName="mix-model")
    assert model["ExecutionRoleArn"] == ROLE
    environment = model["PrimaryContainer"]["Environment"]
    assert environment["SM_NUM_GPUS"] == "4"
    assert environment["HUGGING_FACE_HUB_TOKEN"] == TOKEN
    assert "huggingface-pytorch-tgi-inference" in model["PrimaryContainer"]["Image"]
    variant = sagemaker.describe_endpoint_config(
        EndpointConfigName="mix-config")["ProductionVariants"][0]
    assert (variant["ModelName"], variant["InstanceType"], variant["InitialInstanceCount"]) == (
        "mix-model", MOTO_INSTANCE, 2)
    endpoint = sagemaker.describe_endpoint(EndpointName="mix")
    assert endpoint["EndpointConfigName"] == "mix-config"
    assert endpoint["EndpointStatus"] == "InService"


def test_deploying_again_reuses_matching_resources_and_refuses_different_ones(
        run_cli: Callable[..., CliResult], sagemaker: Any) -> None:
    assert deploy(run_cli)[0] == ExitCode.OK
    code, _, err = deploy(run_cli)
    assert code == ExitCode.OK
    assert "endpoint mix already exists with these settings" in err
    code, out, err = deploy(run_cli, "--max-total-tokens", "30000")
    assert code == ExitCode.BAD_INPUT and out == ""
    assert "model mix-model already exists" in err and "MAX_TOTAL_TOKENS" in err
    assert "visinstruct teardown --name mix" in err
    variant = sagemaker.describe_endpoint_config(
        EndpointConfigName="mix-config")["ProductionVariants"][0]
    assert variant["InitialInstanceCount"] == 2


def test_a_different_instance_count_is_refused(
        run_cli: Callable[..., CliResult], sagemaker: Any) -> None:
    assert deploy(run_cli, "--no-wait")[0] == ExitCode.OK
    code, _, err = deploy(run_cli, "--instance-count", "1")
    assert code == ExitCode.BAD_INPUT
    assert "endpoint config mix-config already exists" in err and "InitialInstanceCount" in err


def test_teardown_deletes_endpoint_config_and_model(
        run_cli: Callable[..., CliResult], sagemaker: Any) -> None:
    assert deploy(run_cli)[0] == ExitCode.OK
    code, out, err = run_cli("teardown", "--name", "mix")
    assert code == ExitCode.OK, err
    assert out.splitlines() == ["endpoint mix", "endpoint config mix-config", "model mix-model"]
    assert missing(sagemaker.describe_endpoint, EndpointName="mix")
    assert missing(sagemaker.describe_endpoint_config, EndpointConfigName="mix-config")
    assert missing(sagemaker.describe_model, ModelName="mix-model")


def test_teardown_of_a_missing_or_half_made_deploy_deletes_what_exists(
        run_cli: Callable[..., CliResult], sagemaker: Any) -> None:
    code, out, err = run_cli("teardown", "--name", "ghost")
    assert code == ExitCode.OK and out == ""
    assert "endpoint ghost: not found" in err and "nothing to delete" in err
    sagemaker.create_model(ModelName="half-model", ExecutionRoleArn=ROLE,
                           PrimaryContainer={"Image": "example/tgi:1"})
    code, out, err = run_cli("teardown", "--name", "half")
    assert code == ExitCode.OK
    assert out.splitlines() == ["model half-model"]
    assert "endpoint config half-config: not found" in err


def test_teardown_dry_run_sends_nothing(
        run_cli: Callable[..., CliResult], closed_port_env: None) -> None:
    code, out, _ = run_cli("teardown", "--name", "mix", "--dry-run")
    assert code == ExitCode.OK
    assert json.loads(out) == {"DeleteEndpoint": {"EndpointName": "mix"},
                               "DeleteEndpointConfig": {"EndpointConfigName": "mix-config"},
                               "DeleteModel": {"ModelName": "mix-model"}}


class ScriptedEndpoint:
    """Answers DescribeEndpoint with one scripted status after another."""

    def __init__(self, *statuses: str, reason: str = "") -> None:
        self.statuses = list(statuses)
        self.reason = reason

    def describe_endpoint(self, EndpointName: str) -> dict[str, str]:
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return {"EndpointName": EndpointName, "EndpointStatus": status,
                "FailureReason": self.reason}


class FakeTime:
    """A clock that moves only when the wait loop sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_wait_reports_progress_until_in_service() -> None:
    clock, seen = FakeTime(), []
    wait_until_in_service(ScriptedEndpoint("Creating", "Creating", "InService"), "mix",
                          poll_seconds=30, timeout_seconds=3600,
                          on_status=lambda status, elapsed: seen.append((status, elapsed)),
                          sleep=clock.sleep, clock=lambda: clock.now)
    assert seen == [("Creating", 0.0), ("Creating", 30.0), ("InService", 60.0)]
    assert clock.sleeps == [30, 30]


def test_a_failed_endpoint_raises_with_its_failure_reason() -> None:
    clock = FakeTime()
    reason = "The primary container for production variant AllTraffic did not pass the ping"
    with pytest.raises(DeployError) as raised:
        wait_until_in_service(ScriptedEndpoint("Creating", "Failed", reason=reason), "mix",
                              poll_seconds=30, timeout_seconds=3600,
                              on_status=lambda *_: None, sleep=clock.sleep,
                              clock=lambda: clock.now)
    assert reason in str(raised.value) and "teardown --name mix" in str(raised.value)
    assert raised.value.exit_code == ExitCode.FAILED


def test_waiting_gives_up_after_the_timeout_and_says_the_endpoint_keeps_going() -> None:
    clock = FakeTime()
    with pytest.raises(DeployError, match="still Creating after 2 min"):
        wait_until_in_service(ScriptedEndpoint("Creating"), "mix", poll_seconds=60,
                              timeout_seconds=120, on_status=lambda *_: None,
                              sleep=clock.sleep, clock=lambda: clock.now)
    assert clock.sleeps == [60, 60]

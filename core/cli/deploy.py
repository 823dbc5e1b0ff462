"""`visinstruct deploy` and `teardown`: a Mixtral endpoint on the Hugging Face TGI image.

The sagemaker SDK (the `deploy` extra) resolves the image for the region; boto3's control
plane creates, waits for and deletes the resources, because sagemaker-core's resource
classes cannot read the replies of moto, the loopback control plane the tests run against.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from visinstruct.core.cli.sagemaker_control import (
    OPERATIONS,
    aws_errors,
    describe_or_none,
    is_not_found,
    sagemaker_client,
)
from visinstruct.core.errors import DeployError, ExitCode, InputError
from visinstruct.core.sanitize.redact import redact, register_secret

# The Hugging Face TGI release the image is pinned to, so a deploy is reproducible;
# `--image-uri` overrides it (a newer TGI, a private mirror).
TGI_VERSION = "2.4.0"
DEPLOY_EXTRA_HINT = "pip install 'visinstruct[deploy]'"
# GPUs per instance, to warn before a 20-minute wait ends in a shard that cannot start.
GPUS_BY_INSTANCE_TYPE = {
    "ml.g4dn.12xlarge": 4, "ml.g5.12xlarge": 4, "ml.g5.24xlarge": 4, "ml.g5.48xlarge": 8,
    "ml.g6.12xlarge": 4, "ml.g6.24xlarge": 4, "ml.g6.48xlarge": 8, "ml.g6e.12xlarge": 4,
    "ml.g6e.24xlarge": 4, "ml.g6e.48xlarge": 8, "ml.p4d.24xlarge": 8, "ml.p4de.24xlarge": 8,
    "ml.p5.48xlarge": 8,
}
# Downloading ~90 GB of Mixtral weights from the Hub takes far longer than the default.
STARTUP_TIMEOUT_SECONDS = 1800
TOKEN_KEYS = frozenset({"HUGGING_FACE_HUB_TOKEN", "HF_TOKEN"})
MASK = "***"
# SageMaker names: letters, digits and single hyphens, at most 63 characters.
_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
_MAX_NAME = 63 - len("-config")
_TGI_MAJOR_IN_TAG = re.compile(r"-tgi(\d+)\.")
WAITING_STATUSES = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack",
                              "OutOfService"})


@dataclass(frozen=True)
class ResourceNames:
    """The endpoint, endpoint config and model one deploy creates."""

    endpoint: str
    config: str
    model: str


@dataclass(frozen=True)
class DeploySettings:
    """Everything a deploy needs, validated."""

    names: ResourceNames
    region: str
    role: str
    model_id: str
    image_uri: str
    instance_type: str
    instance_count: int
    gpus: int
    max_input_tokens: int
    max_total_tokens: int
    max_batch_total_tokens: int
    max_batch_prefill_tokens: int
    hf_token: str = field(default="", repr=False)


@dataclass(frozen=True)
class DeployRequests:
    """The three control-plane requests of a deploy, as boto3 keyword arguments."""

    create_model: dict[str, Any]
    create_endpoint_config: dict[str, Any]
    create_endpoint: dict[str, Any]

    def masked(self) -> dict[str, Any]:
        """The requests keyed by operation, with the Hub token replaced so they can be shown."""
        model = json.loads(json.dumps(self.create_model))
        environment = model["PrimaryContainer"]["Environment"]
        for key in TOKEN_KEYS & environment.keys():
            environment[key] = MASK
        return {"CreateModel": model, "CreateEndpointConfig": self.create_endpoint_config,
                "CreateEndpoint": self.create_endpoint}


def tgi_image_uri(region: str, version: str = TGI_VERSION) -> str:
    """The Hugging Face TGI container image for a region, as the sagemaker SDK knows it."""
    try:
        from sagemaker.core import image_uris
    except ImportError:
        raise InputError(f"deploy needs the sagemaker SDK to find the TGI image: "
                         f"{DEPLOY_EXTRA_HINT} (or pass --image-uri)") from None
    try:
        return str(image_uris.retrieve("huggingface-llm", region=region, version=version))
    except ValueError as exc:
        first = str(exc).split(". ")[0]
        raise InputError(f"--region {region}: no TGI {version} image ({first}); pass "
                         "--image-uri or upgrade the SDK: pip install -U sagemaker") from None


def container_environment(settings: DeploySettings) -> dict[str, str]:
    """The TGI container's environment: model, shards and token budgets (values are strings)."""
    # TGI 2.x refuses to start when both MAX_INPUT_TOKENS and the older MAX_INPUT_LENGTH
    # are set, so only the name the image's TGI understands is sent.
    major = _TGI_MAJOR_IN_TAG.search(settings.image_uri)
    input_key = "MAX_INPUT_LENGTH" if major and int(major.group(1)) < 2 else "MAX_INPUT_TOKENS"
    environment = {
        "HF_MODEL_ID": settings.model_id,
        "SM_NUM_GPUS": str(settings.gpus),
        input_key: str(settings.max_input_tokens),
        "MAX_TOTAL_TOKENS": str(settings.max_total_tokens),
        "MAX_BATCH_TOTAL_TOKENS": str(settings.max_batch_total_tokens),
        "MAX_BATCH_PREFILL_TOKENS": str(settings.max_batch_prefill_tokens),
    }
    if settings.hf_token:
        environment["HUGGING_FACE_HUB_TOKEN"] = settings.hf_token
    return environment


def deploy_requests(settings: DeploySettings) -> DeployRequests:
    """The CreateModel, CreateEndpointConfig and CreateEndpoint requests for these settings."""
    names = settings.names
    return DeployRequests(
        create_model={
            "ModelName": names.model,
            "PrimaryContainer": {"Image": settings.image_uri,
                                 "Environment": container_environment(settings)},
            "ExecutionRoleArn": settings.role,
        },
        create_endpoint_config={
            "EndpointConfigName": names.config,
            "ProductionVariants": [{
                "VariantName": "AllTraffic",
                "ModelName": names.model,
                "InstanceType": settings.instance_type,
                "InitialInstanceCount": settings.instance_count,
                "ContainerStartupHealthCheckTimeoutInSeconds": STARTUP_TIMEOUT_SECONDS,
                "ModelDataDownloadTimeoutInSeconds": STARTUP_TIMEOUT_SECONDS,
            }],
        },
        create_endpoint={"EndpointName": names.endpoint, "EndpointConfigName": names.config},
    )


def check_name(name: str) -> ResourceNames:
    """The resource names for an endpoint name, refused if SageMaker would refuse any of them."""
    if not _NAME_PATTERN.match(name) or len(name) > _MAX_NAME:
        raise InputError(f"--name {name!r}: use letters, digits and single hyphens, at most "
                         f"{_MAX_NAME} characters (the config is named <name>-config)")
    return ResourceNames(endpoint=name, config=f"{name}-config", model=f"{name}-model")


def settings_from_args(args: argparse.Namespace) -> DeploySettings:
    """Validated settings from the deploy flags; the token comes from $HF_TOKEN."""
    for flag in ("instance_count", "gpus", "max_input_tokens", "max_total_tokens",
                 "max_batch_total_tokens"):
        if getattr(args, flag) < 1:
            raise InputError(
                f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be at least 1")
    prefill = args.max_batch_prefill_tokens or args.max_input_tokens
    # TGI checks these at start-up; refusing here saves a long wait for a failed endpoint.
    if args.max_input_tokens >= args.max_total_tokens:
        raise InputError(f"--max-input-tokens {args.max_input_tokens} must be less than "
                         f"--max-total-tokens {args.max_total_tokens}")
    if args.max_total_tokens > args.max_batch_total_tokens:
        raise InputError(f"--max-total-tokens {args.max_total_tokens} must not exceed "
                         f"--max-batch-total-tokens {args.max_batch_total_tokens}")
    if not args.max_input_tokens <= prefill <= args.max_batch_total_tokens:
        raise InputError(f"--max-batch-prefill-tokens {prefill} must be between "
                         f"--max-input-tokens and --max-batch-total-tokens")
    return DeploySettings(
        names=check_name(args.name), region=args.region, role=args.role or "",
        model_id=args.model_id, image_uri=args.image_uri or tgi_image_uri(args.region),
        instance_type=args.instance_type, instance_count=args.instance_count, gpus=args.gpus,
        max_input_tokens=args.max_input_tokens, max_total_tokens=args.max_total_tokens,
        max_batch_total_tokens=args.max_batch_total_tokens, max_batch_prefill_tokens=prefill,
        hf_token=os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or "",
    )


def differences(kind: str, described: dict[str, Any], request: dict[str, Any]) -> list[str]:
    """What an existing resource has that differs from the request (names only, never values)."""
    found: list[str] = []
    if kind == "model":
        container = described.get("PrimaryContainer") or {}
        wanted = request["PrimaryContainer"]
        if container.get("Image") != wanted["Image"]:
            found.append("image")
        have_env, want_env = container.get("Environment") or {}, wanted["Environment"]
        # A rotated Hub token is not a different model.
        keys = sorted(k for k in (have_env.keys() | want_env.keys()) - TOKEN_KEYS
                      if have_env.get(k) != want_env.get(k))
        found.extend(f"environment {key}" for key in keys)
        if described.get("ExecutionRoleArn") != request["ExecutionRoleArn"]:
            found.append("role")
    elif kind == "endpoint config":
        variants = described.get("ProductionVariants") or []
        wanted_variant = request["ProductionVariants"][0]
        if len(variants) != 1:
            return [f"{len(variants)} production variants"]
        always = ("VariantName", "ModelName", "InstanceType", "InitialInstanceCount")
        found.extend(key for key, value in wanted_variant.items()
                     if (key in always or key in variants[0]) and variants[0].get(key) != value)
    elif described.get("EndpointConfigName") != request["EndpointConfigName"]:
        found.append("EndpointConfigName")
    return found


def create_or_reuse(client: Any, requests: DeployRequests, names: ResourceNames,
                    say: Callable[[str], None]) -> list[str]:
    """Create the model, config and endpoint, reusing any that exist with the same settings."""
    steps = (("model", names.model, "create_model", requests.create_model),
             ("endpoint config", names.config, "create_endpoint_config",
              requests.create_endpoint_config),
             ("endpoint", names.endpoint, "create_endpoint", requests.create_endpoint))
    created: list[str] = []
    for kind, name, create, request in steps:
        try:
            existing = describe_or_none(client, kind, name)
            if existing is None:
                with aws_errors(f"creating {kind} {name}"):
                    getattr(client, create)(**request)
                created.append(f"{kind} {name}")
                say(f"created {kind} {name}")
                continue
        except DeployError as exc:
            if not created:
                raise
            raise DeployError(f"{exc}; already created: {', '.join(created)} (fix and run deploy "
                              f"again to reuse them, or `visinstruct teardown --name "
                              f"{names.endpoint}`)") from None
        changed = differences(kind, existing, request)
        if changed:
            raise InputError(f"{kind} {name} already exists with a different "
                             f"{', '.join(changed)}; pick another --name or run "
                             f"`visinstruct teardown --name {names.endpoint}` first")
        say(f"{kind} {name} already exists with these settings; reusing it")
    return created


def wait_until_in_service(
    client: Any, endpoint: str, *, poll_seconds: float, timeout_seconds: float,
    on_status: Callable[[str, float], None], sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Poll DescribeEndpoint until InService; Failed, Deleting or the timeout raise DeployError."""
    started = clock()
    hint = f"remove it with `visinstruct teardown --name {endpoint}`"
    while True:
        with aws_errors(f"describing endpoint {endpoint}"):
            described = client.describe_endpoint(EndpointName=endpoint)
        status = str(described.get("EndpointStatus", "Unknown"))
        elapsed = clock() - started
        on_status(status, elapsed)
        if status == "InService":
            return
        if status not in WAITING_STATUSES:
            reason = described.get("FailureReason") or "no reason given"
            raise DeployError(f"endpoint {endpoint} is {status}: {reason}; {hint}")
        if elapsed >= timeout_seconds:
            raise DeployError(f"endpoint {endpoint} is still {status} after {elapsed / 60:.0f} "
                              f"min; it keeps going (and billing): wait, or {hint}")
        sleep(poll_seconds)


def cmd_deploy(args: argparse.Namespace) -> int:
    """Create (or reuse) the model, endpoint config and endpoint; wait until InService."""
    settings = settings_from_args(args)
    register_secret(settings.hf_token)  # CreateModel errors can echo the container's environment
    requests = deploy_requests(settings)
    say = _stderr_line
    known_gpus = GPUS_BY_INSTANCE_TYPE.get(settings.instance_type)
    if known_gpus is not None and settings.gpus > known_gpus:
        say(f"warning: --gpus {settings.gpus} but {settings.instance_type} has {known_gpus} GPUs")
    if args.dry_run:
        say(f"dry run: nothing sent; these requests would go to SageMaker in {settings.region}")
        if not settings.role:
            say("warning: no execution role; a real deploy needs --role or SAGEMAKER_ROLE_ARN")
        print(json.dumps(requests.masked(), indent=2))
        return ExitCode.OK
    if not settings.role:
        raise InputError("no execution role: pass --role ARN or set SAGEMAKER_ROLE_ARN "
                         "(a role SageMaker can assume, with ECR pull and CloudWatch logs)")
    client = sagemaker_client(settings.region)
    names = settings.names
    create_or_reuse(client, requests, names, say)
    say(f"note: {names.endpoint} bills {settings.instance_count} x {settings.instance_type} "
        f"per hour until `visinstruct teardown --name {names.endpoint}`")
    if args.no_wait:
        say("not waiting; the endpoint takes 10-30 minutes to reach InService")
    else:
        _wait_with_progress(client, names.endpoint, args.poll_seconds, args.wait_minutes * 60)
    print(names.endpoint)
    return ExitCode.OK


def _wait_with_progress(client: Any, endpoint: str, poll_seconds: float,
                        timeout_seconds: float) -> None:
    from rich.console import Console

    console = Console(stderr=True)
    last = {"status": ""}

    def on_status(status: str, elapsed: float) -> None:
        line = f"endpoint {endpoint}: {status} ({int(elapsed // 60)}m {int(elapsed % 60):02d}s)"
        if status != last["status"]:
            console.print(line, highlight=False)
            last["status"] = status
        if spinner is not None:
            spinner.update(line)

    spinner = console.status(f"waiting for {endpoint}") if console.is_terminal else None
    try:
        if spinner is not None:
            spinner.start()
        wait_until_in_service(client, endpoint, poll_seconds=poll_seconds,
                              timeout_seconds=timeout_seconds, on_status=on_status)
    except KeyboardInterrupt:
        console.print(f"stopped waiting; {endpoint} keeps being created (and billing) until "
                      f"`visinstruct teardown --name {endpoint}`", highlight=False)
        raise
    finally:
        if spinner is not None:
            spinner.stop()


def cmd_teardown(args: argparse.Namespace) -> int:
    """Delete the endpoint, then its config, then its model; parts already gone are skipped."""
    names = check_name(args.name)
    targets = (("endpoint", names.endpoint), ("endpoint config", names.config),
               ("model", names.model))
    if args.dry_run:
        _stderr_line(f"dry run: nothing sent; these deletions would go to SageMaker in "
                     f"{args.region} (parts that do not exist are skipped)")
        plan = {f"Delete{''.join(w.title() for w in kind.split())}":
                {OPERATIONS[kind][2]: name} for kind, name in targets}
        print(json.dumps(plan, indent=2))
        return ExitCode.OK
    client = sagemaker_client(args.region)
    deleted: list[str] = []
    for kind, name in targets:
        _, delete, parameter = OPERATIONS[kind]
        with aws_errors(f"deleting {kind} {name}"):
            try:
                getattr(client, delete)(**{parameter: name})
            except Exception as exc:
                if not is_not_found(exc):
                    raise
                _stderr_line(f"{kind} {name}: not found, nothing to delete")
                continue
        deleted.append(f"{kind} {name}")
        _stderr_line(f"deleted {kind} {name}")
        print(f"{kind} {name}")
    if not deleted:
        _stderr_line("nothing to delete: no endpoint, endpoint config or model for "
                     f"{names.endpoint}")
    return ExitCode.OK


def _stderr_line(message: str) -> None:
    print(redact(message), file=sys.stderr)

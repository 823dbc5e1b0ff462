"""Loopback Bedrock control plane for batch inference: Create/Get/Stop ModelInvocationJob.

moto has no invocation jobs, so this fake reads each job's JSONL input from (moto's) S3,
answers every record with `respond`, and writes `<output>/<job id>/<file>.out` plus
`manifest.json.out` in the layout Bedrock documents. Jobs can be made slow (held until
released), failing, partial (some records answered with an `error` object) or out of order.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import unquote

import boto3

from tests.fakes.model_replies import prompt_text, reply_for

ACCOUNT = "123456789012"
OPEN = ("Submitted", "Validating", "Scheduled", "InProgress", "Stopping")
Responder = Callable[[str, dict[str, Any]], dict[str, Any]]


def model_reply(model_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """The InvokeModel reply body a well-behaved model of `model_id`'s family would give."""
    text = reply_for(prompt_text(body))
    words_in, words_out = len(prompt_text(body).split()), len(text.split())
    if model_id.startswith("mistral.") or ".mistral." in model_id:
        return {"outputs": [{"text": text, "stop_reason": "stop"}]}
    if model_id.startswith("meta.") or ".meta." in model_id:
        return {"generation": text, "prompt_token_count": words_in,
                "generation_token_count": words_out, "stop_reason": "stop"}
    return {"id": "msg_bdrk_batch", "type": "message", "role": "assistant", "model": model_id,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": words_in, "output_tokens": words_out}}


@dataclass
class FakeJob:
    """One invocation job as the fake keeps it."""

    arn: str
    job_id: str
    name: str
    token: str
    model_id: str
    role_arn: str
    input_uri: str
    output_uri: str
    timeout_hours: int
    status: str = "Submitted"
    message: str = ""
    submitted: float = field(default_factory=time.time)
    ended: float | None = None
    polls: int = 0
    counts: dict[str, int] = field(default_factory=dict)


class BatchControlPlane:
    """The fake; start() serves on 127.0.0.1, `url` is its base URL.

    Knobs (set before or during a test): `polls_to_finish` (Get calls a job stays InProgress),
    `hold` (while set, jobs stay InProgress whatever the polls), `fail_jobs` (job numbers,
    from 1, that end Failed), `record_error` (recordId -> error object or None),
    `out_of_order` (shuffle output lines), `drop_record` (recordId -> True for records missing
    from the output, the job then ending PartiallyCompleted).
    """

    def __init__(self, s3_endpoint: str, *, respond: Responder = model_reply,
                 region: str = "us-east-1") -> None:
        self.s3_endpoint = s3_endpoint
        self.respond = respond
        self.region = region
        self.polls_to_finish = 1
        self.hold = threading.Event()
        self.fail_jobs: set[int] = set()
        self.fail_message = "The job failed: an internal error occurred."
        self.record_error: Callable[[str], dict[str, Any] | None] = lambda _rid: None
        self.out_of_order = False
        self.drop_record: Callable[[str], bool] = lambda _rid: False
        # (HTTP status, error code, message) every CreateModelInvocationJob fails with.
        self.create_error: tuple[int, str, str] | None = None
        self.jobs: dict[str, FakeJob] = {}
        self.creates = 0           # CreateModelInvocationJob calls, repeated tokens included
        self.stops = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Self:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, document, error = fake.handle(self.command, self.path, body)
                payload = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("x-amzn-RequestId", "fake-request")
                if error:
                    self.send_header("x-amzn-ErrorType", error)
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.01})
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the API -----------------------------------------------------------------------------
    def handle(self, method: str, path: str, body: bytes) -> tuple[int, Any, str]:
        path = unquote(path.split("?", 1)[0])
        if method == "POST" and path == "/model-invocation-job":
            return self._create(json.loads(body or b"{}"))
        if path.startswith("/model-invocation-job/"):
            rest = path[len("/model-invocation-job/"):]
            if method == "POST" and rest.endswith("/stop"):
                return self._stop(rest[:-len("/stop")])
            if method == "GET":
                return self._get(rest)
        return 404, {"message": f"no route for {method} {path}"}, "UnknownOperationException"

    def _find(self, identifier: str) -> FakeJob | None:
        job_id = identifier.rsplit("/", 1)[-1]
        return self.jobs.get(job_id)

    def _create(self, request: dict[str, Any]) -> tuple[int, Any, str]:
        with self._lock:
            self.creates += 1
            if self.create_error is not None:
                status, code, message = self.create_error
                return status, {"message": message}, code
            token = request.get("clientRequestToken") or ""
            for job in self.jobs.values():
                if token and job.token == token:
                    # A repeated token is the same request: Bedrock returns the first job.
                    return 200, {"jobArn": job.arn}, ""
            for key in ("jobName", "roleArn", "modelId", "inputDataConfig", "outputDataConfig"):
                if key not in request:
                    return 400, {"message": f"{key} is required"}, "ValidationException"
            hours = request.get("timeoutDurationInHours", 24)
            if not 24 <= hours <= 168:
                return 400, {"message": "timeoutDurationInHours must be 24..168"}, \
                    "ValidationException"
            number = next(self._ids)
            job_id = f"job{number:09d}"
            arn = f"arn:aws:bedrock:{self.region}:{ACCOUNT}:model-invocation-job/{job_id}"
            self.jobs[job_id] = FakeJob(
                arn, job_id, request["jobName"], token, request["modelId"], request["roleArn"],
                request["inputDataConfig"]["s3InputDataConfig"]["s3Uri"],
                request["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"], hours)
            self.jobs[job_id].counts["number"] = number
            return 200, {"jobArn": arn}, ""

    def _stop(self, identifier: str) -> tuple[int, Any, str]:
        with self._lock:
            job = self._find(identifier)
            if job is None:
                return 404, {"message": "no such job"}, "ResourceNotFoundException"
            if job.status not in OPEN:
                return 400, {"message": f"the job is {job.status}"}, "ValidationException"
            self.stops += 1
            job.status = "Stopped"
            job.message = "Stopped by the user."
            job.ended = time.time()
            return 200, {}, ""

    def _get(self, identifier: str) -> tuple[int, Any, str]:
        with self._lock:
            job = self._find(identifier)
            if job is None:
                return 404, {"message": "no such job"}, "ResourceNotFoundException"
            job.polls += 1
            if job.status in OPEN and job.status != "Stopping":
                if job.counts["number"] in self.fail_jobs:
                    job.status, job.message, job.ended = "Failed", self.fail_message, time.time()
                elif job.polls >= self.polls_to_finish and not self.hold.is_set():
                    self._run(job)
                else:
                    job.status = "InProgress"
            return 200, self._describe(job), ""

    def _describe(self, job: FakeJob) -> dict[str, Any]:
        document: dict[str, Any] = {
            "jobArn": job.arn, "jobName": job.name, "modelId": job.model_id,
            "clientRequestToken": job.token, "roleArn": job.role_arn, "status": job.status,
            "submitTime": job.submitted, "lastModifiedTime": time.time(),
            "inputDataConfig": {"s3InputDataConfig": {"s3Uri": job.input_uri,
                                                      "s3InputFormat": "JSONL"}},
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": job.output_uri}},
            "timeoutDurationInHours": job.timeout_hours,
            "jobExpirationTime": job.submitted + job.timeout_hours * 3600,
        }
        if job.message:
            document["message"] = job.message
        if job.ended is not None:
            document["endTime"] = job.ended
        return document

    # -- doing the work ----------------------------------------------------------------------
    def _s3(self) -> Any:
        return boto3.client("s3", endpoint_url=self.s3_endpoint, region_name=self.region)

    def _run(self, job: FakeJob) -> None:
        s3 = self._s3()
        bucket, prefix = _split(job.input_uri)
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        files = [o["Key"] for o in listed if o["Key"].endswith(".jsonl")]
        out_bucket, out_prefix = _split(job.output_uri)
        out_prefix = f"{out_prefix.rstrip('/')}/{job.job_id}/" if out_prefix else f"{job.job_id}/"
        totals = {"totalRecordCount": 0, "processedRecordCount": 0, "successRecordCount": 0,
                  "errorRecordCount": 0, "inputTokenCount": 0, "outputTokenCount": 0}
        for key in files:
            lines = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()
            out_lines = []
            for line in lines:
                if not line.strip():
                    continue
                record = json.loads(line)
                record_id = record.get("recordId", "")
                totals["totalRecordCount"] += 1
                if self.drop_record(record_id):
                    continue
                totals["processedRecordCount"] += 1
                words_in = len(prompt_text(record["modelInput"]).split())
                error = self.record_error(record_id)
                if error is not None:
                    totals["errorRecordCount"] += 1
                    out = {"recordId": record_id, "modelInput": record["modelInput"],
                           "error": error}
                else:
                    output = self.respond(job.model_id, record["modelInput"])
                    totals["successRecordCount"] += 1
                    totals["inputTokenCount"] += words_in
                    totals["outputTokenCount"] += len(reply_for(
                        prompt_text(record["modelInput"])).split())
                    out = {"recordId": record_id, "modelInput": record["modelInput"],
                           "modelOutput": output}
                out_lines.append(json.dumps(out))
            if self.out_of_order:
                random.Random(7).shuffle(out_lines)
            name = key.rsplit("/", 1)[-1]
            s3.put_object(Bucket=out_bucket, Key=f"{out_prefix}{name}.out",
                          Body=("\n".join(out_lines) + "\n").encode())
        s3.put_object(Bucket=out_bucket, Key=f"{out_prefix}manifest.json.out",
                      Body=json.dumps(totals).encode())
        job.counts.update(totals)
        dropped = totals["processedRecordCount"] < totals["totalRecordCount"]
        job.status = "PartiallyCompleted" if dropped else "Completed"
        job.ended = time.time()


def _split(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://"):]
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix

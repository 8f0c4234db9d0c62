"""HTTP front door: routes the rest-json calls of the ``bedrock`` and ``bedrock-runtime``
services (as botocore's service models define them) and the emulator's ``/_local/*`` controls.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import ApiError, validation
from .faults import Faults
from .jobs import JobStore, Stats, paged
from .models import (
    CATALOGUE,
    PROFILES,
    InferenceProfile,
    converse_response,
    foundation_model,
    inference_profile,
    input_tokens,
    resolve_model,
    respond,
)
from .schemas import CONVERSE, SchemaError, check_body

log = logging.getLogger(__name__)


class BedrockHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], store: JobStore, faults: Faults, stats: Stats
    ) -> None:
        super().__init__(address, _Handler)
        self.store = store
        self.faults = faults
        self.stats = stats
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever, name="local-bedrock-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    server: BedrockHTTPServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    """TCP_NODELAY: the body is sent after the headers, and Nagle's algorithm would hold it
    back until the client's delayed ACK of the headers (up to 40 ms a response)."""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # --- plumbing ----------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        try:
            status, body, content_type = self._route(method, parts.path, query, raw)
        except ApiError as exc:
            self._send(
                exc.status,
                json.dumps({"message": exc.message}).encode(),
                "application/json",
                error=exc.code,
            )
            return
        except Exception as exc:
            log.exception("local bedrock request failed")
            self._send(
                500,
                json.dumps({"message": f"Internal error: {exc}"}).encode(),
                "application/json",
                error="InternalServerException",
            )
            return
        self._send(status, body, content_type)

    def _send(self, status: int, body: bytes, content_type: str, error: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if error:
            self.send_header("x-amzn-ErrorType", error)
        self.end_headers()
        self.wfile.write(body)

    def _route(
        self, method: str, path: str, query: dict[str, str], raw: bytes
    ) -> tuple[int, bytes, str]:
        if path.startswith("/_local/"):
            return _json(self._control(method, path, raw))
        if self.server.faults.should_throttle():
            self.server.stats.bump("throttled_calls")
            raise ApiError(
                "ThrottlingException", "Too many requests, please wait before trying again."
            )
        store = self.server.store
        if method == "POST" and path == "/model-invocation-job":
            return _json({"jobArn": store.create(_body(raw))})
        if method == "GET" and path == "/model-invocation-jobs":
            return _json(store.list_jobs(query))
        if path.startswith("/model-invocation-job/"):
            rest = path[len("/model-invocation-job/") :]
            if method == "POST" and rest.endswith("/stop"):
                store.stop(unquote(rest[: -len("/stop")]))
                return _json({})
            if method == "GET":
                return _json(store.get(unquote(rest)))
        if method == "GET" and path == "/foundation-models":
            return _json(self._foundation_models(query))
        if method == "GET" and path.startswith("/foundation-models/"):
            self.server.stats.bump("foundation_model_calls")
            model = foundation_model(unquote(path[len("/foundation-models/") :]))
            if model is None:
                raise ApiError("ResourceNotFoundException", "The model could not be found.")
            return _json({"modelDetails": model.summary()})
        if method == "GET" and path == "/inference-profiles":
            self.server.stats.bump("inference_profile_calls")
            kind = query.get("type", "SYSTEM_DEFINED")  # (no application profiles here)
            profiles = PROFILES if kind == "SYSTEM_DEFINED" else ()
            return _json(
                paged(profiles, query, "inferenceProfileSummaries", InferenceProfile.summary)
            )
        if method == "GET" and path.startswith("/inference-profiles/"):
            self.server.stats.bump("inference_profile_calls")
            profile = inference_profile(unquote(path[len("/inference-profiles/") :]))
            if profile is None:
                raise ApiError(
                    "ResourceNotFoundException", "The inference profile could not be found."
                )
            return _json(profile.summary())
        if method == "POST" and path.startswith("/model/"):
            rest = path[len("/model/") :]
            for action in ("invoke", "converse", "count-tokens"):
                if rest.endswith("/" + action):
                    model_id = unquote(rest[: -len(action) - 1])
                    return self._runtime(action, model_id, raw)
        raise ApiError("UnknownOperationException", f"No operation for {method} {path}")

    # --- control plane -------------------------------------------------------------------

    def _foundation_models(self, query: dict[str, str]) -> dict[str, Any]:
        self.server.stats.bump("foundation_model_calls")
        summaries = []
        for model in CATALOGUE:
            s = model.summary()
            if "byProvider" in query and query["byProvider"].lower() != model.provider.lower():
                continue
            if (
                "byOutputModality" in query
                and query["byOutputModality"] not in s["outputModalities"]
            ):
                continue
            if (
                "byInferenceType" in query
                and query["byInferenceType"] not in s["inferenceTypesSupported"]
            ):
                continue
            if "byCustomizationType" in query:
                continue
            summaries.append(s)
        return {"modelSummaries": summaries}

    # --- runtime ---------------------------------------------------------------------------

    def _runtime(self, action: str, model_id: str, raw: bytes) -> tuple[int, bytes, str]:
        started = time.monotonic()
        stats = self.server.stats
        model = resolve_model(model_id)
        if model is None:
            raise validation("The provided model identifier is invalid.")
        if action == "count-tokens":
            stats.bump("count_tokens_calls")
            payload = _body(raw).get("input")
            if not isinstance(payload, dict):
                raise validation("input is required")
            if "invokeModel" in payload:
                blob = payload["invokeModel"].get("body", "")
                body = _parse_model_body(base64.b64decode(blob))
                family = model.family
            elif "converse" in payload:
                body = payload["converse"]
                family = CONVERSE
            else:
                raise validation("input must have invokeModel or converse")
            _check(family, body, model.output)
            return _json({"inputTokens": input_tokens(family, body)})
        if action == "invoke":
            stats.bump("invoke_calls")
            body = _parse_model_body(raw)
            family = model.family
        else:
            stats.bump("converse_calls")
            body = _body(raw)
            family = CONVERSE
        _check(family, body, model.output)
        needle = self.server.faults.fail_text_containing
        if needle and needle in json.dumps(body):
            raise ApiError(
                "ModelErrorException",
                "The model failed to process the request (injected by the local emulator).",
            )
        reply = respond(family, body, model_id)
        with stats.lock:
            stats.input_tokens += reply.input_tokens
            stats.output_tokens += reply.output_tokens
        if action == "invoke":
            return _json(reply.body)
        return _json(converse_response(reply, started))

    # --- emulator controls -----------------------------------------------------------------

    def _control(self, method: str, path: str, raw: bytes) -> Any:
        srv = self.server
        if path == "/_local/health":
            return {"ok": True}
        if path == "/_local/stats" and method == "GET":
            return srv.stats.as_dict()
        if path == "/_local/faults":
            if method == "POST":
                try:
                    srv.faults.update(_body(raw))
                except ValueError as exc:
                    raise validation(str(exc)) from exc
            return srv.faults.as_dict()
        if path == "/_local/reset" and method == "POST":
            srv.store.reset()
            srv.stats.reset()
            srv.faults.reset()
            return {"ok": True}
        raise ApiError("UnknownOperationException", f"No control {method} {path}")


def _json(value: Any, status: int = 200) -> tuple[int, bytes, str]:
    return status, json.dumps(value).encode("utf-8"), "application/json"


def _body(raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise validation("The request body is not valid JSON.") from exc
    if not isinstance(value, dict):
        raise validation("The request body must be a JSON object.")
    return value


def _parse_model_body(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise validation(
            "Malformed input request, please reformat your input and try again."
        ) from exc


def _check(family: str, body: Any, output: str) -> None:
    if family == CONVERSE and output == "EMBEDDING":
        raise validation("This model doesn't support the Converse API.")
    try:
        check_body(family, body)
    except SchemaError as exc:
        raise validation(str(exc)) from exc

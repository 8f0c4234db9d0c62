"""``LocalBedrock``: the emulator's HTTP server, its job worker and moto's S3, started together."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import TracebackType
from typing import Any

import boto3
import botocore.session
from botocore.config import Config

from .faults import Faults
from .jobs import JobLimits, JobStore, JobTimings, Stats
from .models import ACCOUNT, REGION
from .server import BedrockHTTPServer

BUCKET = "bedrock-batch-local"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/BedrockBatchLocalRole"
DUMMY_CREDENTIAL = "testing"
_REMOVED_ENV = ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE")


class LocalBedrock:
    """A local Bedrock (control plane + runtime on one URL) and S3 (moto) on 127.0.0.1.

    >>> with LocalBedrock() as lb:
    ...     bedrock = boto3.client("bedrock", endpoint_url=lb.bedrock_url, region_name=lb.region)
    """

    region = REGION
    bucket = BUCKET
    role_arn = ROLE_ARN

    def __init__(
        self,
        *,
        port: int = 0,
        s3_port: int = 0,
        host: str = "127.0.0.1",
        timings: JobTimings | None = None,
        limits: JobLimits | None = None,
        faults: Faults | None = None,
        quota: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.s3_port = s3_port
        self.timings = timings or JobTimings()
        self.limits = limits or JobLimits()
        if quota is not None:
            self.limits.concurrent_jobs_per_model = quota
        self.faults = faults or Faults()
        self.stats = Stats()
        self.store = JobStore(
            self.s3_client,
            timings=self.timings,
            limits=self.limits,
            faults=self.faults,
            stats=self.stats,
        )
        self._http: BedrockHTTPServer | None = None
        self._moto: Any = None
        self._session: boto3.session.Session | None = None
        self._client_lock = threading.Lock()
        self._s3: Any = None
        self.bedrock_url = ""
        self.s3_url = ""

    # --- life cycle ------------------------------------------------------------------------

    def start(self) -> LocalBedrock:
        werkzeug_log = logging.getLogger("werkzeug")
        if werkzeug_log.level == logging.NOTSET:
            werkzeug_log.setLevel(logging.WARNING)  # moto's per-request lines
        self._moto = _moto_server(self.host, self.s3_port)
        self._moto.start()
        s3_host, s3_port = self._moto.get_host_and_port()
        self.s3_url = f"http://{s3_host}:{s3_port}"
        self._http = BedrockHTTPServer((self.host, self.port), self.store, self.faults, self.stats)
        self._http.start()
        self.bedrock_url = self._http.url
        self.store.start()
        s3 = self.s3_client()
        with suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=self.bucket)
        return self

    def stop(self) -> None:
        self.store.close()
        if self._http is not None:
            self._http.stop()
            self._http = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        self._s3 = None

    def __enter__(self) -> LocalBedrock:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- knobs -----------------------------------------------------------------------------

    @property
    def quota(self) -> int:
        """Concurrent (submitted or in progress) jobs per model."""
        return self.limits.concurrent_jobs_per_model

    @quota.setter
    def quota(self, value: int) -> None:
        self.limits.concurrent_jobs_per_model = value

    def reset(self) -> None:
        """Forget every job, zero the stats and clear the faults."""
        self.store.reset()
        self.stats.reset()
        self.faults.reset()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until no job is active; True when idle."""
        return self.store.wait_idle(timeout)

    # --- clients and environment -----------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """The environment that points unmodified boto3 clients at this emulator."""
        return {
            "AWS_ENDPOINT_URL_BEDROCK": self.bedrock_url,
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": self.bedrock_url,
            "AWS_ENDPOINT_URL_S3": self.s3_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIAL,
            "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIAL,
            "BEDROCK_BATCH_BUCKET": self.bucket,
            "BEDROCK_BATCH_ROLE_ARN": self.role_arn,
        }

    def client(self, service: str, **config: Any) -> Any:
        """A boto3 client for "bedrock", "bedrock-runtime" or "s3" pointed at the emulator."""
        url = self.s3_url if service == "s3" else self.bedrock_url
        with self._client_lock:
            if self._session is None:
                # A session blind to AWS_PROFILE: a profile in the environment can't get in the way.
                isolated = botocore.session.Session(
                    session_vars={"profile": (None, None, None, None)}
                )
                self._session = boto3.session.Session(
                    botocore_session=isolated,
                    region_name=self.region,
                    aws_access_key_id=DUMMY_CREDENTIAL,
                    aws_secret_access_key=DUMMY_CREDENTIAL,
                )
            return self._session.client(
                service,  # type: ignore[call-overload]
                endpoint_url=url,
                config=Config(**config) if config else None,
            )

    def s3_client(self) -> Any:
        """A (cached) boto3 S3 client for the emulator's moto server."""
        if self._s3 is None:
            self._s3 = self.client("s3")
        return self._s3


def _moto_server(host: str, port: int) -> Any:
    """moto's threaded server, with the service behind each request looked up once per host.

    moto's dispatcher finds a request's service by listing its own package directory (one
    ``os.listdir`` and a ``stat`` per service, ~3 ms) under a lock that every request takes:
    requests queue behind it.  The answer depends on the host alone, so it is remembered."""
    from moto.server import ThreadedMotoServer

    try:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server
    except ImportError:  # pragma: no cover - another moto layout: its server as it is
        return ThreadedMotoServer(ip_address=host, port=port, verbose=False)

    class Dispatcher(DomainDispatcherApplication):
        def __init__(self) -> None:
            super().__init__(create_backend_app)
            self._backends: dict[str | None, Any] = {}

        def get_backend_for_host(self, host: str | None) -> Any:
            if host not in self._backends:  # called under the dispatcher's lock
                self._backends[host] = super().get_backend_for_host(host)
            return self._backends[host]

    class Server(ThreadedMotoServer):
        def _server_entry(self) -> None:
            self._server = make_server(
                self._ip_address, self._port, Dispatcher(), True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    server = Server(ip_address=host, port=port, verbose=False)
    if not all(hasattr(server, a) for a in ("_ip_address", "_port", "_server_ready_event")):
        return ThreadedMotoServer(ip_address=host, port=port, verbose=False)  # pragma: no cover
    return server


@contextmanager
def local_bedrock(**kwargs: Any) -> Iterator[LocalBedrock]:
    """Start a :class:`LocalBedrock` and point the process environment at it while open.

    Sets the ``AWS_ENDPOINT_URL_*`` variables that botocore honours, dummy credentials, the
    region, ``BEDROCK_BATCH_BUCKET`` and ``BEDROCK_BATCH_ROLE_ARN``; removes
    ``AWS_PROFILE`` / ``AWS_SESSION_TOKEN``; drops boto3's cached default session on entry and
    exit; restores every variable on exit.
    """
    with LocalBedrock(**kwargs) as lb:
        saved = {k: os.environ.get(k) for k in (*lb.env, *_REMOVED_ENV)}
        try:
            for key in _REMOVED_ENV:
                os.environ.pop(key, None)
            os.environ.update(lb.env)
            boto3.DEFAULT_SESSION = None  # a cached session may hold an old profile or region
            yield lb
        finally:
            boto3.DEFAULT_SESSION = None
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

"""The boto3 clients a run uses.

Clients are plain ``boto3`` clients, so endpoints, region and credentials come from the
standard chain (``AWS_ENDPOINT_URL_BEDROCK`` etc. for the local emulator).  Retries of
throttling and transient errors are botocore's own standard retry mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

RETRY_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 10},
    max_pool_connections=32,
    user_agent_extra="bedrock-batch-nb",
)


@dataclass(frozen=True)
class Clients:
    bedrock: Any
    runtime: Any
    s3: Any

    @classmethod
    def create(cls, region: str | None = None) -> Clients:
        session = boto3.session.Session(region_name=region)
        return cls(
            bedrock=session.client("bedrock", config=RETRY_CONFIG),
            runtime=session.client("bedrock-runtime", config=RETRY_CONFIG),
            s3=session.client("s3", config=RETRY_CONFIG),
        )


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (None for other exceptions)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def describe_error(exc: BaseException) -> str:
    """``"<AWS error code or exception type>: <message>"`` on one line."""
    response = getattr(exc, "response", None)
    message = response.get("Error", {}).get("Message") if isinstance(response, dict) else None
    text = str(message or exc)
    first = text.splitlines()[0] if text else ""
    return f"{error_code(exc) or type(exc).__name__}: {first}"

"""A local Amazon Bedrock for tests and demos: batch jobs, InvokeModel and Converse over real
HTTP, with S3 served by moto. Written independently of the engine (it imports nothing from
``bedrock_batch_nb`` outside this package), so the two check each other.

Use :func:`local_bedrock` to start it and point ``boto3`` at it through the environment, or
:class:`LocalBedrock` to hold it yourself; ``python -m bedrock_batch_nb.local`` serves it.
"""

from __future__ import annotations

from .emulator import BUCKET, ROLE_ARN, LocalBedrock, local_bedrock
from .faults import Faults
from .jobs import JobLimits, JobTimings, Stats
from .models import CATALOGUE, REPLY_PREFIX

__all__ = [
    "BUCKET",
    "CATALOGUE",
    "REPLY_PREFIX",
    "ROLE_ARN",
    "Faults",
    "JobLimits",
    "JobTimings",
    "LocalBedrock",
    "Stats",
    "local_bedrock",
]

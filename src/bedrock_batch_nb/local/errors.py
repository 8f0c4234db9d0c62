"""The error a Bedrock API call answers with, in rest-json form."""

from __future__ import annotations

# HTTP status per error code, as the botocore service models declare them.
STATUS_BY_CODE: dict[str, int] = {
    "ValidationException": 400,
    "ServiceQuotaExceededException": 400,
    "ConflictException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "ThrottlingException": 429,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
    "UnknownOperationException": 404,
}


class ApiError(Exception):
    """Raised anywhere in the emulator; the server turns it into an error response."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return STATUS_BY_CODE.get(self.code, 400)


def validation(message: str) -> ApiError:
    return ApiError("ValidationException", message)

"""One error tree for the whole platform.

Every error a client can see carries its AWS error code and HTTP status here; the API
layer turns them into AWS-shaped responses in one place (`lamina.api.errors`).
"""

from __future__ import annotations


class LaminaError(Exception):
    """Base of every error that reaches a client with an AWS error shape."""

    code = "ServiceException"
    status = 500
    error_type = "Service"

    def __init__(self, message: str, **fields: str) -> None:
        super().__init__(message)
        self.message = message
        # Extra members of the error shape (e.g. `Reason` for throttles).
        self.fields = fields
        self.headers: dict[str, str] = {}


class ServiceError(LaminaError):
    """An internal failure; the message never carries a traceback."""


class ClientError(LaminaError):
    """A problem with the request; the client can act on the message."""

    status = 400
    error_type = "User"


class ValidationError(ClientError):
    code = "ValidationException"


class InvalidParameterValue(ClientError):
    code = "InvalidParameterValueException"


class InvalidRequestContent(ClientError):
    code = "InvalidRequestContentException"


class PolicyLengthExceeded(ClientError):
    code = "PolicyLengthExceededException"


class CodeStorageExceeded(ClientError):
    code = "CodeStorageExceededException"


class ResourceInUse(ClientError):
    code = "ResourceInUseException"


class ResourceNotFound(ClientError):
    code = "ResourceNotFoundException"
    status = 404


class ProvisionedConcurrencyConfigNotFound(ResourceNotFound):
    code = "ProvisionedConcurrencyConfigNotFoundException"


class CodeSigningConfigNotFound(ResourceNotFound):
    code = "CodeSigningConfigNotFoundException"


class UnknownOperation(ClientError):
    code = "UnknownOperationException"
    status = 404


class MethodNotAllowed(ClientError):
    code = "MethodNotAllowedException"
    status = 405


class ResourceConflict(ClientError):
    code = "ResourceConflictException"
    status = 409


class PreconditionFailed(ClientError):
    code = "PreconditionFailedException"
    status = 412


class RequestEntityTooLarge(ClientError):
    code = "RequestEntityTooLargeException"
    status = 413


class RequestTooLarge(ClientError):
    code = "RequestTooLargeException"
    status = 413


class UnsupportedMediaType(ClientError):
    code = "UnsupportedMediaTypeException"
    status = 415


class TooManyRequests(ClientError):
    code = "TooManyRequestsException"
    status = 429


class AccessDenied(ClientError):
    code = "AccessDeniedException"
    status = 403


class UnrecognizedClient(ClientError):
    code = "UnrecognizedClientException"
    status = 403


class InvalidSignature(ClientError):
    code = "InvalidSignatureException"
    status = 403


class IncompleteSignature(ClientError):
    code = "IncompleteSignatureException"
    status = 403


class InvalidZipFile(ClientError):
    code = "InvalidZipFileException"
    status = 502


class CodeVerificationFailed(ClientError):
    code = "CodeVerificationFailedException"


class InvalidParameter(ClientError):
    """CloudWatch Logs' code for a bad request, shape violations included."""

    code = "InvalidParameterException"


class ResourceAlreadyExists(ClientError):
    code = "ResourceAlreadyExistsException"


class InvalidRuntime(LaminaError):
    """The function's runtime cannot start here; reported to the caller as a function error."""

    code = "InvalidRuntimeException"
    status = 502
    error_type = "User"

    def __init__(self, message: str, error_type: str = "Runtime.InvalidRuntime") -> None:
        super().__init__(message)
        self.runtime_error_type = error_type

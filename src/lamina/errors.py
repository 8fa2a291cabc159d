"""One error tree for the whole platform.

Every error a client can see carries its AWS error code and HTTP status here; the API
layer turns them into AWS-shaped responses in one place (`lamina.api.errors`).
"""

from __future__ import annotations

from lamina.constants import RUNTIME_INVALID_RUNTIME


class LaminaError(Exception):
    """Base of every error that reaches a client with an AWS error shape."""

    code = "ServiceException"
    status = 500
    # The body's `Type` member; None leaves it out, as AWS does for some errors.
    error_type: str | None = "Service"

    def __init__(self, message: str, **fields: str) -> None:
        super().__init__(message)
        # An empty message is left out of the body, as AWS leaves it out of some refusals.
        self.message = message
        # Extra members of the error shape (e.g. `Reason` for throttles).
        self.fields = fields
        self.headers: dict[str, str] = {}


# AWS's words when Lambda cannot process a request (a ServiceException's, and some
# refusals of malformed ARNs).
CANNOT_BE_PROCESSED = "An error occurred and the request cannot be processed."


class ServiceError(LaminaError):
    """An internal failure; the message never carries a traceback."""


class ClientError(LaminaError):
    """A problem with the request; the client can act on the message."""

    status = 400
    error_type: str | None = "User"


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


class SnapStartNotReady(ClientError):
    """A SnapStart version whose snapshot is not ready (yet, or any more) on this node."""

    code = "SnapStartNotReadyException"
    status = 409


class SnapStartTimeout(ClientError):
    """A SnapStart environment's restore (after-restore hooks included) took too long."""

    code = "SnapStartTimeoutException"
    status = 408


class ResourceInUse(ClientError):
    """Lambda's refusal to change an event source mapping while it is in transition."""

    code = "ResourceInUseException"


class PreconditionFailed(ClientError):
    code = "PreconditionFailedException"
    status = 412


class RequestEntityTooLarge(ClientError):
    code = "RequestEntityTooLargeException"
    status = 413


class RequestTooLarge(ClientError):
    code = "RequestTooLargeException"
    status = 413


class TooManyRequests(ClientError):
    code = "TooManyRequestsException"
    status = 429


class AccessDenied(ClientError):
    """A caller without permission on the resource, e.g. a function in another account."""

    code = "AccessDeniedException"
    status = 403
    error_type = None


class UnrecognizedClient(ClientError):
    code = "UnrecognizedClientException"
    status = 403


class InvalidSignature(ClientError):
    code = "InvalidSignatureException"
    status = 403


class ExpiredToken(ClientError):
    """Session credentials used after their expiry."""

    code = "ExpiredTokenException"
    status = 403


class IncompleteSignature(ClientError):
    code = "IncompleteSignatureException"
    status = 403


class CodeVerificationFailed(ClientError):
    code = "CodeVerificationFailedException"


class InvalidParameter(ClientError):
    """CloudWatch Logs' code for a bad request, shape violations included."""

    code = "InvalidParameterException"


class ResourceAlreadyExists(ClientError):
    code = "ResourceAlreadyExistsException"


class InvalidParameterCombination(ClientError):
    """CloudWatch's code for members that cannot go together (or one missing another)."""

    code = "InvalidParameterCombinationException"


class InvalidNextToken(ClientError):
    """CloudWatch's code for a NextToken it did not hand out."""

    code = "InvalidNextToken"


class InvalidEventPattern(ClientError):
    """EventBridge's code for an event pattern it cannot parse."""

    code = "InvalidEventPatternException"


class LimitExceeded(ClientError):
    """EventBridge's code for a quota reached (e.g. targets per rule)."""

    code = "LimitExceededException"


class InvalidRuntime(LaminaError):
    """The function's runtime cannot start here; reported to the caller as a function error."""

    code = "InvalidRuntimeException"
    status = 502
    error_type = "User"

    def __init__(self, message: str, error_type: str = RUNTIME_INVALID_RUNTIME) -> None:
        super().__init__(message)
        self.runtime_error_type = error_type


class KmsDisabled(LaminaError):
    """Invoke: the function's KMSKeyArn key is disabled, so its variables cannot be read."""

    code = "KMSDisabledException"
    status = 502
    error_type = "User"


class KmsAccessDenied(LaminaError):
    """Invoke: the function's role may not decrypt with its KMSKeyArn key."""

    code = "KMSAccessDeniedException"
    status = 502
    error_type = "User"


# IAM's and STS's refusals (query protocol: the model names the wire code and status, e.g.
# `NoSuchEntityException` is `NoSuchEntity`, 404; see `lamina.api.pipeline.query_error_code`).


class NoSuchEntity(ClientError):
    code = "NoSuchEntityException"
    status = 404


class EntityAlreadyExists(ClientError):
    code = "EntityAlreadyExistsException"
    status = 409


class DeleteConflict(ClientError):
    code = "DeleteConflictException"
    status = 409


class MalformedPolicyDocument(ClientError):
    code = "MalformedPolicyDocumentException"


class InvalidInput(ClientError):
    code = "InvalidInputException"


class UnmodifiableEntity(ClientError):
    code = "UnmodifiableEntityException"

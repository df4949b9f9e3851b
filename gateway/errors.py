"""Domain exceptions. No framework imports: resolvers and routes translate them."""

__all__ = [
    "BadInput",
    "Conflict",
    "DomainError",
    "Forbidden",
    "MalformedPayload",
    "NotFound",
    "Unauthenticated",
    "WebhookAuthError",
]


class DomainError(Exception):
    """An expected error whose message is safe to show to the caller."""

    code = "BAD_REQUEST"


class BadInput(DomainError):
    """The caller sent a value the gateway cannot use (bad id, cursor, page size...)."""

    code = "BAD_USER_INPUT"


class NotFound(DomainError):
    """The thing does not exist, or belongs to another tenant: both read the same."""

    code = "NOT_FOUND"


class Conflict(DomainError):
    code = "CONFLICT"


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"


class Forbidden(DomainError):
    code = "FORBIDDEN"


class MalformedPayload(DomainError):
    """A webhook body that does not parse as the provider's documented format."""

    code = "MALFORMED_PAYLOAD"


class WebhookAuthError(DomainError):
    """A webhook whose signature, credentials or timestamp do not check out."""

    code = "WEBHOOK_UNAUTHENTICATED"

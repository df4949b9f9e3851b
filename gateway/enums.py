"""The domain's enumerations, shared by the tables, the projection and the schema."""

from enum import StrEnum

__all__ = ["EmailStatus", "FailureCategory", "InvoiceStatus", "Scope"]


class EmailStatus(StrEnum):
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    DELIVERY_FAILED = "DELIVERY_FAILED"
    OPENED = "OPENED"


class FailureCategory(StrEnum):
    HARD_BOUNCE = "HARD_BOUNCE"
    SOFT_BOUNCE = "SOFT_BOUNCE"
    BLOCKED = "BLOCKED"
    INVALID_RECIPIENT = "INVALID_RECIPIENT"
    SPAM_COMPLAINT = "SPAM_COMPLAINT"
    DROPPED = "DROPPED"
    OTHER = "OTHER"


class InvoiceStatus(StrEnum):
    DRAFT = "DRAFT"
    ISSUED = "ISSUED"
    PAID = "PAID"
    CANCELLED = "CANCELLED"


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"

"""The domain's enumerations, shared by the tables, the projection and the schema."""

from enum import Enum

__all__ = ["EmailStatus", "FailureCategory", "InvoiceStatus", "Scope"]


class EmailStatus(str, Enum):
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    DELIVERY_FAILED = "DELIVERY_FAILED"
    OPENED = "OPENED"


class FailureCategory(str, Enum):
    HARD_BOUNCE = "HARD_BOUNCE"
    SOFT_BOUNCE = "SOFT_BOUNCE"
    BLOCKED = "BLOCKED"
    INVALID_RECIPIENT = "INVALID_RECIPIENT"
    SPAM_COMPLAINT = "SPAM_COMPLAINT"
    DROPPED = "DROPPED"
    OTHER = "OTHER"


class InvoiceStatus(str, Enum):
    DRAFT = "DRAFT"
    ISSUED = "ISSUED"
    PAID = "PAID"
    CANCELLED = "CANCELLED"


class Scope(str, Enum):
    READ = "read"
    WRITE = "write"

"""The domain enums as GraphQL enums, with a description for every value."""

from __future__ import annotations

from enum import Enum

import strawberry

from gateway import enums

__all__ = ["EmailStatus", "FailureCategory", "InvoiceStatus"]


# The domain enums themselves, described for GraphQL: one class, so mypy sees each name as the type.
EmailStatus = enums.EmailStatus
FailureCategory = enums.FailureCategory
InvoiceStatus = enums.InvoiceStatus


def _describe(enum: type[Enum], description: str, values: dict[str, str]) -> None:
    strawberry.enum(enum, description=description)
    definition = enum.__strawberry_definition__  # type: ignore[attr-defined]  # set by strawberry.enum
    for value in definition.values:
        value.description = values[value.name]


_describe(
    EmailStatus,
    "The last known delivery status of an e-mail.",
    {
        "SENT": "Handed to the mail provider.",
        "DELIVERED": "Accepted by the recipient's mail server (it may still land in spam).",
        "DELIVERY_FAILED": "Could not be delivered; details.failure says why.",
        "OPENED": "The tracking image was fetched. Not proof that a person read it.",
    },
)
_describe(
    FailureCategory,
    "Why an e-mail could not be delivered.",
    {
        "HARD_BOUNCE": "The receiving server refused it for good (no such mailbox or domain).",
        "SOFT_BOUNCE": "A temporary refusal the provider stopped retrying (mailbox full, server down).",
        "BLOCKED": "Refused as spam or by policy (blocklist, reputation, content).",
        "INVALID_RECIPIENT": "The address is not valid.",
        "SPAM_COMPLAINT": (
            "The recipient marked it as spam. Kept for compatibility: a complaint is recorded as a delivery "
            "(see `EmailDetails.complaint`), never as a failure; a send the provider drops because of an earlier "
            "complaint is DROPPED."
        ),
        "DROPPED": "The provider did not send it (suppression list, earlier bounce, unsubscribe).",
        "OTHER": "Any other failure; the reason says more.",
    },
)
_describe(
    InvoiceStatus,
    "Where an invoice stands in the accounting application.",
    {
        "DRAFT": "Not issued yet.",
        "ISSUED": "Issued to the client.",
        "PAID": "Paid.",
        "CANCELLED": "Cancelled.",
    },
)

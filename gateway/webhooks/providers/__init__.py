"""One module per mail provider, each exposing `NAME`, `verify(...)` and `parse(...)`.

Every module checks the provider's real authenticity scheme and parses its real,
documented event format; the module docstrings hold the event mapping tables.
"""

__all__ = ["mailgun", "postmark", "resend", "sendgrid", "ses"]

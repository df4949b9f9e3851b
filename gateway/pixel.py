"""The tracking image: signed tokens now; the route and open verdicts with ingestion.

A token is the e-mail's random tracking id plus an HMAC of it under the secret
key. Nobody can forge a token for an e-mail or enumerate e-mails, the e-mail's
id is not in it, and a forged token is refused before any database work.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = ["sign_tracking_id", "tracking_url", "verify_token"]

_MAC_BYTES = 16


def _mac(key: bytes, tracking_id: str) -> str:
    digest = hmac.new(key, b"pixel:" + tracking_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:_MAC_BYTES]).decode().rstrip("=")


def sign_tracking_id(key: bytes, tracking_id: str) -> str:
    return f"{tracking_id}.{_mac(key, tracking_id)}"


def verify_token(key: bytes, token: str) -> str | None:
    """The tracking id in a genuine token, None for anything forged or malformed."""
    tracking_id, dot, mac = token.partition(".")
    if not dot or not tracking_id or len(token) > 100:
        return None
    return tracking_id if hmac.compare_digest(mac, _mac(key, tracking_id)) else None


def tracking_url(public_url: str, key: bytes, tracking_id: str) -> str:
    return f"{public_url.rstrip('/')}/t/{sign_tracking_id(key, tracking_id)}.gif"

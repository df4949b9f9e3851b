"""SendGrid Event Webhook requests as SendGrid signs them (ECDSA P-256 over timestamp + body)."""

from __future__ import annotations

import base64
import time
from typing import Any

__all__ = ["FILTER_SUFFIX", "key_pair", "signed_headers"]

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
# What SendGrid appends to the X-Message-Id it answered at sending, in sg_message_id.
FILTER_SUFFIX = ".filter0001.16648.5515E0B88.0"


def key_pair() -> tuple[Any, str]:
    """A P-256 key pair; the public half as SendGrid shows it (base64 DER SubjectPublicKeyInfo),
    for GATEWAY_SENDGRID_VERIFICATION_KEY."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, base64.b64encode(der).decode()


def signed_headers(key: Any, body: bytes) -> dict[str, str]:
    """Sign like SendGrid: ECDSA P-256/SHA-256 over timestamp + raw body, base64 DER.

    The timestamp is now: call it just before sending."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    timestamp = str(int(time.time()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        SIGNATURE_HEADER: base64.b64encode(signature).decode(),
        TIMESTAMP_HEADER: timestamp,
        "Content-Type": "application/json",
        "User-Agent": "SendGrid Event API",
    }

"""The providers' webhook endpoints: plain Starlette routes, not GraphQL.

Each route reads the raw body, checks the provider's own authenticity scheme,
parses the provider's documented format, and hands the events to the one
ingestion path. It answers 2xx only after the commit, so a crash before it makes
the provider retry (and the retry is deduplicated), and a crash after it loses
nothing.

Answers: 200 with counts; 400 for a malformed body (Mailgun 406, which tells it
to stop retrying a payload that will never parse); 401 for a missing or bad
signature, a stale timestamp or wrong credentials; 403 when the provider is not
configured here or a Mailgun token is replayed with another body; 413 for a body
over 5 MiB; 503 (with Retry-After) when the database is unreachable or an SNS
signing certificate cannot be fetched now, so that the provider retries.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

import httpx
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway import ingest, models
from gateway.config import Settings
from gateway.db import database_unavailable
from gateway.errors import MalformedPayload, WebhookAuthError
from gateway.events import IncomingEvent
from gateway.repositories.webhook_nonces import record_webhook_nonce

from .providers import mailgun, postmark, resend, sendgrid, ses

__all__ = ["webhook_routes"]

log = logging.getLogger(__name__)

_MAX_BODY = 5 * 1024 * 1024

Check = Callable[[AsyncSession], Awaitable[Response | None]]


class _TooLarge(Exception):
    pass


class _Replayed(Exception):
    pass


async def _body(request: Request) -> bytes:
    if int(request.headers.get("content-length") or 0) > _MAX_BODY:
        raise _TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > _MAX_BODY:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _ingest(request: Request, events: Sequence[IncomingEvent], before: Check | None = None) -> Response:
    """Record the events in one transaction; 200 after commit, 503 if the database is down."""
    state = request.state
    settings: Settings = state.settings
    try:
        async with state.session_factory() as session:
            if before is not None and (refusal := await before(session)) is not None:
                return refusal
            report = await ingest.ingest_events(
                session=session,
                events=events,
                publisher=state.broker,
                keep_pending=timedelta(hours=settings.pending_event_hours),
                counter=state.metrics,
            )
    except Exception as error:
        if not database_unavailable(error):
            raise
        log.exception("webhook not recorded: database unavailable")
        return JSONResponse(
            {"error": "database unavailable, retry later"}, status_code=503, headers={"Retry-After": "30"}
        )
    for source, count in Counter(e.source for e in events).items():
        state.metrics.events.labels(source).inc(count)
    return JSONResponse({"received": len(events), "applied": report.applied, "pending": report.pending})


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _headers(request: Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


async def _sendgrid(request: Request) -> Response:
    key = _secret(request.state.settings.sendgrid_verification_key)
    if not key:
        return _error(403, "the SendGrid webhook is not configured on this gateway")
    body = await _body(request)
    sendgrid.verify(headers=_headers(request), body=body, public_key=key, now=models.utcnow())
    return await _ingest(request, sendgrid.parse(body))


async def _mailgun(request: Request) -> Response:
    key = _secret(request.state.settings.mailgun_signing_key)
    if not key:
        return _error(403, "the Mailgun webhook is not configured on this gateway")
    body = await _body(request)
    try:
        mailgun.verify(headers=_headers(request), body=body, signing_key=key, now=models.utcnow())
        events = mailgun.parse(body)
    except MalformedPayload as error:
        return _error(406, str(error))  # Mailgun stops retrying on 406
    token = events[0].key if events else None

    async def not_replayed(session: AsyncSession) -> Response | None:
        # Mailgun signs timestamp+token only: a token seen with another body is a replay.
        if token is None:
            return None
        digest = hashlib.sha256(body).hexdigest()
        fresh = await record_webhook_nonce(
            session=session, source=mailgun.NAME, token=token, body_hash=digest, now=models.utcnow()
        )
        if not fresh:
            await session.rollback()
            return _error(403, "signature token already used for another payload")
        return None

    return await _ingest(request, events, not_replayed)


async def _postmark(request: Request) -> Response:
    settings = request.state.settings
    password = _secret(settings.postmark_password)
    if not settings.postmark_username or not password:
        return _error(403, "the Postmark webhook is not configured on this gateway")
    body = await _body(request)
    postmark.verify(
        headers=_headers(request),
        body=body,
        username=settings.postmark_username,
        password=password,
        now=models.utcnow(),
    )
    return await _ingest(request, postmark.parse(body))


async def _resend(request: Request) -> Response:
    secret = _secret(request.state.settings.resend_webhook_secret)
    if not secret:
        return _error(403, "the Resend webhook is not configured on this gateway")
    body = await _body(request)
    headers = _headers(request)
    resend.verify(headers=headers, body=body, secret=secret, now=models.utcnow())
    return await _ingest(request, resend.parse(body, svix_id=headers["svix-id"]))


async def _ses(request: Request) -> Response:
    settings = request.state.settings
    if not settings.ses_topic_arns:
        return _error(403, "the SES webhook is not configured on this gateway")
    envelope = ses.parse_envelope(await _body(request))
    await ses.verify(
        envelope=envelope,
        allowed_topic_arns=settings.ses_topic_arns,
        certificates=request.state.sns_certificates,
        now=models.utcnow(),
    )
    if (url := ses.subscribe_url(envelope)) is not None:
        return await _confirm_subscription(url)
    if envelope["Type"] != "Notification":
        return JSONResponse({"received": 0, "applied": 0, "pending": 0})
    return await _ingest(request, ses.parse(envelope))


async def _confirm_subscription(url: str) -> Response:
    # The URL was checked to be https on an SNS host before we get here.
    try:
        async with httpx.AsyncClient(timeout=10, follow_redirects=False) as client:
            answer = await client.get(url)
        answer.raise_for_status()
    except httpx.HTTPError:
        log.warning("SNS subscription confirmation failed", exc_info=True)
        return _error(502, "could not confirm the SNS subscription; SNS will resend it")
    return JSONResponse({"subscribed": True})


def _guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Turn the providers' errors into the answers the module docstring lists."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except _TooLarge:
            return _error(413, f"body larger than {_MAX_BODY} bytes")
        except WebhookAuthError as error:
            return _error(401, str(error))
        except ses.CertificateUnavailable as error:
            log.warning("SNS message not checked: %s", error)
            return JSONResponse({"error": f"{error}; retry later"}, status_code=503, headers={"Retry-After": "30"})
        except MalformedPayload as error:
            return _error(400, str(error))

    return endpoint


def webhook_routes() -> list[Route]:
    handlers = {"sendgrid": _sendgrid, "mailgun": _mailgun, "postmark": _postmark, "ses": _ses, "resend": _resend}
    return [Route(f"/webhooks/{name}", _guarded(h), methods=["POST"]) for name, h in handlers.items()]

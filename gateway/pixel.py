"""The tracking image: signed tokens, the `GET /t/<token>.gif` route, machine-open verdicts.

A token is the e-mail's random tracking id plus an HMAC of it under the secret
key. Nobody can forge a token for an e-mail or enumerate e-mails, the e-mail's
id is not in it, and a forged token is refused before any database work.

The route always answers the same 43-byte transparent GIF with no-cache headers,
whatever the token and even when the database is down: a broken image in an
e-mail helps nobody. A genuine token records an open through the one ingestion
path, after the image has been sent (a background task), with a truncated IP,
the user agent and a machine-open verdict. OPENED is never proof of reading
(DESIGN.md): the verdict only flags fetches that look automatic, and such opens
are recorded all the same.

The IP is the ASGI scope's client, never a header the client could write. Behind
a reverse proxy, uvicorn rewrites the scope from X-Forwarded-For, but only for
the proxies in FORWARDED_ALLOW_IPS (default: 127.0.0.1 and ::1).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import math
import re
from datetime import UTC, datetime, timedelta

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from gateway import ingest, models
from gateway.enums import EmailStatus
from gateway.events import IncomingEvent
from gateway.repositories.emails import get_email_by_tracking_id

__all__ = [
    "GIF",
    "PREFETCH_WINDOW",
    "machine_open_verdict",
    "open_event",
    "sign_tracking_id",
    "tracking_image",
    "tracking_url",
    "truncate_ip",
    "utcnow",
    "verify_token",
]

log = logging.getLogger(__name__)

_MAC_BYTES = 16
_MAX_USER_AGENT = 500

# GIF89a, 1x1, a two-colour table, a graphic control extension making colour 0
# transparent, and one pixel of colour 0.
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
    b"!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00"
    b"\x02\x02D\x01\x00;"
)
_HEADERS = {
    "Content-Length": str(len(GIF)),
    "Cache-Control": "no-store, no-cache, must-revalidate, private, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}

# A fetch this soon after delivery (or sending) is a machine: nobody opens an
# e-mail seconds after it lands, while gateways and prefetchers do. GMass saw
# Gmail's prefetch "within seconds after sending" (gmass.co/blog/false-opens-in-gmail).
PREFETCH_WINDOW = timedelta(seconds=10)


def utcnow() -> datetime:
    """The clock of the route; tests replace it to put fetches in chosen seconds."""
    return datetime.now(UTC)


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


# User agents that only machines send, with who fetched ("tracking image fetched by
# <reason>"). Searched case-insensitively anywhere in the user agent; first match wins.
_AUTOMATED_AGENTS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(pattern, re.IGNORECASE), reason)
    for pattern, reason in [
        # Gmail's prefetch while a session is open, from Google IPs, before the UI shows
        # the message (bird.com/en-us/blog/gmail-prefetching-images, gmass.co/blog/false-opens-in-gmail).
        (r"Chrome/42\.0\.2311\.135 Safari/537\.36 Edge/12\.246", "Gmail's prefetch"),
        # "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", in
        # Yahoo's words a "content fetch proxy that retrieves ... URLs embedded within
        # emails", seen fetching one pixel up to 4 times (litmus.com/help/analytics/
        # why-do-i-see-a-spike-in-yahoo-mail-opens).
        (r"YahooMailProxy", "Yahoo Mail's proxy"),
        # Office's HEAD probe of a URL, "User-Agent: Microsoft Office Existence Discovery"
        # (blogs.msdn.microsoft.com/vsofficedeveloper, 2008-03-11), and its sibling.
        (r"Microsoft Office (?:Existence|Protocol) Discovery", "a Microsoft Office probe"),
        # ms-office/MSOffice without Outlook: an Office app previewing a link or image.
        # Outlook showing a message's images sends "...; Microsoft Outlook 16.0.5257;
        # ms-office; MSOffice 16)" (shon/httpagentparser#91): a person reading, as is the
        # new Outlook ("... Edg/136.0.0.0 OneOutlook/1.2025.516.400").
        (r"^(?!.*outlook).*(?:ms-office|msoffice)", "a Microsoft Office preview"),
        # Exchange fetching server-side: "Microsoft Exchange/15.20 (Windows NT 10.0; Win64;
        # x64)" (skuz-ko/php-email-open-bot-detection, from GMass's list).
        (r"Microsoft Exchange/", "a Microsoft Exchange server"),
        # Secure e-mail gateways fetch every URL on the way in: "Barracuda Sentinel (EE)"
        # (Braze's bot-filtering docs); Proofpoint, Mimecast, Cisco, Trend Micro, Sophos and
        # Fortinet leak their names (check.live-direct-marketing.online/blog/
        # bot-clicks-security-scanners-detect).
        (
            r"barracuda|mimecast|proofpoint|symantec|broadcom|messagelabs|ironport"
            r"|cisco ?secure ?email|trend ?micro|sophos|fortimail|forcepoint",
            "a security scanner",
        ),
        (r"headless|phantomjs|puppeteer|playwright|selenium|webdriver", "a headless browser"),
        (
            r"python-requests|python-urllib|aiohttp|httpx/|\bcurl/|\bwget/|go-http-client"
            r"|okhttp|\bjava/|apache-httpclient|libwww-perl|node-fetch|axios/|lua-resty-http",
            "an HTTP library",
        ),
        # "Googlebot/2.1", "Slackbot-LinkExpanding", "...; bot; snapchat", or an info URL
        # ("+http://..."). Not a bare "bot": a CUBOT phone is a person.
        (r"bot[/;)_-]|crawler|spider|\+https?://", "a crawler"),
    ]
]


def machine_open_verdict(
    *, user_agent: str | None, opened_at: datetime, delivered_at: datetime | None, sent_at: datetime
) -> tuple[bool, str]:
    """Whether a fetch of the tracking image looks automated, and who fetched it.

    True for a fetch with no user agent; for Apple Mail Privacy Protection, whose
    proxies preload every image of every message, read or not, with the bare user
    agent "Mozilla/5.0" and nothing else (ua-parser/uap-core#509, since 2021-09-20);
    for the prefetchers, proxies and scanners in `_AUTOMATED_AGENTS`; and for any
    fetch within `PREFETCH_WINDOW` of delivery, or of sending when delivery is not
    known (or earlier: a fetch before the recorded delivery is a gateway on the way in).

    Gmail's image proxy ("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0
    (via ggpht.com GoogleImageProxy)") is NOT automated by its user agent: it fetches
    when a person opens the message and Gmail shows its images. SparkPost/Bird, from
    billions of Gmail opens, describe the Image Cache open as "user-initiated" and the
    separate prefetch (its own Chrome/42 user agent, matched above) as the false one;
    Validity likewise keeps Google Proxy opens as "good indicators of recipient open
    times". Flagging every Gmail open would mark every Gmail reader as a machine, so
    a proxy fetch counts as automated only inside the prefetch window, like any other.
    Apple Mail's and Outlook's own clients are people too; a stripped WebKit user agent
    is shared by Apple Mail and proxies (warmbly/warmbly#569), so it is left to timing.
    Yahoo's proxy is the closer call: Validity counts it with Google's as fetching at
    open, but Yahoo calls it a content-fetch proxy for the URLs embedded in e-mails
    and Litmus saw it fetch one pixel up to 4 times, so its fetches are flagged.

    The reason completes "tracking image fetched by ...": the fetcher for an automated
    open, "Gmail's image proxy" or "a mail client" otherwise.
    """
    agent = (user_agent or "").strip()
    if not agent:
        return True, "a client that sent no user agent"
    if agent == "Mozilla/5.0":
        return True, "Apple Mail Privacy Protection"
    for pattern, reason in _AUTOMATED_AGENTS:
        if pattern.search(agent):
            return True, reason
    reference, event = (delivered_at, "delivery") if delivered_at is not None else (sent_at, "sending")
    elapsed = opened_at - reference
    if elapsed <= PREFETCH_WINDOW:
        if elapsed < timedelta(0):
            return True, f"an automatic fetch before {event} was reported"
        return True, f"an automatic prefetch {int(elapsed.total_seconds())} s after {event}"
    if "googleimageproxy" in agent.lower():
        return False, "Gmail's image proxy"
    return False, "a mail client"


def truncate_ip(host: str | None) -> str | None:
    """The client's network, not the client: IPv4 to its /24, IPv6 to its /48.

    Enough to tell a proxy's network from a home's, too coarse to point at a
    person. None for anything that is not an IP address.
    """
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Address(int(address) >> 8 << 8))
    return str(ipaddress.IPv6Address(int(address) >> 80 << 80))


def open_event(
    *,
    email: models.Email,
    user_agent: str | None,
    client_host: str | None,
    opened_at: datetime,
) -> IncomingEvent:
    """The open a fetch of `email`'s tracking image records.

    The key collapses the burst some clients send (the same fetcher fetching twice
    within one second) and keeps every other fetch apart: it is the second, plus a
    hash of the tracking id, the truncated IP and the user agent.
    """
    agent = (user_agent or "")[:_MAX_USER_AGENT] or None
    ip = truncate_ip(client_host)
    automated, fetcher = machine_open_verdict(
        user_agent=agent, opened_at=opened_at, delivered_at=email.delivered_at, sent_at=email.sent_at
    )
    fingerprint = "\n".join((email.tracking_id, ip or "", agent or "")).encode()
    second = math.floor(opened_at.timestamp())
    return IncomingEvent(
        source="pixel",
        key=f"open:{second}:{hashlib.sha256(fingerprint).hexdigest()[:32]}",
        status=EmailStatus.OPENED,
        occurred_at=opened_at,
        description=f"Opened (tracking image fetched by {fetcher})",
        machine_open=automated,
        user_agent=agent,
        ip=ip,
    )


async def _record_open(request: Request, tracking_id: str, opened_at: datetime) -> None:
    state = request.state
    try:
        async with state.session_factory() as session:
            email = await get_email_by_tracking_id(session=session, tracking_id=tracking_id)
            if email is None:  # a genuine token whose e-mail is gone: nothing to record
                return
            event = open_event(
                email=email,
                user_agent=request.headers.get("user-agent"),
                client_host=request.client.host if request.client else None,
                opened_at=opened_at,
            )
            await ingest.record(
                session=session, email=email, events=[event], publisher=state.broker, counter=state.metrics
            )
    except Exception:  # the image is already sent; an outage must not turn into a 500
        log.warning("tracking-image open not recorded", exc_info=True)
        return
    state.metrics.events.labels("pixel").inc()


async def tracking_image(request: Request) -> Response:
    """`GET|HEAD /t/<token>.gif`: the transparent GIF, and an open for a genuine token.

    The open is recorded after the image is sent. A HEAD fetches no image (link
    checkers and Office's existence probe send it), so it gets the headers only
    and records nothing; a forged token does no database work at all.
    """
    path: str = request.path_params["token"]
    if not path.endswith(".gif"):
        return PlainTextResponse("Not Found", status_code=404)
    task = None
    if request.method == "GET":
        tracking_id = verify_token(request.state.signing_key, path.removesuffix(".gif"))
        if tracking_id is not None:
            task = BackgroundTask(_record_open, request, tracking_id, utcnow())
    body = GIF if request.method == "GET" else b""
    return Response(body, media_type="image/gif", headers=_HEADERS, background=task)

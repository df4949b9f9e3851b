"""The machine-open verdict: real user agents by example, then its properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.pixel import PREFETCH_WINDOW, machine_open_verdict

SENT = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
DELIVERED = SENT + timedelta(seconds=4)
LATER = DELIVERED + timedelta(hours=2)

# Real user agents, as the sources cited in gateway/pixel.py report them.
APPLE_MPP = "Mozilla/5.0"
GMAIL_PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
GMAIL_PREFETCH = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/42.0.2311.135 Safari/537.36 Edge/12.246 Mozilla/5.0"
)
YAHOO = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
OUTLOOK_DESKTOP = (
    "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 10.0; WOW64; Trident/7.0; .NET4.0C; .NET4.0E; "
    ".NET CLR 2.0.50727; .NET CLR 3.0.30729; .NET CLR 3.5.30729; Microsoft Outlook 16.0.5257; "
    "ms-office; MSOffice 16)"
)
NEW_OUTLOOK = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/136.0.0.0 Safari/537.36 Edg/136.0.0.0 OneOutlook/1.2025.516.400"
)
APPLE_MAIL = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
THUNDERBIRD = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.3.0"
IPHONE_GMAIL = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
)
ANDROID_CUBOT = "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36"

AUTOMATED = {
    APPLE_MPP: "Apple Mail Privacy Protection",
    GMAIL_PREFETCH: "Gmail's prefetch",
    YAHOO: "Yahoo Mail's proxy",
    "Microsoft Office Existence Discovery": "a Microsoft Office probe",
    "Mozilla/4.0 (compatible; ms-office; MSOffice 16)": "a Microsoft Office preview",
    "Microsoft Exchange/15.20 (Windows NT 10.0; Win64; x64)": "a Microsoft Exchange server",
    "Barracuda Sentinel (EE)": "a security scanner",
    "Mozilla/5.0 (compatible; Mimecast URL Protect)": "a security scanner",
    "Proofpoint URL Defense": "a security scanner",
    "Symantec Email Security.cloud": "a security scanner",
    "Cisco IronPort": "a security scanner",
    "Trend Micro Email Security": "a security scanner",
    "Sophos Email Scanner": "a security scanner",
    "python-requests/2.32.3": "an HTTP library",
    "curl/8.5.0": "an HTTP library",
    "Go-http-client/1.1": "an HTTP library",
    "Java/17.0.2": "an HTTP library",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36": "a headless browser",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)": "a crawler",
    "Snap URL Preview Service; bot; snapchat; https://developers.snap.com/robots": "a crawler",
}
PEOPLE = [GMAIL_PROXY, OUTLOOK_DESKTOP, NEW_OUTLOOK, APPLE_MAIL, THUNDERBIRD, IPHONE_GMAIL, ANDROID_CUBOT]


def verdict(
    user_agent: str | None, opened_at: datetime = LATER, delivered_at: datetime | None = DELIVERED
) -> tuple[bool, str]:
    return machine_open_verdict(user_agent=user_agent, opened_at=opened_at, delivered_at=delivered_at, sent_at=SENT)


@pytest.mark.parametrize(("user_agent", "reason"), AUTOMATED.items())
def test_known_machines_are_automated_whenever_they_fetch(user_agent: str, reason: str) -> None:
    assert verdict(user_agent) == (True, reason)


@pytest.mark.parametrize("user_agent", [None, "", "   "])
def test_no_user_agent_is_automated(user_agent: str | None) -> None:
    assert verdict(user_agent) == (True, "a client that sent no user agent")


@pytest.mark.parametrize("user_agent", PEOPLE)
def test_mail_clients_long_after_delivery_are_people(user_agent: str) -> None:
    automated, reason = verdict(user_agent)
    assert not automated
    assert reason == ("Gmail's image proxy" if "GoogleImageProxy" in user_agent else "a mail client")


def test_gmails_image_proxy_is_automated_only_seconds_after_delivery() -> None:
    # given Gmail's proxy, which fetches when a person opens the message
    # when / then: a fetch 3 s after delivery is a prefetch, one an hour later is a reader
    assert verdict(GMAIL_PROXY, DELIVERED + timedelta(seconds=3)) == (True, "an automatic prefetch 3 s after delivery")
    assert verdict(GMAIL_PROXY, DELIVERED + timedelta(hours=1)) == (False, "Gmail's image proxy")


def test_the_window_ends_ten_seconds_after_delivery() -> None:
    assert verdict(THUNDERBIRD, DELIVERED + PREFETCH_WINDOW)[0] is True
    assert verdict(THUNDERBIRD, DELIVERED + PREFETCH_WINDOW + timedelta(milliseconds=1))[0] is False


def test_without_delivery_the_window_starts_at_sending() -> None:
    assert verdict(APPLE_MAIL, SENT + timedelta(seconds=7), delivered_at=None) == (
        True,
        "an automatic prefetch 7 s after sending",
    )
    assert verdict(APPLE_MAIL, SENT + timedelta(seconds=11), delivered_at=None) == (False, "a mail client")


def test_a_fetch_before_the_reported_delivery_is_a_gateway() -> None:
    assert verdict(NEW_OUTLOOK, DELIVERED - timedelta(seconds=30)) == (
        True,
        "an automatic fetch before delivery was reported",
    )


# Properties ----------------------------------------------------------------

times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
offsets = st.timedeltas(min_value=timedelta(days=-30), max_value=timedelta(days=30))


@given(user_agent=st.none() | st.text(max_size=300), sent_at=times, delivery=st.none() | offsets, opened=offsets)
def test_every_fetch_gets_a_verdict_and_a_reason(
    user_agent: str | None, sent_at: datetime, delivery: timedelta | None, opened: timedelta
) -> None:
    delivered_at = sent_at + delivery if delivery is not None else None
    automated, reason = machine_open_verdict(
        user_agent=user_agent, opened_at=sent_at + opened, delivered_at=delivered_at, sent_at=sent_at
    )
    assert isinstance(automated, bool)
    assert reason and reason == reason.strip()


@given(
    user_agent=st.none() | st.text(max_size=300),
    sent_at=times,
    delivery=st.none() | st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)),
    within=st.timedeltas(min_value=timedelta(days=-1), max_value=PREFETCH_WINDOW),
)
def test_any_fetch_within_the_window_is_automated(
    user_agent: str | None, sent_at: datetime, delivery: timedelta | None, within: timedelta
) -> None:
    delivered_at = sent_at + delivery if delivery is not None else None
    reference = delivered_at or sent_at
    automated, _ = machine_open_verdict(
        user_agent=user_agent, opened_at=reference + within, delivered_at=delivered_at, sent_at=sent_at
    )
    assert automated


@given(
    user_agent=st.sampled_from(sorted(AUTOMATED)),
    casing=st.sampled_from([str, str.lower, str.upper]),
    prefix=st.text(alphabet="abcdefgh ();/.0123456789", max_size=30),
    opened=offsets,
)
def test_machines_are_automated_at_any_time_in_any_case_and_context(
    user_agent: str, casing: object, prefix: str, opened: timedelta
) -> None:
    # the bare Apple MPP agent is matched whole, as its proxy sends it; the others anywhere
    agent = APPLE_MPP if user_agent == APPLE_MPP else f"{prefix} {casing(user_agent)}"  # type: ignore[operator]
    automated, _ = verdict(agent, LATER + opened)
    assert automated


@given(
    user_agent=st.sampled_from(PEOPLE),
    after=st.timedeltas(min_value=timedelta(seconds=11), max_value=timedelta(days=60)),
)
def test_people_after_the_window_are_never_automated(user_agent: str, after: timedelta) -> None:
    assert verdict(user_agent, DELIVERED + after)[0] is False

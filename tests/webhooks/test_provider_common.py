"""The helpers every provider module relies on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.enums import FailureCategory
from gateway.errors import MalformedPayload, WebhookAuthError
from gateway.webhooks.providers import _common as common

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("texts", "code"),
    [
        (("500 unknown recipient",), 500),
        (("400 try again later",), 400),
        (("250 OK",), 250),
        (("smtp;550 5.1.1 The email account that you tried to reach does not exist.",), 550),
        (("smtp; 421 4.4.1 Unable to connect",), 421),
        (("550-5.1.1 The email account",), 550),
        (("Remote server said: 552 5.2.2 Mailbox full",), 552),
        (("5.1.1 The email account that you tried to reach does not exist.",), None),
        (("Recipient address rejected: Greylisted",), None),
        (("Delivery failed after 550 attempts",), None),
        (("Unable to connect to MX servers for 2024 days",), None),
        (("", None, "450 busy"), 450),
        ((None,), None),
    ],
)
def test_smtp_code(texts: tuple[str | None, ...], code: int | None) -> None:
    assert common.smtp_code(*texts) == code


@pytest.mark.parametrize(
    ("text", "invalid"),
    [
        ("smtp;550 5.1.1 user unknown", True),
        ("5.1.10 null MX", True),
        ("550 5.1.2 bad destination system", True),
        ("554 5.7.1 blocked", False),
        ("5.1.11 something else", False),
        ("15.1.1", False),
    ],
)
def test_invalid_recipient(text: str, invalid: bool) -> None:
    assert common.invalid_recipient(text) is invalid


def test_times_are_aware_utc() -> None:
    assert common.unix_time(1714564800, "t") == NOW
    assert common.unix_time("1714564800.5", "t") == NOW + timedelta(milliseconds=500)
    assert common.iso_time("2024-05-01T14:00:00+02:00", "t") == NOW
    assert common.iso_time("2024-05-01T12:00:00", "t").tzinfo is UTC  # no offset: UTC
    assert common.iso_time("2024-05-01T12:00:00.0000000Z", "t") == NOW


@pytest.mark.parametrize("value", [None, True, "soon", float("nan"), float("inf"), [1], 10**20])
def test_bad_unix_times_name_the_field(value: object) -> None:
    with pytest.raises(MalformedPayload, match="when"):
        common.unix_time(value, "when")


@pytest.mark.parametrize("value", [None, 5, "", "2024-13-01T00:00:00Z"])
def test_bad_iso_times_name_the_field(value: object) -> None:
    with pytest.raises(MalformedPayload, match="when"):
        common.iso_time(value, "when")


def test_window_bounds() -> None:
    tolerance = timedelta(minutes=5)
    common.check_window(NOW - tolerance, NOW, tolerance)
    common.check_window(NOW + tolerance, NOW, tolerance)
    with pytest.raises(WebhookAuthError, match="stale"):
        common.check_window(NOW - tolerance - timedelta(seconds=1), NOW, tolerance)
    with pytest.raises(WebhookAuthError, match="future"):
        common.check_window(NOW + tolerance + timedelta(seconds=1), NOW, tolerance)
    with pytest.raises(ValueError, match="aware"):
        common.check_window(NOW, NOW.replace(tzinfo=None), tolerance)
    other_zone = NOW.astimezone(timezone(timedelta(hours=-7)))
    common.check_window(NOW, other_zone, tolerance)


@pytest.mark.parametrize("value", [None, "", "12a", "-5", "1.5", " 12", "1" * 13, "１２"])
def test_header_unix_time_refuses_anything_but_digits(value: str | None) -> None:
    with pytest.raises(WebhookAuthError):
        common.header_unix_time(value, "x-timestamp header")


@settings(max_examples=100, database=None)
@given(st.text(max_size=20), st.text(max_size=20))
def test_constant_time_equals_is_equality(a: str, b: str) -> None:
    assert common.constant_time_equals(a, b) is (a == b)


def test_load_json_refuses_non_json() -> None:
    assert common.load_json(b'{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}
    for body in (b"", b"{", b"NaN", b"[Infinity]", b"\xff", b"[" * 100_000):
        with pytest.raises(MalformedPayload):
            common.load_json(body)


def test_field_helpers_name_the_field() -> None:
    obj = {"s": "x", "n": 1, "o": {}, "l": [], "e": "", "z": None}
    assert common.req_str(obj, "s", "ev") == "x"
    assert common.opt_str(obj, "z", "ev") is None
    assert common.opt_obj(obj, "z") is None
    assert common.opt_list(obj, "l") == []
    for call, message in (
        (lambda: common.req_str(obj, "n", "ev"), "'ev.n' must be a string"),
        (lambda: common.req_str(obj, "e", "ev"), "'ev.e' is empty"),
        (lambda: common.req_str(obj, "missing", "ev"), "missing field 'ev.missing'"),
        (lambda: common.opt_str(obj, "o"), "'o' must be a string"),
        (lambda: common.req_obj(obj, "l"), "'l' must be an object"),
        (lambda: common.req_list(obj, "o"), "'o' must be a list"),
        (lambda: common.req_list(obj, "z"), "missing field 'z'"),
    ):
        with pytest.raises(MalformedPayload, match=message):
            call()


def test_metadata_ref_and_split_keys() -> None:
    assert common.metadata_ref(None, "m") is None
    assert common.metadata_ref({"gateway_email_id": ""}, "m") is None
    assert common.metadata_ref({"gateway_email_id": "e-1"}, "m") == "e-1"
    with pytest.raises(MalformedPayload, match="m.gateway_email_id"):
        common.metadata_ref({"gateway_email_id": 1}, "m")
    assert common.split_keys("k", ["a@x"]) == [("k", "a@x")]
    assert common.split_keys("k", [None]) == [("k", None)]
    assert common.split_keys("k", ["a@x", "b@x"]) == [("k:a@x", "a@x"), ("k:b@x", "b@x")]


def test_ses_bounce_categories() -> None:
    assert common.ses_bounce_category("Permanent", "General") is FailureCategory.HARD_BOUNCE
    assert common.ses_bounce_category("Permanent", None) is FailureCategory.HARD_BOUNCE
    assert common.ses_bounce_category("Transient", "MailboxFull") is FailureCategory.SOFT_BOUNCE
    assert common.ses_bounce_category("Undetermined", None) is FailureCategory.OTHER
    assert common.ses_bounce_category("Permanent", "NoEmail") is FailureCategory.INVALID_RECIPIENT

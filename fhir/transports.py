"""Outbound HTTP for notifications: one POST per request, its answer mapped onto a delivery outcome.

Every request carries ``Idempotency-Key: <the outbox item's key>``, so a receiver can drop the repeat
that at-least-once delivery sometimes sends. Answers map onto :class:`DeliveryError` like this:

======================================  =============================================================
answer                                  outcome
======================================  =============================================================
2xx                                     delivered
408, 425, 429, 5xx                      retried; ``Retry-After`` (seconds or an HTTP date, at most a
                                        day) sets the earliest next attempt
connection refused, timeout, TLS error  retried
3xx (redirects are not followed), any   permanent: the item is dead-lettered at once, because sending
other 4xx                               the same request again cannot succeed
an address that is not http(s)          permanent
======================================  =============================================================

Handover notices (notified pull, FHIR messages) are built on this in :mod:`zorgpad.fhir.handovers`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx
from zorgpad.engine.clock import utc
from zorgpad.engine.outbox import DeliveryError

#: Seconds to wait for a receiver: connecting, and the whole exchange.
CONNECT_TIMEOUT = 5.0
TIMEOUT = 10.0
#: The longest wait a receiver's Retry-After can ask for.
MAX_RETRY_AFTER = timedelta(days=1)
_RETRYABLE = frozenset({408, 425, 429})
USER_AGENT = "Zorgpad/0.1.0 (notifications)"


class HTTPSender:
    """POSTs notifications with a short timeout and maps every outcome onto :class:`DeliveryError`."""

    def __init__(self, *, timeout: float = TIMEOUT, connect_timeout: float = CONNECT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self.transport = transport

    def post(self, url: str, now: datetime, *, headers: Mapping[str, str],
             content: bytes | None = None) -> httpx.Response:
        """POST ``content`` (nothing when None) to ``url``; the 2xx response, or a :class:`DeliveryError`."""
        check_address(url)
        try:
            with httpx.Client(timeout=self.timeout, transport=self.transport, follow_redirects=False,
                              headers={"User-Agent": USER_AGENT}) as client:
                response = client.post(url, headers=dict(headers), content=content)
        except httpx.TimeoutException as exc:
            raise DeliveryError(f"POST {url} timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise DeliveryError(f"POST {url} failed: {type(exc).__name__}: {exc}") from exc
        except httpx.InvalidURL as exc:
            raise DeliveryError(f"POST {url}: invalid URL: {exc}", permanent=True) from exc
        status = response.status_code
        if 200 <= status < 300:
            return response
        message = f"POST {url} answered {status} {response.reason_phrase}".rstrip()
        if status in _RETRYABLE or status >= 500:
            raise DeliveryError(message, retry_after=retry_after(response.headers.get("retry-after"), now))
        if 300 <= status < 400:
            message += f" (redirects are not followed; Location: {response.headers.get('location', '-')})"
        raise DeliveryError(message, permanent=True)


def check_address(url: str) -> None:
    """A permanent :class:`DeliveryError` unless ``url`` is an absolute http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DeliveryError(f"{url!r} is not an http(s) URL", permanent=True)


def retry_after(value: str | None, now: datetime) -> timedelta | None:
    """The wait a ``Retry-After`` header asks for (delta-seconds or an HTTP date), capped at a day."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        wait = timedelta(seconds=int(value))
    else:
        try:
            wait = utc(parsedate_to_datetime(value)) - utc(now)
        except (TypeError, ValueError, IndexError):
            return None
    return max(timedelta(0), min(wait, MAX_RETRY_AFTER))

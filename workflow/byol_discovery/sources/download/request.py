"""One HTTP request, its status checked."""

from __future__ import annotations

import contextlib
import http.client
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass

from byol_discovery.sources.download.settings import RETRY_STATUS, DownloadSettings, InvalidResponse
from byol_discovery.sources.download.timing import parse_retry_after
from byol_discovery.sources.download.validation import text_snippet


@dataclass
class _Response:
    status: int
    body: bytes
    retry_after: float | None


def http_get(url: str, settings: DownloadSettings) -> _Response:
    """GET ``url``; network failures become retryable :class:`InvalidResponse`."""
    request = urllib.request.Request(url, headers={"User-Agent": settings.user_agent})
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout) as response:
            return _Response(response.status, response.read(), parse_retry_after(response.headers.get("Retry-After")))
    except urllib.error.HTTPError as error:
        body = b""
        with contextlib.suppress(Exception):  # an error page cut short is still an error
            body = error.read()
        retry_after = parse_retry_after(error.headers.get("Retry-After") if error.headers else None)
        return _Response(error.code, body, retry_after)
    except http.client.IncompleteRead as error:
        raise InvalidResponse(f"connection closed early ({len(error.partial)} bytes read)", False) from error
    except TimeoutError as error:
        raise InvalidResponse(f"timed out after {settings.timeout:g} s", False) from error
    except urllib.error.URLError as error:
        if isinstance(error.reason, (TimeoutError, socket.timeout)):
            raise InvalidResponse(f"timed out after {settings.timeout:g} s", False) from error
        raise InvalidResponse(f"network error: {error.reason}", False) from error
    except (ConnectionError, http.client.HTTPException, OSError) as error:
        raise InvalidResponse(f"network error: {error}", False) from error


def check_status(response: _Response) -> None:
    if response.status == 200:
        return
    snippet = text_snippet(response.body)
    reason = f"HTTP {response.status}" + (f": {snippet}" if snippet else "")
    permanent = response.status not in RETRY_STATUS and not 500 <= response.status < 600
    raise InvalidResponse(reason, permanent=permanent, retry_after=response.retry_after)

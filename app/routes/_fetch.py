"""Fetching a query image from a URL (clip-retrieval's `image_url`), only where the operator
allowed it: `--image-url-hosts` names the hosts, or "*" any host whose every address is public
(no loopback, private, link-local or reserved address: the server is no proxy into its own
network). No redirects (each hop would need the same check), a timeout and a size cap."""

from __future__ import annotations

import ipaddress
import socket
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from ..errors import ApiError

TIMEOUT_S = 10.0


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ARG002
        raise ApiError(
            422, "image_url_refused", f"image_url redirects (HTTP {code}); give the final address"
        )


def _refused(message: str) -> ApiError:
    return ApiError(422, "image_url_refused", message)


def check_url(url: str, allowed: list[str]) -> None:
    """Raise unless `url` is http(s) on an allowed host (see the module docstring)."""
    if not allowed:
        raise _refused(
            "image_url is off on this server: send the image as base64 `image`, or start the "
            "server with --image-url-hosts HOST[,HOST…] (or '*')"
        )
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise _refused("image_url must be an http:// or https:// address")
    if host in allowed:
        return
    if "*" not in allowed:
        raise _refused(f"image_url host {host} is not among this server's --image-url-hosts")
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as e:
        raise _refused(f"image_url host {host} does not resolve ({e})") from None
    for info in infos:
        addr = ipaddress.ip_address(info[4][0])
        if not addr.is_global:
            raise _refused(f"image_url host {host} has the non-public address {addr}")


def fetch_image(url: str, allowed: list[str], max_bytes: int) -> bytes:
    """The bytes at `url` (blocking: run it on a worker thread)."""
    check_url(url, allowed)
    opener = urllib.request.build_opener(_NoRedirect())
    req = urllib.request.Request(url, headers={"User-Agent": "clipsearch"})
    try:
        with opener.open(req, timeout=TIMEOUT_S) as r:
            data = r.read(max_bytes + 1)
    except ApiError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise _refused(f"image_url could not be fetched: {e}") from None
    if len(data) > max_bytes:
        raise ApiError(
            413, "payload_too_large", f"the image at image_url is over {max_bytes:,} bytes"
        )
    return data

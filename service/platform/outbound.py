"""Outbound HTTP to addresses users give us (webhooks), guarded against server-side request forgery.

A user's URL must not make the service reach into its own network: loopback, private ranges, link-local
(cloud metadata at 169.254.169.254), carrier-grade NAT, multicast, reserved and unspecified addresses are
refused, as are IPv4 addresses wrapped in IPv6, unless the operator allows a range (`allow`, CIDRs:
`AGILEGAN_WEBHOOK_ALLOW`). The check is on every address the host name resolves to, and the connection
goes to the address that was checked (no second DNS lookup that could answer differently: DNS rebinding).
A redirect is followed only to an address that passes the same check, at most `max_redirects` times.
Each request has a time cap (connect, each read, and the whole exchange) and reads at most `max_response`
bytes of the answer.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressRefused(Exception):
    """The URL's host is, or resolves to, an address the service may not call."""


class UrlInvalid(ValueError):
    """Not an http(s) URL with a host."""


@dataclass(frozen=True)
class OutboundPolicy:
    allow: tuple[Network, ...] = ()  # ranges the operator allows although they are not public
    timeout_s: float = 5.0  # connect, each read, and the whole exchange
    max_response: int = 64 * 1024
    max_redirects: int = 3

    @classmethod
    def from_cidrs(cls, cidrs: str, **kwargs: float) -> OutboundPolicy:
        """`cidrs`: comma-separated ("127.0.0.0/8,10.1.0.0/16"); ValueError for a malformed one."""
        nets = tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs.split(",") if c.strip())
        return cls(allow=nets, **kwargs)


@dataclass
class Answer:
    status: int | None  # the final HTTP status; None when no answer came
    error: str | None = None  # why there was no (good) answer
    redirects: list[str] = field(default_factory=list)


def check_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path with query) of an http(s) URL; UrlInvalid otherwise."""
    if len(url) > 2048:
        raise UrlInvalid("the URL is longer than 2048 characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UrlInvalid("expected an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise UrlInvalid("credentials in the URL are not accepted; sign with the webhook secret instead")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as e:
        raise UrlInvalid(f"bad port: {e}") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port, path


def allowed(address: Address, policy: OutboundPolicy) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(address in net for net in policy.allow):
        return True
    return address.is_global and not address.is_multicast


def resolve(host: str, port: int, policy: OutboundPolicy) -> str:
    """The address to connect to: every address `host` resolves to must be allowed (AddressRefused)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise AddressRefused(f"{host} does not resolve ({e.strerror})") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    refused = [a for a in addresses if not allowed(a, policy)]
    if refused or not addresses:
        raise AddressRefused(f"{host} resolves to a non-public address ({refused[0] if refused else 'none'})")
    return str(addresses[0])


def post(url: str, body: bytes, headers: dict[str, str], policy: OutboundPolicy) -> Answer:
    """POST `body` to `url` under `policy`, following allowed redirects (a 307/308 repeats the POST; the
    others end it as a failure: a webhook is not re-sent as a GET). Raises AddressRefused, UrlInvalid."""
    deadline = time.monotonic() + policy.timeout_s
    answer = Answer(None)
    for _ in range(policy.max_redirects + 1):
        scheme, host, port, path = check_url(url)
        address = resolve(host, port, policy)
        status, location = _exchange(scheme, host, address, port, path, body, headers, policy, deadline)
        answer.status = status
        if status in (307, 308) and location:
            url = urljoin(url, location)
            answer.redirects.append(url)
            continue
        if 300 <= status < 400:
            answer.error = f"redirect {status} not followed (only 307 and 308 keep the POST)"
        return answer
    answer.error = f"more than {policy.max_redirects} redirects"
    return answer


def _exchange(
    scheme: str,
    host: str,
    address: str,
    port: int,
    path: str,
    body: bytes,
    headers: dict[str, str],
    policy: OutboundPolicy,
    deadline: float,
) -> tuple[int, str | None]:
    """One request to the checked `address` (the Host header and TLS name are `host`): (status, Location)."""
    timeout = max(0.1, min(policy.timeout_s, deadline - time.monotonic()))
    conn: http.client.HTTPConnection
    if scheme == "https":
        conn = _PinnedHTTPS(host, address, port, timeout)
    else:
        conn = _PinnedHTTP(host, address, port, timeout)
    try:
        conn.request("POST", path, body=body, headers={**headers, "Content-Length": str(len(body))})
        response = conn.getresponse()
        read = 0
        while read < policy.max_response and (chunk := response.read(min(8192, policy.max_response - read))):
            read += len(chunk)
            if time.monotonic() > deadline:
                raise TimeoutError("the answer took longer than the time cap")
        return response.status, response.getheader("Location")
    finally:
        conn.close()


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)

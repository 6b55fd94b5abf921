"""Where webhooks may go: public http(s) endpoints only, never the server's own network (SSRF guard).

The same rule holds for the upstream hosts a channel's credentials name (an SMSC's `host`): tenant input
the server connects to. `check_upstream_targets` refuses them when the channel is saved, and the links'
`upstream_target_check` again at each connection, unless the operator allows the host by name
(`OPENMMP_PROVIDERS__ALLOWED_HOSTS`, e.g. the operator's own SMSC on its private network).

A tenant chooses the webhook URL and the server makes the request, so without this guard a tenant could
make the server POST to its loopback services, the private network or the cloud metadata service. The
guard runs when a URL is set (early, clear 400) and again before every delivery batch, because the
name's addresses can change after it was set (DNS rebinding).

The check before a batch resolves the name, and the connection resolves it again, so a resolver can
answer differently in between. The deliverer's HTTP client therefore applies `address_problem` when the
connection is made as well (kit.http `address_check`): to the addresses the name resolves to then, and
to the address each socket connects to, literal IPs included; that connection is refused and recorded
as a failed attempt. Redirects are never followed (kit.http), so a public endpoint cannot bounce a
delivery inward.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Collection
from urllib.parse import urlsplit

from openmmp.errors import Invalid
from openmmp.providers.base import Credentials, TargetCheck
from openmmp.settings import Settings

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

RESOLVE_TIMEOUT_S = 5.0

# Cloud metadata services (AWS/GCP/Azure/OpenStack, AWS IPv6, Alibaba): named so the message says so.
_METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Deprecated IPv6 site-local (RFC 3879): still routed inside some networks, and `ipaddress` calls it global.
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")
_LOCAL_NAMES = ("localhost", "localhost.localdomain")
_LOCAL_SUFFIXES = (".localhost", ".internal")
# RFC 2606 names reserved for documentation: never delegated, so they cannot lead anywhere through
# public DNS. Accepted as placeholders when they do not resolve (see `check_target`).
_DOCUMENTATION_NAMES = ("example", "example.com", "example.net", "example.org")


class TargetRefused(Invalid):
    """A webhook URL the server will not call (400 INVALID, named after the field that carried it)."""

    default_name = "url"


def webhooks_allow_private(settings: Settings) -> bool:
    """Whether webhook URLs may point at private addresses: sandbox mode or the operator's opt-in.

    The opt-in is `OPENMMP_WEBHOOKS__ALLOW_PRIVATE` (its old name `OPENMMP_WEBHOOK_ALLOW_PRIVATE` sets it).
    """
    return settings.sandbox or settings.webhooks.allow_private


def address_problem(address: IpAddress) -> str | None:
    """Why the server must not call `address`, or None when it is a public unicast address."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return address_problem(embedded)
    if address in _METADATA:
        return "a cloud metadata address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private or address in _SITE_LOCAL:
        return "a private address"
    if not address.is_global:
        return "not a public address"
    return None


def _embedded_ipv4(address: IpAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4), which is where packets go."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def _is_documentation_name(host: str) -> bool:
    return any(host == name or host.endswith("." + name) for name in _DOCUMENTATION_NAMES)


def _literal_address(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def _resolve(host: str, port: int) -> list[IpAddress]:
    """The addresses `host` resolves to; raises TargetRefused (message without the field) when it cannot."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=RESOLVE_TIMEOUT_S
        )
    except TimeoutError as exc:
        raise TargetRefused(f"host {host} could not be resolved in time; try again") from exc
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            raise TargetRefused(f"host {host} does not resolve (no such name)") from exc
        if exc.errno == socket.EAI_AGAIN:
            raise TargetRefused(f"host {host} could not be resolved right now; try again") from exc
        raise TargetRefused(f"host {host} could not be resolved ({exc.strerror})") from exc
    except (UnicodeError, OSError) as exc:
        raise TargetRefused(f"host {host} is not a valid host name") from exc
    addresses: list[IpAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        found = _literal_address(str(sockaddr[0]))
        if found is not None:
            addresses.append(found)
    if not addresses:
        raise TargetRefused(f"host {host} has no addresses")
    return addresses


async def check_target(url: str, *, allow_private: bool, name: str = "url") -> None:
    """Refuse (TargetRefused, 400 INVALID named `name`) a URL the server must not POST to.

    Always: only http(s), a host, no credentials in the URL. Unless `allow_private`: the host must not be
    a local name (`localhost`, `*.localhost`, `*.internal`) and must be, or resolve (with the running
    loop's resolver) to, public unicast addresses only: every address it resolves to is checked. A name
    that does not resolve is refused, except the documentation names of RFC 2606 (`example.com`, ...),
    which can never resolve publicly and are accepted as placeholders.
    """
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise TargetRefused(f"not a valid URL: {exc}", name=name) from exc
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("only http:// and https:// URLs can receive webhooks", name=name)
    if not host:
        raise TargetRefused("the URL has no host", name=name)
    if parts.username is not None or parts.password is not None:
        raise TargetRefused(
            "credentials in the URL (user:password@) are not allowed; verify the webhook signature instead",
            name=name,
        )
    if allow_private:
        return
    await _check_host(host, port, name=name, rule="webhooks go to public")


async def _check_host(host: str, port: int, *, name: str, rule: str) -> None:
    """Refuse (TargetRefused named `name`) a host that is local, or is or resolves to an address that is
    not public unicast; `rule` completes the message ("<rule> hosts only" / "<rule> addresses only")."""
    if host in _LOCAL_NAMES or host.endswith(_LOCAL_SUFFIXES):
        raise TargetRefused(f"{host} is a local name; {rule} hosts only", name=name)
    literal = _literal_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = await _resolve(host, port)
        except TargetRefused as refused:
            if _is_documentation_name(host):
                return
            raise TargetRefused(refused.message, name=name) from refused
    for address in addresses:
        problem = address_problem(address)
        if problem is not None:
            shown = host if literal is not None else f"{host} resolves to {address}, which"
            raise TargetRefused(f"{shown} is {problem}; {rule} addresses only", name=name)


def _normal_host(host: str) -> str:
    return host.strip().rstrip(".").lower()


async def check_upstream_targets(credentials: Credentials, *, allowed_hosts: Collection[str]) -> None:
    """Refuse (400 naming `credentials.<field>`) a host a channel's credentials make the server connect
    to (`Credentials.target_fields`, e.g. an SMSC) when it is local or not public, as for webhook URLs;
    a host the operator allows (`OPENMMP_PROVIDERS__ALLOWED_HOSTS`) is accepted as it is."""
    allowed = {_normal_host(h) for h in allowed_hosts}
    for field, host, port in credentials.targets():
        if _normal_host(host) in allowed:
            continue
        await _check_host(
            _normal_host(host), port, name=f"credentials.{field}", rule="the server connects to public"
        )


def upstream_target_check(allowed_hosts: Collection[str]) -> TargetCheck:
    """The `ProviderContext.target_check` for tenants' upstream hosts: the operator's allowed hosts
    (by name or address) pass, any other host only to public unicast addresses."""
    allowed = {_normal_host(h) for h in allowed_hosts}

    def check(host: str, address: IpAddress) -> str | None:
        if _normal_host(host) in allowed or str(address) in allowed:
            return None
        return address_problem(address)

    return check

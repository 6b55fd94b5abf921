"""Connecting to a tenant's own upstream host (an SMSC, an SMTP relay): only where the operator allows.

Credentials name such hosts (`Credentials.targets`); they are checked when the channel is saved, and again
here at every connection, since a name can point elsewhere by then (`ProviderContext.target_check`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from openmmp.kit.http import IpAddress
from openmmp.providers.base import ProviderContext, ProviderError


async def checked_address(ctx: ProviderContext, host: str, port: int, *, code: str) -> str:
    """The first address of `host` that the context's target check allows, resolved within the upstream
    timeout. A retryable `ProviderError` with `code` when none is (the operator may allow it later)."""
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), ctx.http.timeout)
    check = ctx.target_check
    problems = []
    for *_, sockaddr in infos:
        address = str(sockaddr[0])
        problem = check(host, _ip(address)) if check is not None else None
        if problem is None:
            return address
        problems.append(f"{address} is {problem}")
    raise ProviderError(code, f"{host}: " + "; ".join(problems), retryable=True)


def _ip(address: str) -> IpAddress:
    return ipaddress.ip_address(address.split("%", 1)[0])

"""No open API by accident (Redis's "protected mode"): `taskyard api` and `taskyard
standalone` refuse to start on an address other machines can reach while no token is
configured, unless the operator says `TASKYARD_API_OPEN=1` (`--open`).

Loopback addresses (127.0.0.0/8, ::1, and ::ffff:127.x.y.z) and Unix sockets are reachable
from this machine only; anything else, including 0.0.0.0 and ::, is not. A host name counts
as loopback only when every address it resolves to is one.
"""

from __future__ import annotations

import ipaddress
import logging
import socket

from taskyard.entrypoints.config import SETTINGS, ConfigError, Settings

log = logging.getLogger("taskyard.exposure")


def _loopback_address(text: str) -> bool:
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def is_loopback(host: str) -> bool:
    """Whether `host` (an address, `[v6]`, or a name) reaches this machine only.

    >>> [is_loopback(h) for h in ("127.0.0.1", "127.9.9.9", "[::1]", "::ffff:127.0.0.1")]
    [True, True, True, True]
    >>> [is_loopback(h) for h in ("0.0.0.0", "::", "10.1.2.3", "::ffff:10.1.2.3")]
    [False, False, False, False]
    """
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return _loopback_address(text)
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(text, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    addresses = {str(info[4][0]).partition("%")[0] for info in found}
    return bool(addresses) and all(_loopback_address(a) for a in addresses)


def check_exposure(settings: Settings, *, host: str | None, listening: str) -> None:
    """Refuse (a `ConfigError` naming `TASKYARD_API_TOKENS`) to serve without tokens on
    `host` when it is not loopback and the open API was not asked for. `host` None is a
    Unix socket. `listening` is what to show: the address and the setting it came from."""
    if settings.api_tokens or host is None or is_loopback(host):
        return
    if settings.api_open:
        log.warning(
            "serving an open API: no token is needed, and %s is not a loopback address",
            listening,
            extra={"setting": settings.source("api_open")},
        )
        return
    tokens = SETTINGS["api_tokens"].env
    raise ConfigError(
        tokens,
        f"not set, and {listening} is not a loopback address: anyone who can reach it could "
        f"read, submit and cancel jobs; set {tokens}, or {SETTINGS['api_open'].env}=1 "
        f"({SETTINGS['api_open'].flag}) to serve an open API on purpose",
    )

"""A quick reachability check, so offline runs fail at once instead of retrying for minutes."""

from __future__ import annotations

import socket
import threading
import urllib.parse

REACH_TIMEOUT_S = 3.0


def _connects(host: str, port: int, timeout: float) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def host_reachable(url: str, timeout: float = REACH_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the URL's host opens within `timeout` seconds (DNS included)."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    result = []
    # A thread bounds the DNS lookup too, which the socket timeout does not cover.
    thread = threading.Thread(
        target=lambda: result.append(_connects(parts.hostname, port, timeout)), daemon=True
    )
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])

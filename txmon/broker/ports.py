"""Free loopback ports for a broker started on this machine (tests, benchmarks, the demo)."""

from __future__ import annotations

import socket

from txmon.broker.config import CONTROLLER_OFFSET, SECURE_OFFSET


def _free(port: int, host: str) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port_block(brokers: int = 1, host: str = "127.0.0.1") -> int:
    """A base port whose broker, controller and secure-listener ports are all free now."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind((host, 0))
            base = s.getsockname()[1]
        if base + SECURE_OFFSET + brokers >= 65535:
            continue
        offsets = (0, CONTROLLER_OFFSET, SECURE_OFFSET)
        if all(_free(base + o + i, host) for o in offsets for i in range(brokers)):
            return base
    raise RuntimeError("no free block of loopback ports for a broker")

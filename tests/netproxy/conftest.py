"""Fixtures for netproxy tests: real backends on 127.0.1.x:240xx, cleaned up on failure."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from netproxy.testing import HttpBackend, UdpEchoBackend


@pytest.fixture
def http_backend() -> Iterator[Callable[[str, int], HttpBackend]]:
    started: list[HttpBackend] = []

    def start(ip: str, port: int) -> HttpBackend:
        backend = HttpBackend(ip, port)
        started.append(backend)
        return backend

    yield start
    for backend in started:
        backend.stop()


@pytest.fixture
def udp_backend() -> Iterator[Callable[[str, int], UdpEchoBackend]]:
    started: list[UdpEchoBackend] = []

    def start(ip: str, port: int) -> UdpEchoBackend:
        backend = UdpEchoBackend(ip, port)
        started.append(backend)
        return backend

    yield start
    for backend in started:
        backend.stop()

"""Shared fixtures: a clean environment, the real knowledge base, and no network but loopback."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.assistant import Assistant
from bot.knowledge import KnowledgeBase, load
from bot.store import MemoryStore

ROOT = Path(__file__).resolve().parent.parent
KNOWLEDGE = ROOT / "knowledge"
SHARED = ROOT.parent / "shared"

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check_address(sock: socket.socket, address: object) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    host = address[0] if isinstance(address, tuple) else address
    try:
        loopback = ipaddress.ip_address(str(host)).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise RuntimeError(f"test tried to reach {host!r}; only loopback is allowed")


def _guarded_connect(self: socket.socket, address: object) -> None:
    _check_address(self, address)
    _real_connect(self, address)  # type: ignore[arg-type]


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _check_address(self, address)
    return _real_connect_ex(self, address)  # type: ignore[arg-type]


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    import os

    for name in list(os.environ):
        if name.startswith(("LINE_", "SLACK_", "MADOGUCHI_")):
            monkeypatch.delenv(name)
    # Settings read .env from the working directory; tests must not pick up a developer's file.
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    return load(KNOWLEDGE)


@pytest.fixture
def assistant(kb: KnowledgeBase) -> Assistant:
    return Assistant(kb, MemoryStore())

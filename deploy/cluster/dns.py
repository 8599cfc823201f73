"""One DNS question to the cluster's DNS Service, asked from inside the namespace."""

from __future__ import annotations

import secrets
import socket
import struct

from deploy.cluster import netns
from deploy.cluster.layout import DNS_SERVICE_IP


def _query(name: str) -> tuple[int, bytes]:
    ident = secrets.randbits(16)
    header = struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0)  # recursion desired, 1 question
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    return ident, header + labels + b"\0" + struct.pack(">HH", 1, 1)  # type A, class IN


def _addresses(reply: bytes, question_length: int) -> list[str]:
    answers = struct.unpack(">H", reply[6:8])[0]
    offset, found = question_length, []
    for _ in range(answers):
        offset += 2 if reply[offset] & 0xC0 == 0xC0 else reply.index(b"\0", offset) + 1 - offset
        kind, _cls, _ttl, length = struct.unpack(">HHIH", reply[offset : offset + 10])
        offset += 10
        if kind == 1 and length == 4:
            found.append(socket.inet_ntoa(reply[offset : offset + 4]))
        offset += length
    return found


def resolve(name: str, server: str = DNS_SERVICE_IP, timeout_s: float = 2.0) -> list[str]:
    """A records of ``name`` from ``server`` (empty when it has none or does not answer)."""
    ident, query = _query(name)

    def ask() -> list[str]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout_s)
            try:
                sock.sendto(query, (server, 53))
                reply, _ = sock.recvfrom(4096)
            except OSError:
                return []
        if struct.unpack(">H", reply[:2])[0] != ident:
            return []
        return _addresses(reply, len(query))

    return netns.call_inside(ask)


def answers(name: str, expected: str) -> bool:
    return expected in resolve(name)

"""API-key authentication with scopes.

Keys live in a YAML file as SHA-256 hashes. A presented key is hashed and compared
against every stored hash with :func:`hmac.compare_digest`, so neither the compare
nor an early exit tells an attacker how close a guess was.

    python -m gateway.auth hash 'a-new-secret'   # prints the sha256 to store
"""

from __future__ import annotations

import hashlib
import hmac
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from servoscope.problems import Problem

SCOPES = ("read", "write", "admin")


@dataclass(frozen=True)
class ApiKey:
    name: str
    digest: bytes
    scopes: frozenset[str]


class KeyStore:
    def __init__(self, keys: list[ApiKey]) -> None:
        self.keys = keys

    @classmethod
    def from_file(cls, path: Path) -> KeyStore:
        data = yaml.safe_load(path.read_text()) or {}
        keys = []
        for index, entry in enumerate(data.get("keys", [])):
            where = f"{path}: keys[{index}]"
            try:
                digest = bytes.fromhex(entry["sha256"])
                scopes = frozenset(entry["scopes"])
                name = str(entry["name"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(
                    f"{where}: needs name, sha256 (64 hex digits) and scopes ({exc})"
                ) from None
            if len(digest) != 32 or not scopes <= set(SCOPES):
                raise ValueError(f"{where}: sha256 must be 64 hex digits, scopes among {SCOPES}")
            keys.append(ApiKey(name, digest, scopes))
        return cls(keys)

    def authenticate(self, authorization: str | None) -> ApiKey:
        """The key behind an ``Authorization: Bearer`` header, or a 401 problem."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("send `Authorization: Bearer <api key>`")
        digest = hashlib.sha256(token.strip().encode()).digest()
        found = None
        for key in self.keys:
            if hmac.compare_digest(key.digest, digest):
                found = key
        if found is None:
            raise unauthorized("the API key is not valid")
        return found


def unauthorized(detail: str) -> Problem:
    return Problem(
        401,
        "Unauthorized",
        detail,
        slug="unauthorized",
        headers={"WWW-Authenticate": 'Bearer realm="servoscope"'},
    )


def require_scope(key: ApiKey, scope: str) -> None:
    if scope not in key.scopes:
        raise Problem(
            403,
            "Forbidden",
            f"this API key lacks the {scope!r} scope; it has {sorted(key.scopes)}",
            slug="forbidden",
        )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "hash":
        print(hashlib.sha256(sys.argv[2].encode()).hexdigest())
    else:
        sys.exit("usage: python -m gateway.auth hash '<api key>'")

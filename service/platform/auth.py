"""API keys with roles: `client` (stylize and its own jobs) and `operator` (also styles, all jobs).

Keys come from settings (`AGILEGAN_API_KEYS` as key:role pairs, or a file of sha256 hashes). Only
the sha256 of each key is kept in memory; a presented key is hashed and compared with every stored
hash in constant time. `ensure_operator_key` gives a fresh install one operator key, kept in the
data directory, so that `make run` works without configuration.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from service.platform.settings import ROLES, Settings

OPERATOR_KEY_FILE = "operator.key"


@dataclass(frozen=True)
class Principal:
    key_id: str  # first 16 hex of the key's sha256: identifies the owner without revealing the key
    role: str

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"


def bearer_key(header: str) -> str | None:
    """The key of an `Authorization: Bearer KEY` header; None for any other shape."""
    scheme, _, key = header.partition(" ")
    return key.strip() or None if scheme.lower() == "bearer" else None


def refusal_message(header: str) -> str:
    """Why a request's Authorization header was refused, for the 401 body: missing, not of the
    `Bearer KEY` shape (a raw key, another scheme), or a key nobody issued. The key is never echoed."""
    if not header:
        return "missing API key: send 'Authorization: Bearer KEY'"
    if bearer_key(header) is None:
        return "malformed Authorization header: it must be 'Bearer KEY' (the word Bearer, a space, then the key)"
    return "unknown API key"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    def __init__(self, hashed: dict[str, str]) -> None:
        self._hashed = hashed  # sha256 hex → role

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyStore:
        hashed: dict[str, str] = {}
        for pair in filter(None, (p.strip() for p in settings.api_keys.split(","))):
            key, _, role = pair.rpartition(":")
            hashed[digest(key)] = role
        if settings.api_keys_file is not None:
            for n, line in enumerate(Path(settings.api_keys_file).read_text().splitlines(), 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                value, _, role = line.rpartition(":")
                if len(value) != 64 or role not in ROLES:
                    raise ValueError(f"{settings.api_keys_file}:{n}: expected 'sha256-hex:role'")
                hashed[value.lower()] = role
        operator_file = settings.data_dir / OPERATOR_KEY_FILE
        if operator_file.is_file():
            hashed[digest(operator_file.read_text().strip())] = "operator"
        return cls(hashed)

    def __len__(self) -> int:
        return len(self._hashed)

    def authenticate(self, key: str) -> Principal | None:
        presented = digest(key)
        role = None
        for stored, stored_role in self._hashed.items():  # no early exit: constant time over all keys
            if hmac.compare_digest(stored, presented):
                role = stored_role
        return Principal(presented[:16], role) if role else None


def ensure_operator_key(settings: Settings) -> str | None:
    """With no keys configured, create (once) and return an operator key kept in the data directory."""
    if settings.api_keys or settings.api_keys_file or settings.auth_disabled:
        return None
    path = settings.data_dir / OPERATOR_KEY_FILE
    if path.is_file():
        return path.read_text().strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = "agl_" + secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key

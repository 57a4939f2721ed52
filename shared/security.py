"""Officers' passwords and tokens: scrypt-hashed passwords, HMAC-signed bearer tokens with an expiry."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path

from shared.settings import Settings

SCRYPT = {"n": 2**14, "r": 8, "p": 1}


class InvalidToken(ValueError):
    """A token that is forged, damaged or expired."""


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def check_password(password: str, stored: str) -> bool:
    scheme, salt, digest = stored.split("$")
    if scheme != "scrypt":
        return False
    found = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), **SCRYPT)
    return hmac.compare_digest(found, base64.b64decode(digest))


def secret_key(settings: Settings) -> bytes:
    """THIDUA_SECRET_KEY, or a key kept in <var_dir>/secret.key for the embedded mode (made on first use)."""
    if settings.secret_key:
        return settings.secret_key.get_secret_value().encode()
    path = Path(settings.var_dir) / "secret.key"
    if not path.exists():
        # Written aside, then linked in place: processes starting together all end up with the same key.
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f"secret.key.{os.getpid()}")
        draft.write_text(secrets.token_hex(32))
        draft.chmod(0o600)
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip().encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_token(key: bytes, claims: dict[str, str], lifetime_seconds: int) -> str:
    body = _b64(json.dumps({**claims, "exp": int(time.time()) + lifetime_seconds}, sort_keys=True).encode())
    return body + "." + _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())


def read_token(key: bytes, token: str) -> dict[str, str]:
    """The claims of a token this deployment signed; InvalidToken otherwise."""
    body, _, mac = token.partition(".")
    expected = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    if not mac or not hmac.compare_digest(mac, expected):
        raise InvalidToken("the token is not one this deployment signed")
    claims = json.loads(_unb64(body))
    if int(claims.get("exp", 0)) < time.time():
        raise InvalidToken("the token has expired: sign in again")
    return {k: v for k, v in claims.items() if k != "exp"}

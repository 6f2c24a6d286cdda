"""Webhook signing secrets at rest: Fernet tokens under a key derived from SECRET_KEY, so a database dump or a
backup alone cannot sign a delivery. SECRET_KEY_FALLBACKS still decrypt, so SECRET_KEY rotates the Django way."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

# Changing either gives a different key, and every stored secret becomes unreadable: they are fixed for good.
_SALT = b"docket.webhooks"
_INFO = b"webhook signing secret v1"


class SecretUnreadable(Exception):
    """The stored token decrypts under neither SECRET_KEY nor any of SECRET_KEY_FALLBACKS (the key it was
    written under is gone, or the row was altered)."""


def _fernet(secret_key: str | bytes) -> Fernet:
    material = secret_key.encode() if isinstance(secret_key, str) else secret_key  # Django allows either
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=_INFO).derive(material)
    return Fernet(base64.urlsafe_b64encode(key))


def _keys() -> list[str | bytes]:
    return [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]


def secret_encrypt(secret: str) -> str:
    """The token to store for `secret`, under SECRET_KEY."""
    if not secret:
        raise ValueError("A webhook signing secret cannot be empty.")
    return _fernet(settings.SECRET_KEY).encrypt(secret.encode()).decode()


def secret_decrypt(token: str) -> tuple[str, bool]:
    """The clear secret of a stored token, and whether it was written under a key other than SECRET_KEY (a
    fallback), so the caller may store it again under the current key."""
    keys = _keys()
    try:
        clear = _fernet(keys[0]).decrypt(token.encode())
        return clear.decode(), False
    except InvalidToken:
        pass
    fallbacks = [_fernet(key) for key in keys[1:]]
    if fallbacks:
        try:
            return MultiFernet(fallbacks).decrypt(token.encode()).decode(), True
        except InvalidToken:
            pass
    raise SecretUnreadable(
        "The webhook's signing secret cannot be decrypted with SECRET_KEY or SECRET_KEY_FALLBACKS: the key it "
        "was stored under is no longer configured. Put that key back in SECRET_KEY_FALLBACKS, or delete the "
        "webhook and register it again (its receiver gets a new secret)."
    )

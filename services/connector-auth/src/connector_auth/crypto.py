"""Token encryption at rest: AES-256-GCM with key ids, so keys rotate without re-connecting.

Each ciphertext is bound (as associated data) to the account and the field it belongs to, so
a ciphertext copied into another account's document does not decrypt.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class KeyConfigError(ValueError):
    """The configured key list is unusable."""


class TokenDecryptError(Exception):
    """A stored token cannot be decrypted (unknown key id, or data altered)."""


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def generate_key_spec(kid: str) -> str:
    """A fresh `kid:key` entry for the CONNECTOR_AUTH_TOKEN_KEYS setting."""
    return f"{kid}:{_b64e(AESGCM.generate_key(bit_length=256))}"


@dataclass(frozen=True)
class TokenCipher:
    """Encrypts with the active key; decrypts with whichever key id a ciphertext names."""

    keys: dict[str, bytes]
    active_kid: str

    @classmethod
    def from_spec(cls, spec: str) -> TokenCipher:
        """Parse "kid:base64url(32 bytes),kid2:..."; the first entry is the active key."""
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for entry in (e.strip() for e in spec.split(",")):
            if not entry:
                continue
            kid, sep, material = entry.partition(":")
            if not sep or not kid:
                raise KeyConfigError("each token key must be 'kid:base64key'")
            key = _b64d(material)
            if len(key) != 32:
                raise KeyConfigError(f"token key {kid} must be 32 bytes")
            keys[kid] = key
            order.append(kid)
        if not order:
            raise KeyConfigError("no token encryption key configured")
        return cls(keys, order[0])

    def encrypt(self, plaintext: str, context: str) -> dict[str, Any]:
        """A document fragment {kid, n, ct}; `context` names the account and the field."""
        nonce = os.urandom(12)
        ct = AESGCM(self.keys[self.active_kid]).encrypt(nonce, plaintext.encode(), context.encode())
        return {"kid": self.active_kid, "n": _b64e(nonce), "ct": _b64e(ct)}

    def decrypt(self, sealed: dict[str, Any], context: str) -> str:
        """The plaintext of a fragment made by `encrypt` with the same context."""
        key = self.keys.get(str(sealed.get("kid")))
        if key is None:
            raise TokenDecryptError(f"no key with id {sealed.get('kid')!r}")
        try:
            return (
                AESGCM(key)
                .decrypt(_b64d(sealed["n"]), _b64d(sealed["ct"]), context.encode())
                .decode()
            )
        except (InvalidTag, KeyError, ValueError) as exc:
            raise TokenDecryptError("stored token failed authentication") from exc

    def is_current(self, sealed: dict[str, Any]) -> bool:
        """False when the fragment was made with a key that is no longer the active one."""
        return sealed.get("kid") == self.active_kid

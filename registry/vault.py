"""Identity numbers at rest: AES-GCM ciphertext plus a keyed HMAC for look-up.

A bare hash of an identity number is no protection (about 10^11 possible numbers
brute-force in minutes), so look-ups use HMAC-SHA256 under a secret key and the number
itself is encrypted. The keys live in a file outside the database (mode 600).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from registry.models import RegistryMeta
from registry.settings import RegistryError

NONCE_BYTES = 12
FINGERPRINT_KEY = "key_fingerprint"


@dataclass(frozen=True)
class IdentityVault:
    """Encrypts, decrypts and HMACs identity numbers with keys kept outside the database."""

    cipher_key: bytes
    hmac_key: bytes

    @cached_property
    def _aesgcm(self) -> AESGCM:
        """One cipher object for all rows: building one per row costs more than the work."""
        return AESGCM(self.cipher_key)

    def lookup_key(self, id_number: str) -> bytes:
        """Deterministic keyed HMAC: the same number always gives the same look-up key."""
        return hmac.digest(self.hmac_key, id_number.encode("ascii"), "sha256")

    def encrypt(self, id_number: str, lookup_key: bytes) -> bytes:
        """Nonce + AES-GCM ciphertext, bound to its row's look-up key as associated data."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aesgcm.encrypt(nonce, id_number.encode(), lookup_key)

    def decrypt(self, blob: bytes, lookup_key: bytes) -> str:
        try:
            plain = self._aesgcm.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], lookup_key)
        except InvalidTag:
            raise RegistryError("identity number cannot be decrypted with this key") from None
        return plain.decode()

    @property
    def fingerprint(self) -> str:
        """Identifies the key pair without revealing it, to catch a wrong key file early."""
        digest = hmac.new(self.hmac_key, b"registry-key-check", hashlib.sha256)
        digest.update(hashlib.sha256(self.cipher_key).digest())
        return digest.hexdigest()[:32]


def create_key_file(path: Path) -> bool:
    """Write new random keys to ``path`` (mode 600) unless it exists; True if created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = {
        "cipher_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        "hmac_key": base64.b64encode(secrets.token_bytes(32)).decode(),
    }
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as out:
        json.dump(keys, out)
    return True


def load_vault(path: Path) -> IdentityVault:
    """Read the key file, refusing one that other users can read."""
    if not path.exists():
        raise RegistryError(
            f"key file {path} does not exist: run `registry db up` (embedded database) or "
            "`registry db migrate` (DATABASE_URL) to create it, or set REGISTRY_KEY_FILE"
        )
    if path.stat().st_mode & 0o077:
        raise RegistryError(f"key file {path} is readable by others: run chmod 600 {path}")
    try:
        keys = json.loads(path.read_text())
        vault = IdentityVault(
            base64.b64decode(keys["cipher_key"], validate=True),
            base64.b64decode(keys["hmac_key"], validate=True),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise RegistryError(f"key file {path} is not a valid key file: {exc}") from None
    if len(vault.cipher_key) != 32 or len(vault.hmac_key) != 32:
        raise RegistryError(f"key file {path} must hold two 32-byte keys")
    return vault


def bind_vault(session: Session, vault: IdentityVault, key_path: Path) -> None:
    """Record the key fingerprint on first use; refuse keys that differ from the recorded ones.

    Mixing keys would make HMAC look-ups miss and duplicate every person.
    """
    recorded = session.scalar(select(RegistryMeta.value).where(RegistryMeta.key == FINGERPRINT_KEY))
    if recorded is None:
        session.execute(
            insert(RegistryMeta)
            .values(key=FINGERPRINT_KEY, value=vault.fingerprint)
            .on_conflict_do_nothing()
        )
    elif recorded != vault.fingerprint:
        raise RegistryError(
            f"key file {key_path} does not match the keys this database's identity numbers "
            "were stored with; use the original key file (REGISTRY_KEY_FILE)"
        )

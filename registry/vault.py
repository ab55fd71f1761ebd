"""Identity numbers at rest: AES-GCM ciphertext plus a keyed HMAC for look-up.

A bare hash of an identity number is no protection (about 10^11 possible numbers
brute-force in minutes), so look-ups use HMAC-SHA256 under a secret key and the number
itself is encrypted. The keys live in a file outside the database (mode 600).

The key file holds numbered versions of the key pair, so keys can be rotated without
downtime (``registry keys rotate``, registry/keys.py): each person row records the
version that encrypted it, new rows use the current version, and look-ups try every
version while rows exist under more than one. The original form of the file, one
unnumbered pair, is version 1.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import exists, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from registry.models import Person, RegistryMeta
from registry.settings import RegistryError

NONCE_BYTES = 12
KEY_BYTES = 32
MAX_VERSION = 32767  # person.key_version is a smallint
FINGERPRINT_KEY = "key_fingerprint"  # the current version's fingerprint
VERSION_FINGERPRINT_PREFIX = FINGERPRINT_KEY + ":"  # then the version: one row per version


@dataclass(frozen=True)
class KeyPair:
    """One version of the keys: AES-256-GCM for the number, HMAC-SHA256 for look-up."""

    cipher_key: bytes = field(repr=False)
    hmac_key: bytes = field(repr=False)

    @staticmethod
    def generate() -> KeyPair:
        return KeyPair(secrets.token_bytes(KEY_BYTES), secrets.token_bytes(KEY_BYTES))

    @cached_property
    def aesgcm(self) -> AESGCM:
        """One cipher object for all rows: building one per row costs more than the work."""
        return AESGCM(self.cipher_key)

    def lookup_key(self, id_number: str) -> bytes:
        return hmac.digest(self.hmac_key, id_number.encode("ascii"), "sha256")

    @property
    def fingerprint(self) -> str:
        """Identifies the key pair without revealing it, to catch a wrong key file early."""
        digest = hmac.new(self.hmac_key, b"registry-key-check", hashlib.sha256)
        digest.update(hashlib.sha256(self.cipher_key).digest())
        return digest.hexdigest()[:32]

    def as_json(self) -> dict[str, str]:
        return {
            "cipher_key": base64.b64encode(self.cipher_key).decode(),
            "hmac_key": base64.b64encode(self.hmac_key).decode(),
        }


@dataclass(frozen=True)
class IdentityVault:
    """Encrypts, decrypts and HMACs identity numbers with keys kept outside the database.

    ``keys`` maps each version to its pair; new rows use ``current``.
    """

    keys: Mapping[int, KeyPair]
    current: int

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise RegistryError(f"key version {self.current} is not among the keys")

    @cached_property
    def versions(self) -> tuple[int, ...]:
        """Every version, the current one first, then the others newest first."""
        others = sorted((v for v in self.keys if v != self.current), reverse=True)
        return (self.current, *others)

    @cached_property
    def _current(self) -> KeyPair:
        return self.keys[self.current]

    def pair(self, version: int) -> KeyPair:
        try:
            return self.keys[version]
        except KeyError:
            raise RegistryError(f"the key file has no key version {version}") from None

    def lookup_key(self, id_number: str) -> bytes:
        """Deterministic keyed HMAC under the current version: what new rows store."""
        return hmac.digest(self._current.hmac_key, id_number.encode("ascii"), "sha256")

    def lookup_keys(self, id_number: str) -> list[bytes]:
        """The look-up key under every version, current first: a person's row carries
        one of them whichever version it was written under."""
        data = id_number.encode("ascii")
        return [hmac.digest(self.keys[v].hmac_key, data, "sha256") for v in self.versions]

    def encrypt(self, id_number: str, lookup_key: bytes) -> bytes:
        """Nonce + AES-GCM ciphertext under the current version, bound to its row's
        look-up key as associated data."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._current.aesgcm.encrypt(nonce, id_number.encode(), lookup_key)

    def decrypt(self, blob: bytes, lookup_key: bytes, version: int | None = None) -> str:
        """The number of a row written under ``version`` (the row's ``key_version``;
        the current version if not given)."""
        pair = self._current if version is None else self.pair(version)
        try:
            plain = pair.aesgcm.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], lookup_key)
        except InvalidTag:
            raise RegistryError("identity number cannot be decrypted with this key") from None
        return plain.decode()

    @property
    def fingerprint(self) -> str:
        """The current version's fingerprint."""
        return self._current.fingerprint

    @property
    def fingerprints(self) -> dict[int, str]:
        return {version: pair.fingerprint for version, pair in self.keys.items()}


def create_key_file(path: Path) -> bool:
    """Write new random keys to ``path`` (mode 600) unless it exists; True if created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = KeyPair.generate().as_json()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as out:
        json.dump(keys, out)
    return True


def write_key_file(path: Path, vault: IdentityVault) -> Path | None:
    """Replace the key file atomically with ``vault``'s keys; return the backup made of
    the previous file (mode 600, never overwritten), if there was one.

    Losing the keys loses every identity number, so the new file is written and synced
    beside the old one and renamed over it: a crash leaves one or the other, whole.
    """
    document = {
        "current": vault.current,
        "keys": {str(v): vault.keys[v].as_json() for v in sorted(vault.keys)},
    }
    backup = None
    if path.exists():
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        backup = path.with_name(f"{path.name}.{stamp}.bak")
        _write_private(backup, path.read_bytes())
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        _write_private(temporary, json.dumps(document).encode())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    _sync_directory(path.parent)
    return backup


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist) mode 600 with ``data``, synced to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
        document = json.loads(path.read_text())
        if "keys" in document:
            current = int(document["current"])
            keys = {int(v): _key_pair(pair) for v, pair in document["keys"].items()}
        else:  # the original, unversioned form
            current, keys = 1, {1: _key_pair(document)}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RegistryError(f"key file {path} is not a valid key file: {exc}") from None
    if any(len(p.cipher_key) != KEY_BYTES or len(p.hmac_key) != KEY_BYTES for p in keys.values()):
        raise RegistryError(f"key file {path} must hold 32-byte keys")
    if not keys or not all(1 <= v <= MAX_VERSION for v in keys):
        raise RegistryError(f"key file {path} must number its keys from 1 to {MAX_VERSION}")
    if current not in keys:
        raise RegistryError(f"key file {path} has no keys for its current version {current}")
    if current != max(keys):
        raise RegistryError(f"key file {path}: the current version must be its newest")
    return IdentityVault(keys, current)


def _key_pair(entry: Any) -> KeyPair:
    return KeyPair(
        base64.b64decode(entry["cipher_key"], validate=True),
        base64.b64decode(entry["hmac_key"], validate=True),
    )


@dataclass(frozen=True)
class RecordedKeys:
    """The key fingerprints a database has recorded in ``registry_meta``."""

    current: str | None  # ``key_fingerprint``
    stored: dict[int, str]  # ``key_fingerprint:<version>``

    @property
    def versions(self) -> dict[int, str]:
        """Each version's fingerprint. A database bound before key files had versions
        records only ``key_fingerprint``: that is version 1."""
        if not self.stored and self.current is not None:
            return {1: self.current}
        return self.stored

    @property
    def newest(self) -> int | None:
        return max(self.versions, default=None)


def recorded_keys(session: Session, *, lock: bool = False) -> RecordedKeys:
    """The fingerprints this database has recorded.

    With ``lock``, the ``key_fingerprint`` row is held FOR SHARE until the transaction
    ends: a rotation updates that row when it adds a version, so it waits for the loads
    that checked their keys before, and the loads after see the new version.
    """
    if lock:
        session.execute(
            select(RegistryMeta.key)
            .where(RegistryMeta.key == FINGERPRINT_KEY)
            .with_for_update(read=True)
        )
    rows = dict(
        session.execute(
            select(RegistryMeta.key, RegistryMeta.value).where(
                (RegistryMeta.key == FINGERPRINT_KEY)
                | RegistryMeta.key.startswith(VERSION_FINGERPRINT_PREFIX, autoescape=True)
            )
        ).all()
    )
    current = rows.pop(FINGERPRINT_KEY, None)
    stored = {int(key.removeprefix(VERSION_FINGERPRINT_PREFIX)): v for key, v in rows.items()}
    return RecordedKeys(current, stored)


def version_in_use(session: Session, version: int) -> bool:
    """Whether any person row is still encrypted under ``version``."""
    return bool(session.scalar(select(exists().where(Person.key_version == version))))


def bind_vault(
    session: Session, vault: IdentityVault, key_path: Path, *, writing: bool = True
) -> None:
    """Check the key file against the fingerprints this database recorded, and record
    those of any version it has that the database does not.

    Mixing keys would make HMAC look-ups miss and duplicate every person, and a key file
    without a version that rows still use could neither find nor decrypt them. The
    newest recorded version must be in the file (new rows are written with it); an
    older one may be absent only if no row uses it any more. A ``writing`` session (a
    load) holds the fingerprint row until it ends, so that a rotation waits for it; a
    reader passes ``writing=False``, which checks without recording or locking.
    """
    recorded = recorded_keys(session, lock=writing)
    check_keys(session, vault, key_path, recorded)
    if not writing:
        return
    rows = {
        f"{VERSION_FINGERPRINT_PREFIX}{version}": fingerprint
        for version, fingerprint in vault.fingerprints.items()
        if version not in recorded.stored
    }
    if recorded.current is None:
        rows[FINGERPRINT_KEY] = vault.fingerprint
    for key, fingerprint in sorted(rows.items()):
        session.execute(
            insert(RegistryMeta).values(key=key, value=fingerprint).on_conflict_do_nothing()
        )


def check_keys(
    session: Session, vault: IdentityVault, key_path: Path, recorded: RecordedKeys
) -> None:
    """Raise :class:`RegistryError` unless ``vault`` can read and extend this database."""
    fingerprints = vault.fingerprints
    for version, fingerprint in sorted(recorded.versions.items()):
        if version in fingerprints and fingerprints[version] != fingerprint:
            raise RegistryError(
                f"key file {key_path} does not match the keys this database's identity "
                f"numbers were stored with (version {version} differs); use the original "
                "key file (REGISTRY_KEY_FILE)"
            )
    newest = recorded.newest
    if newest is None:
        return
    if newest not in fingerprints:
        raise RegistryError(
            f"key file {key_path} lacks key version {newest}, the newest this database "
            "uses: use the key file that `registry keys rotate` wrote (REGISTRY_KEY_FILE)"
        )
    if vault.current < newest:
        raise RegistryError(
            f"key file {key_path} has current version {vault.current}, older than version "
            f"{newest} that this database already uses"
        )
    for version in sorted(set(recorded.versions) - set(fingerprints)):
        if version_in_use(session, version):
            raise RegistryError(
                f"key file {key_path} lacks key version {version}, which identity numbers "
                "in this database still use: restore it from a backup of the key file"
            )

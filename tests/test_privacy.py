"""Identity numbers at rest: encrypted, looked up by keyed HMAC, never in clear."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from sqlalchemy import select, text

from registry.bundle.load import load_bundle
from registry.idnumber import mask
from registry.models import Person
from registry.settings import RegistryError
from registry.vault import bind_vault, create_key_file, load_vault

from hand_bundle import EMPLOYEES, RESIDENTS, write_hand_bundle

TABLES = (
    "community",
    "building",
    "address",
    "room",
    "person",
    "residence",
    "organization",
    "employment",
    "import_log",
)


def test_identity_numbers_are_never_stored_in_clear(session, vault, tmp_path: Path):
    load_bundle(session, write_hand_bundle(tmp_path / "hand"), vault)
    session.flush()
    numbers = [r[0] for r in RESIDENTS] + [e[0] for e in EMPLOYEES]
    for table in TABLES:
        # every row as text, bytea included in hex, so a clear or hex-encoded number shows
        for (row,) in session.execute(text(f"SELECT t::text FROM {table} t")):
            for number in numbers:
                assert number not in row, table
                assert number.encode().hex() not in row, table
                assert hashlib.sha256(number.encode()).hexdigest() not in row, table

    for person in session.scalars(select(Person)):
        number = vault.decrypt(person.id_cipher, person.id_hmac)
        assert number in numbers
        assert person.id_hmac == vault.lookup_key(number)
        assert person.id_tail == number[-4:]
    found = session.scalar(
        select(Person.name).where(Person.id_hmac == vault.lookup_key(numbers[0]))
    )
    assert found == RESIDENTS[0][1]


def test_mask_shows_only_the_last_four():
    assert mask("42011119800101001X") == "**************001X"


def test_another_key_file_is_refused(session, vault, tmp_path: Path):
    bind_vault(session, vault, tmp_path / "first.json")
    other_path = tmp_path / "other.json"
    create_key_file(other_path)
    with pytest.raises(RegistryError, match="does not match the keys"):
        bind_vault(session, load_vault(other_path), other_path)
    bind_vault(session, vault, tmp_path / "first.json")  # the right key is still accepted


def test_key_file_must_be_private(tmp_path: Path):
    path = tmp_path / "keys.json"
    assert create_key_file(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert not create_key_file(path)  # never overwritten
    os.chmod(path, 0o644)
    with pytest.raises(RegistryError, match="readable by others"):
        load_vault(path)
    with pytest.raises(RegistryError, match="does not exist"):
        load_vault(tmp_path / "missing.json")


def test_cli_load_with_wrong_key_fails_cleanly(cli, registry_env, tmp_path: Path, monkeypatch):
    bundle = write_hand_bundle(tmp_path / "hand")
    assert cli("load", bundle).exit_code == 0
    other = tmp_path / "other.json"
    create_key_file(other)
    monkeypatch.setenv("REGISTRY_KEY_FILE", str(other))
    result = cli("load", bundle)
    assert result.exit_code == 1
    assert "does not match the keys" in result.stderr

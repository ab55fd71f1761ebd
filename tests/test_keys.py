"""Key rotation: every identity number re-encrypted under new keys, in batches, while
loads keep finding every person; restartable; the old key file kept, privately."""

from __future__ import annotations

import base64
import datetime as dt
import getpass
import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pytest
import typer
from sqlalchemy import Engine, select, text
from typer.testing import CliRunner

import registry.keys as keys
from registry.bundle.layers import VALUES
from registry.bundle.load import LoadReport, load_bundle
from registry.bundle.placement import ID_NUMBER, MOVED_IN, residence_of
from registry.cli_keys import keys_app
from registry.db import transaction
from registry.keys import rotate
from registry.models import AuditLog, Person, RegistryMeta
from registry.settings import RegistryError
from registry.vault import IdentityVault, bind_vault, load_vault, write_key_file

# bundles without employees.csv: the persons here are exactly the 9 residents
from hand_bundle import RESIDENTS, write_hand_bundle

NUMBERS = [r[0] for r in RESIDENTS]
NAMES = {r[0]: r[1] for r in RESIDENTS}
TABLES = (
    "community",
    "building",
    "address",
    "room",
    "person",
    "residence",
    "import_log",
    "registry_meta",
    "audit_log",
)


@pytest.fixture
def key_path(registry_env: dict[str, str]) -> Path:
    return Path(registry_env["REGISTRY_KEY_FILE"])


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return write_hand_bundle(tmp_path / "hand", employees=False)


def load(engine: Engine, bundle: Path, key_path: Path) -> LoadReport:
    """A load as ``registry load`` makes it: keys checked, one committed transaction."""
    vault = load_vault(key_path)
    with transaction(engine) as session:
        bind_vault(session, vault, key_path)
        report = load_bundle(session, bundle, vault)
        assert report.written, report.errors
    return report


def persons(engine: Engine) -> list:
    with transaction(engine) as session:
        return list(session.execute(select(Person.__table__).order_by(Person.id)).all())


def versions(engine: Engine) -> dict[int, int]:
    """How many persons each key version holds."""
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT key_version, count(*) FROM person GROUP BY key_version")
        )
        return dict(rows.all())


def assert_all_under(engine: Engine, vault: IdentityVault, version: int) -> None:
    """Every person decrypts under ``version``, keyed by that version's HMAC, once."""
    found = []
    for person in persons(engine):
        assert person.key_version == version
        number = vault.decrypt(person.id_cipher, person.id_hmac, version)
        assert person.id_hmac == vault.keys[version].lookup_key(number)
        assert person.id_tail == number[-4:]
        found.append(number)
    assert sorted(found) == sorted(NUMBERS)  # each person once: no duplicates


def audit_rows(engine: Engine) -> list:
    with transaction(engine) as session:
        statement = select(AuditLog.__table__).where(AuditLog.action == "key_rotation")
        return list(session.execute(statement).all())


def meta(engine: Engine) -> dict[str, str]:
    with transaction(engine) as session:
        return dict(session.execute(select(RegistryMeta.key, RegistryMeta.value)).all())


def test_rotation_reencrypts_every_person(engine, key_path, bundle):
    load(engine, bundle, key_path)
    before = {p.id: (p.name, p.updated_at) for p in persons(engine)}

    result = rotate(engine, key_path, batch_size=4)

    assert (result.from_version, result.to_version) == (1, 2)
    assert (result.rows, result.total_rows, result.remaining) == (9, 9, 0)
    assert result.finished and not result.resumed
    vault = load_vault(key_path)
    assert vault.current == 2 and set(vault.keys) == {1, 2}
    assert_all_under(engine, vault, 2)
    assert {p.id: (p.name, p.updated_at) for p in persons(engine)} == before
    with pytest.raises(RegistryError):  # the old key no longer reads the new ciphertext
        vault.decrypt(persons(engine)[0].id_cipher, persons(engine)[0].id_hmac, 1)

    (audit,) = audit_rows(engine)
    assert audit.detail == {"from": 1, "to": 2, "rows": 9}
    assert audit.user_name == getpass.getuser()
    recorded = meta(engine)
    assert recorded["key_fingerprint"] == vault.fingerprint
    assert recorded["key_fingerprint:1"] == vault.keys[1].fingerprint
    assert recorded["key_fingerprint:2"] == vault.keys[2].fingerprint
    assert keys.ROTATION_KEY not in recorded


def test_reload_after_rotation_changes_nothing(engine, key_path, bundle):
    load(engine, bundle, key_path)
    rotate(engine, key_path)
    snapshot = [(p.id, p.id_hmac, p.id_cipher, p.name, p.updated_at) for p in persons(engine)]

    report = load(engine, bundle, key_path)

    assert report.counts["residents"]["inserted"] == 0
    assert report.counts["residents"]["updated"] == 0
    after = [(p.id, p.id_hmac, p.id_cipher, p.name, p.updated_at) for p in persons(engine)]
    assert after == snapshot
    assert_all_under(engine, load_vault(key_path), 2)


def test_load_during_a_half_finished_rotation_finds_both_versions(
    engine, key_path, bundle, tmp_path
):
    load(engine, bundle, key_path)
    result = rotate(engine, key_path, batch_size=3, max_batches=1)
    assert not result.finished
    assert (result.rows, result.remaining) == (3, 6)
    assert versions(engine) == {1: 6, 2: 3}
    vault = load_vault(key_path)

    # look-ups by number find each person whichever version its row is under
    with transaction(engine) as session:
        for number, _, _, _, _, moved_in, _ in RESIDENTS:
            ids = session.scalars(
                select(Person.id).where(Person.id_hmac.in_(vault.lookup_keys(number)))
            )
            assert len(list(ids)) == 1
            values = [None] * len(VALUES["residents"])
            values[ID_NUMBER] = number
            values[MOVED_IN] = dt.date.fromisoformat(moved_in) if moved_in else None
            assert residence_of(session, vault, tuple(values)) is not None

    # a load renaming a person still under the old key: updated and re-encrypted, once
    renamed = write_hand_bundle(tmp_path / "renamed", employees=False)
    residents = renamed / "residents.csv"
    last_name = RESIDENTS[-1][1]
    residents.write_text(residents.read_text().replace(last_name, last_name + "改"))
    report = load(engine, renamed, key_path)
    assert report.counts["residents"]["inserted"] == 0
    assert versions(engine) == {2: 9}  # every person of the load moved to the new key
    names = {p.name for p in persons(engine)}
    assert names == {*NAMES.values()} - {last_name} | {last_name + "改"}
    assert_all_under(engine, vault, 2)

    resumed = rotate(engine, key_path)
    assert resumed.resumed and resumed.finished
    assert (resumed.to_version, resumed.rows, resumed.total_rows) == (2, 0, 3)
    assert [a.detail for a in audit_rows(engine)] == [{"from": 1, "to": 2, "rows": 3}]


def test_restart_after_interruption_completes(engine, key_path, bundle):
    load(engine, bundle, key_path)
    first = rotate(engine, key_path, batch_size=2, max_batches=2)
    assert (first.rows, first.remaining, first.finished) == (4, 5, False)
    assert not audit_rows(engine)

    second = rotate(engine, key_path, batch_size=2)

    assert second.resumed and second.finished and not second.backups  # no new version
    assert (second.from_version, second.to_version) == (1, 2)
    assert (second.rows, second.total_rows) == (5, 9)
    vault = load_vault(key_path)
    assert set(vault.keys) == {1, 2}
    assert_all_under(engine, vault, 2)
    assert [a.detail for a in audit_rows(engine)] == [{"from": 1, "to": 2, "rows": 9}]


def test_crash_after_the_key_file_is_written_resumes(engine, key_path, bundle, monkeypatch):
    load(engine, bundle, key_path)

    def crash(*args, **kwargs):
        raise RuntimeError("crash")

    with monkeypatch.context() as patch:
        patch.setattr(keys, "record_current", crash)
        with pytest.raises(RuntimeError):
            rotate(engine, key_path)
    assert load_vault(key_path).current == 2  # on disk, not yet recorded
    assert "key_fingerprint:2" not in meta(engine)

    result = rotate(engine, key_path)

    assert result.resumed and result.finished and result.to_version == 2
    vault = load_vault(key_path)
    assert set(vault.keys) == {1, 2}
    assert_all_under(engine, vault, 2)


def test_crash_while_retiring_resumes(engine, key_path, bundle, monkeypatch):
    load(engine, bundle, key_path)
    original = keys.write_key_file

    def crash_after_retiring(path, vault):
        backup = original(path, vault)
        if len(vault.keys) == 1:  # the retiring rewrite, before its transaction commits
            raise RuntimeError("crash")
        return backup

    with monkeypatch.context() as patch:
        patch.setattr(keys, "write_key_file", crash_after_retiring)
        with pytest.raises(RuntimeError):
            rotate(engine, key_path, retire=True)
    assert set(load_vault(key_path).keys) == {2}  # retired on disk, not in the database
    assert "key_fingerprint:1" in meta(engine)
    assert not audit_rows(engine)

    result = rotate(engine, key_path, retire=True)

    assert result.resumed and result.finished
    assert "key_fingerprint:1" not in meta(engine)
    assert [a.detail for a in audit_rows(engine)] == [{"from": 1, "to": 2, "rows": 9}]
    assert_all_under(engine, load_vault(key_path), 2)


def test_old_key_file_is_backed_up_privately(engine, key_path, bundle):
    load(engine, bundle, key_path)
    original = key_path.read_bytes()

    result = rotate(engine, key_path)

    backups = sorted(key_path.parent.glob("keys.json.*.bak"))
    assert result.backups == backups and len(backups) == 1
    assert backups[0].read_bytes() == original
    assert os.stat(backups[0]).st_mode & 0o777 == 0o600
    assert os.stat(key_path).st_mode & 0o777 == 0o600
    assert not list(key_path.parent.glob(".keys.json.*"))  # no temporary file left
    document = json.loads(key_path.read_text())
    assert document["current"] == 2 and set(document["keys"]) == {"1", "2"}


def test_retire_removes_old_versions_once_unused(engine, key_path, bundle):
    load(engine, bundle, key_path)

    result = rotate(engine, key_path, retire=True)

    assert result.retired == [1] and len(result.backups) == 2
    vault = load_vault(key_path)
    assert set(vault.keys) == {2}
    assert "key_fingerprint:1" not in meta(engine)
    assert_all_under(engine, vault, 2)
    report = load(engine, bundle, key_path)  # the retired key is not needed
    assert report.counts["residents"]["inserted"] == 0
    old = result.backups[0]  # the original key file: version 1 only
    with transaction(engine) as session, pytest.raises(RegistryError, match="lacks key version 2"):
        bind_vault(session, load_vault(old), old)


def test_key_file_missing_a_version_in_use_is_refused(engine, key_path, bundle, tmp_path):
    load(engine, bundle, key_path)
    rotate(engine, key_path, batch_size=2, max_batches=1)  # persons under versions 1 and 2
    vault = load_vault(key_path)

    only_new = tmp_path / "only-new.json"
    write_key_file(only_new, IdentityVault({2: vault.keys[2]}, 2))
    with transaction(engine) as session, pytest.raises(RegistryError, match="lacks key version 1"):
        bind_vault(session, load_vault(only_new), only_new)

    old = next(key_path.parent.glob("keys.json.*.bak"))
    with transaction(engine) as session, pytest.raises(RegistryError, match="lacks key version 2"):
        bind_vault(session, load_vault(old), old)

    other = tmp_path / "other.json"
    write_key_file(other, IdentityVault({1: vault.keys[1], 2: vault.keys[1]}, 2))
    with transaction(engine) as session, pytest.raises(RegistryError, match="does not match"):
        bind_vault(session, load_vault(other), other)

    with transaction(engine) as session:
        bind_vault(session, vault, key_path)  # the right file is still accepted


def test_cli_load_with_a_stale_key_file_fails_cleanly(cli, engine, key_path, bundle, monkeypatch):
    assert cli("load", bundle).exit_code == 0
    rotate(engine, key_path)
    old = next(key_path.parent.glob("keys.json.*.bak"))
    monkeypatch.setenv("REGISTRY_KEY_FILE", str(old))
    result = cli("load", bundle)
    assert result.exit_code == 1
    assert "lacks key version 2" in result.stderr


def test_no_identity_number_or_key_in_clear_after_rotation(engine, key_path, bundle):
    load(engine, bundle, key_path)
    rotate(engine, key_path, batch_size=2, max_batches=2)
    load(engine, bundle, key_path)  # a load during the rotation
    rotate(engine, key_path, batch_size=2)
    vault = load_vault(key_path)
    secrets = []
    for pair in vault.keys.values():
        for key in (pair.cipher_key, pair.hmac_key):
            secrets += [key.hex(), base64.b64encode(key).decode()]
    with engine.connect() as connection:
        for table in TABLES:
            # every row as text, bytea included in hex, so a clear or hex-encoded number shows
            for (row,) in connection.execute(text(f"SELECT t::text FROM {table} t")):
                for number in NUMBERS:
                    assert number not in row, table
                    assert number.encode().hex() not in row, table
                    assert hashlib.sha256(number.encode()).hexdigest() not in row, table
                for secret in secrets:
                    assert secret not in row, table


def test_rotation_skips_rows_others_hold_then_waits_for_them(engine, key_path, bundle):
    load(engine, bundle, key_path)
    held = persons(engine)[4].id
    results = []
    with engine.connect() as other:
        # an edit of one person, not yet committed: its row is locked
        other.execute(text("UPDATE person SET name = name || '改' WHERE id = :id"), {"id": held})
        thread = threading.Thread(
            target=lambda: results.append(rotate(engine, key_path, batch_size=2))
        )
        thread.start()
        deadline = time.monotonic() + 30
        while versions(engine).get(2, 0) < 8:
            assert time.monotonic() < deadline, "the rotation did not skip the locked row"
            time.sleep(0.05)
        assert thread.is_alive()  # waiting for the held row only
        assert versions(engine) == {1: 1, 2: 8}
        with engine.connect() as reader:  # readers are not blocked meanwhile
            assert reader.scalar(text("SELECT count(*) FROM person")) == 9
        other.commit()
    thread.join(timeout=30)
    assert not thread.is_alive()
    (result,) = results
    assert result.finished and result.total_rows == 9
    vault = load_vault(key_path)
    assert_all_under(engine, vault, 2)
    assert sum(p.name.endswith("改") for p in persons(engine)) == 1


def test_one_rotation_at_a_time(engine, key_path, bundle):
    load(engine, bundle, key_path)
    with engine.connect() as other:
        other.scalar(text("SELECT pg_advisory_lock(:k)"), {"k": keys.ROTATION_LOCK})
        with pytest.raises(RegistryError, match="another key rotation"):
            rotate(engine, key_path)
        other.scalar(text("SELECT pg_advisory_unlock(:k)"), {"k": keys.ROTATION_LOCK})
    assert load_vault(key_path).current == 1  # the key file was left alone


def test_original_key_file_form_is_version_one(key_path, tmp_path):
    legacy = json.loads(key_path.read_text())
    assert set(legacy) == {"cipher_key", "hmac_key"}  # as create_key_file writes it
    vault = load_vault(key_path)
    assert vault.current == 1 and vault.versions == (1,)
    lookup = vault.lookup_key(NUMBERS[0])
    assert vault.lookup_keys(NUMBERS[0]) == [lookup]
    assert vault.decrypt(vault.encrypt(NUMBERS[0], lookup), lookup, 1) == NUMBERS[0]

    bad = tmp_path / "bad.json"
    write_key_file(bad, vault)
    document = json.loads(bad.read_text())
    document["current"] = 3
    bad.write_text(json.dumps(document))
    with pytest.raises(RegistryError, match="current version 3"):
        load_vault(bad)


def test_cli_rotate(cli, key_path, bundle):
    assert cli("load", bundle).exit_code == 0
    app = typer.Typer()
    app.add_typer(keys_app, name="keys")
    runner = CliRunner()

    result = runner.invoke(app, ["keys", "rotate", "--batch-size", "4", "--retire"])

    assert result.exit_code == 0, result.output
    assert "key version 1 -> 2: 9 persons re-encrypted" in result.stdout
    assert "retired key versions 1" in result.stdout
    assert ".bak" in result.stderr
    again = runner.invoke(app, ["keys", "rotate", "--keep-old"])
    assert again.exit_code == 0, again.output
    assert "key version 2 -> 3" in again.stdout
    assert set(load_vault(key_path).keys) == {2, 3}
    vault = load_vault(key_path)
    for output in (result.stdout + result.stderr, again.stdout + again.stderr):
        for number in NUMBERS:
            assert number not in output
        for pair in vault.keys.values():
            assert base64.b64encode(pair.cipher_key).decode() not in output
    bad = runner.invoke(app, ["keys", "rotate", "--batch-size", "0"])
    assert bad.exit_code != 0


def test_new_persons_are_written_under_the_current_version(engine, key_path, bundle, tmp_path):
    rotate(engine, key_path)  # an empty registry: nothing to re-encrypt
    vault = load_vault(key_path)
    assert vault.current == 2
    load(engine, bundle, key_path)  # straight COPY into the empty tables
    assert_all_under(engine, vault, 2)

    more = write_hand_bundle(tmp_path / "more", employees=False)
    extra = ("420111198001010198", "测试癸", "420111002002", "R21", "household", "", "")
    with (more / "residents.csv").open("a", encoding="utf-8") as out:
        out.write(",".join(extra) + "\n")
    report = load(engine, more, key_path)  # staged upsert: one new person
    assert report.counts["residents"]["inserted"] == 1
    rows = persons(engine)
    assert len(rows) == 10 and {p.key_version for p in rows} == {2}
    new = next(p for p in rows if p.name == "测试癸")
    assert vault.decrypt(new.id_cipher, new.id_hmac, 2) == extra[0]

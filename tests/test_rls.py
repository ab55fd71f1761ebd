"""Row-level security in SQL itself: what ``registry_api`` sees and may change with a given
role and scope, and with none; the append-only audit log; the API role's privileges.

Every query here runs as ``registry_api`` (the role the API connects as) or as the owner
over the 光谷 sample, inside a transaction that is rolled back: the shared sample is left
as it was. Expected row sets are computed from the same tables as the owner (who bypasses
row-level security) with an explicit WHERE on the community code.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, make_url, text
from sqlalchemy.exc import DBAPIError, ProgrammingError

from api import create_app
from registry.db import make_engine
from registry.settings import RegistryError

from conftest import API_PASSWORD, api_settings_for

API_ROLE = "registry_api"
COMMUNITY = "420111002005"  # one of the sample's seven communities
STREET = "420111002"  # the sample's street: all seven communities
DISTRICT = "420111"

# the rows each table holds, as the owner computes them for a community-code prefix
# (:p is the LIKE pattern); ``key`` is what identifies a row in the same table as the API
# role reads it without a WHERE clause
OWNER_ROWS = {
    "building": ("id", "SELECT id FROM building WHERE community_code LIKE :p"),
    "address": ("code", "SELECT code FROM address WHERE community_code LIKE :p"),
    "room": (
        "id",
        "SELECT r.id FROM room r JOIN building b ON b.id = r.building_id "
        "WHERE b.community_code LIKE :p",
    ),
    "residence": ("id", "SELECT id FROM residence WHERE community_code LIKE :p"),
    "person": (
        "id",
        "SELECT person_id FROM residence WHERE community_code LIKE :p "
        "UNION SELECT person_id FROM employment WHERE community_code LIKE :p",
    ),
}
PERSON_TABLES = ("residence", "person")


@pytest.fixture(scope="module")
def owner(sample_db_url: str) -> Iterator[Engine]:
    engine = make_engine(sample_db_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def api_role(sample_db_url: str) -> Iterator[Engine]:
    url = make_url(sample_db_url).set(username=API_ROLE, password=API_PASSWORD)
    engine = make_engine(url.render_as_string(hide_password=False))
    yield engine
    engine.dispose()


def rolled_back(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that is always rolled back."""
    with engine.connect() as conn:
        conn.begin()
        try:
            yield conn
        finally:
            conn.rollback()


@pytest.fixture
def as_api(api_role: Engine) -> Iterator[Connection]:
    """As ``registry_api``, rolled back after the test."""
    yield from rolled_back(api_role)


@pytest.fixture
def as_owner(owner: Engine) -> Iterator[Connection]:
    yield from rolled_back(owner)


def set_context(conn: Connection, role: str, scope: str, user: str = "rls-test") -> None:
    conn.execute(
        text(
            "SELECT set_config('registry.user', :u, true), "
            "set_config('registry.role', :r, true), set_config('registry.scope', :s, true)"
        ),
        {"u": user, "r": role, "s": scope},
    )


def owner_rows(owner: Engine, table: str, prefix: str) -> set:
    with owner.connect() as conn:
        return set(conn.scalars(text(OWNER_ROWS[table][1]), {"p": prefix + "%"}))


def api_rows(conn: Connection, table: str) -> set:
    key = OWNER_ROWS[table][0]
    return set(conn.scalars(text(f"SELECT {key} FROM {table}")))  # no WHERE: the point


def an_id(owner: Engine, inside: bool) -> str:
    with owner.connect() as conn:
        return conn.scalar(
            text(
                f"SELECT id FROM building WHERE community_code {'' if inside else 'NOT '}"
                "LIKE :p ORDER BY id LIMIT 1"
            ),
            {"p": COMMUNITY + "%"},
        )


# ---------------------------------------------------------------- reads


@pytest.mark.parametrize("table", list(OWNER_ROWS))
def test_an_officer_sees_only_the_rows_of_the_community(owner, as_api, table):
    expected = owner_rows(owner, table, COMMUNITY)
    everything = owner_rows(owner, table, "")
    # the sample must make the test able to fail: rows inside and rows outside
    assert expected and expected < everything, f"sample has no {table} on both sides"
    set_context(as_api, "officer", COMMUNITY)
    assert api_rows(as_api, table) == expected
    # SELECT * too (every column), not only the key
    count = as_api.scalar(text(f"SELECT count(*) FROM (SELECT * FROM {table}) t"))
    assert count == len(expected)


@pytest.mark.parametrize("table", list(OWNER_ROWS))
def test_without_a_context_nothing_is_visible(as_api, table):
    assert as_api.scalar(text(f"SELECT count(*) FROM {table}")) == 0


@pytest.mark.parametrize("table", list(OWNER_ROWS))
def test_a_context_of_another_transaction_does_not_leak(api_role, table):
    """set_config(..., true) is local: the next transaction on the same connection sees
    nothing again (a pooled connection never carries one request's identity on)."""
    with api_role.connect() as conn:
        with conn.begin():
            set_context(conn, "admin", "")
            assert conn.scalar(text("SELECT count(*) FROM building")) > 0
        with conn.begin():
            assert conn.scalar(text(f"SELECT count(*) FROM {table}")) == 0


@pytest.mark.parametrize(
    ("role", "scope"), [("analyst", DISTRICT), ("gis", DISTRICT), ("admin", "")]
)
def test_roles_without_persons_see_buildings_but_no_person_or_residence(owner, as_api, role, scope):
    set_context(as_api, role, scope)
    for table in PERSON_TABLES:
        assert owner_rows(owner, table, scope), f"sample has no {table} in {scope or 'all'}"
        assert as_api.scalar(text(f"SELECT count(*) FROM {table}")) == 0, (role, table)
    for table in ("building", "address", "room"):
        assert api_rows(as_api, table) == owner_rows(owner, table, scope), (role, table)


def test_a_station_sees_the_persons_of_its_street(owner, as_api):
    set_context(as_api, "station", STREET)
    for table in PERSON_TABLES:
        expected = owner_rows(owner, table, STREET)
        assert expected
        assert api_rows(as_api, table) == expected


def test_an_unknown_role_sees_no_person_and_edits_nothing(owner, as_api):
    """Buildings and addresses follow the scope whatever the role (the account table
    allows only the five roles); persons and edits need a role that grants them."""
    set_context(as_api, "superuser", COMMUNITY)
    for table in PERSON_TABLES:
        assert as_api.scalar(text(f"SELECT count(*) FROM {table}")) == 0
    done = as_api.execute(
        text("UPDATE building SET name = 'x' WHERE id = :id"), {"id": an_id(owner, True)}
    )
    assert done.rowcount == 0


def test_an_officer_with_an_empty_scope_sees_nothing(as_api):
    set_context(as_api, "officer", "")
    for table in OWNER_ROWS:
        assert as_api.scalar(text(f"SELECT count(*) FROM {table}")) == 0, table


def test_the_views_apply_the_callers_policies(owner, as_api):
    """on_map_building is security_invoker: it shows the officer's buildings only."""
    with owner.connect() as conn:
        everything = set(conn.scalars(text("SELECT id FROM on_map_building")))
        expected = set(
            conn.scalars(
                text(
                    "SELECT m.id FROM on_map_building m JOIN building b USING (id) "
                    "WHERE b.community_code LIKE :p"
                ),
                {"p": COMMUNITY + "%"},
            )
        )
    assert expected and expected < everything
    set_context(as_api, "officer", COMMUNITY)
    assert set(as_api.scalars(text("SELECT id FROM on_map_building"))) == expected


# ---------------------------------------------------------------- writes


def test_an_update_outside_the_scope_touches_no_row(owner, as_api):
    outside, inside = an_id(owner, False), an_id(owner, True)
    set_context(as_api, "officer", COMMUNITY)
    done = as_api.execute(text("UPDATE building SET name = 'x' WHERE id = :id"), {"id": outside})
    assert done.rowcount == 0
    everything = as_api.execute(text("UPDATE building SET floors = floors"))
    assert everything.rowcount == len(owner_rows(owner, "building", COMMUNITY))
    # the same statement does work inside the scope: the 0 above is the policy's doing
    mine = as_api.execute(text("UPDATE building SET name = 'x' WHERE id = :id"), {"id": inside})
    assert mine.rowcount == 1


def test_an_analyst_may_not_update_even_inside_the_scope(owner, as_api):
    set_context(as_api, "analyst", DISTRICT)
    done = as_api.execute(
        text("UPDATE building SET name = 'x' WHERE id = :id"), {"id": an_id(owner, True)}
    )
    assert done.rowcount == 0


def test_a_building_cannot_be_moved_out_of_the_scope(owner, as_api):
    inside = an_id(owner, True)
    with owner.connect() as conn:
        other = conn.scalar(
            text("SELECT code FROM community WHERE code <> :c ORDER BY code LIMIT 1"),
            {"c": COMMUNITY},
        )
    set_context(as_api, "officer", COMMUNITY)
    with pytest.raises(ProgrammingError, match="row-level security"):
        as_api.execute(
            text("UPDATE building SET community_code = :other WHERE id = :id"),
            {"other": other, "id": inside},
        )


def test_a_building_cannot_be_inserted_outside_the_scope(owner, as_api):
    with owner.connect() as conn:
        other = conn.scalar(
            text("SELECT code FROM community WHERE code <> :c ORDER BY code LIMIT 1"),
            {"c": COMMUNITY},
        )
    set_context(as_api, "officer", COMMUNITY)
    with pytest.raises(ProgrammingError, match="row-level security"):
        as_api.execute(
            text(
                "INSERT INTO building (id, community_code, status, verification) "
                "VALUES ('RLS-TEST-1', :other, 'in_use', 'unverified')"
            ),
            {"other": other},
        )


def test_a_residence_outside_the_scope_cannot_be_updated(owner, as_api):
    with owner.connect() as conn:
        outside = conn.scalar(
            text("SELECT id FROM residence WHERE community_code NOT LIKE :p LIMIT 1"),
            {"p": COMMUNITY + "%"},
        )
    assert outside is not None
    set_context(as_api, "officer", COMMUNITY)
    done = as_api.execute(
        text("UPDATE residence SET room_id = NULL WHERE id = :id"), {"id": outside}
    )
    assert done.rowcount == 0


@pytest.mark.parametrize("statement", ["DELETE FROM building", "TRUNCATE building"])
def test_the_api_role_cannot_delete_or_truncate(as_api, statement):
    set_context(as_api, "admin", "")
    with pytest.raises(ProgrammingError, match="permission denied"):
        as_api.execute(text(statement))


# ---------------------------------------------------------------- the audit log


AUDIT_VALUES = "VALUES ('rls-test', 'officer', 'login', '203.0.113.1')"
AUDIT_INSERT = text(f"INSERT INTO audit_log (user_name, role, action, client_ip) {AUDIT_VALUES}")


def test_the_api_role_may_append_to_the_audit_log(as_api):
    # no RETURNING: that would need SELECT, which the API role must not have
    assert as_api.execute(AUDIT_INSERT).rowcount == 1


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM audit_log",
        "UPDATE audit_log SET user_name = 'x'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ],
)
def test_the_api_role_cannot_read_or_change_the_audit_log(as_api, statement):
    with pytest.raises(ProgrammingError, match="permission denied"):
        as_api.execute(text(statement))


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET user_name = 'someone else' WHERE id = :id",
        "DELETE FROM audit_log WHERE id = :id",
        "TRUNCATE audit_log",
    ],
)
def test_not_even_the_owner_can_change_the_audit_log(as_owner, statement):
    audit_id = as_owner.execute(  # a row for the row trigger to see
        text(
            f"INSERT INTO audit_log (user_name, role, action, client_ip) {AUDIT_VALUES} "
            "RETURNING id"
        )
    ).scalar_one()
    with pytest.raises(DBAPIError, match="append-only"):
        as_owner.execute(text(statement), {"id": audit_id})


# ---------------------------------------------------------------- the role itself


def test_the_api_role_is_not_privileged(owner):
    with owner.connect() as conn:
        row = conn.execute(
            text(
                "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles "
                "WHERE rolname = :r"
            ),
            {"r": API_ROLE},
        ).one()
        assert tuple(row) == (False, False, False, False)
        owned = conn.scalars(
            text(
                "SELECT c.relname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
                "WHERE r.rolname = :r"
            ),
            {"r": API_ROLE},
        ).all()
        assert owned == []
        functions = conn.scalars(
            text(
                "SELECT p.proname FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner "
                "WHERE r.rolname = :r"
            ),
            {"r": API_ROLE},
        ).all()
        assert functions == []
        # nor is it a member of the owner's role, which would let it act as the owner
        owner_name = conn.scalar(
            text("SELECT tableowner FROM pg_tables WHERE tablename = 'building'")
        )
        member = conn.scalar(
            text("SELECT pg_has_role(:r, :o, 'USAGE')"), {"r": API_ROLE, "o": owner_name}
        )
        assert member is False


@pytest.mark.parametrize(
    "table", ["building", "address", "room", "residence", "person", "address_review"]
)
def test_row_level_security_is_enabled(owner, table):
    with owner.connect() as conn:
        enabled = conn.scalar(
            text("SELECT relrowsecurity FROM pg_class WHERE relname = :t"), {"t": table}
        )
    assert enabled is True


def test_the_api_cannot_call_the_internal_functions(as_api):
    with pytest.raises(ProgrammingError, match="permission denied"):
        as_api.execute(text("SELECT registry_set_api_password('x')"))


def test_the_api_refuses_to_start_as_the_owner(sample_db_url: str, tmp_path: Path):
    settings = api_settings_for(sample_db_url, tmp_path, api_database_url=sample_db_url)
    with (
        pytest.raises(RegistryError, match="bypasses row-level security"),
        TestClient(create_app(settings)),
    ):
        pass


def test_the_api_starts_as_its_own_role(sample_db_url: str, tmp_path: Path):
    """The control for the test above: the same settings without the owner's URL start."""
    with TestClient(create_app(api_settings_for(sample_db_url, tmp_path))) as client:
        assert client.get("/healthz").status_code == 200

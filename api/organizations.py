"""An organization's employees over HTTP: ``officer`` and ``station`` only, in their
jurisdiction, masked unless asked otherwise, every read audited as ``read_persons``.

The organizations themselves are the public ``organizations`` collection of the OGC
API (:mod:`registry.collections`); employees are personal data under the residents'
rules (:mod:`api.persons`): other roles get 403, an organization outside the
jurisdiction is a 404, and answers carry ``Cache-Control: no-store``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel

from api.auth import allow
from api.persons import NO_STORE, PROBLEMS, Purpose, Unmask, access_for, audited, problem
from api.problems import bad_request, not_found
from registry import organizations
from registry.auth import PERSON_READERS, Principal
from registry.uscc import UsccError, parse_uscc

router = APIRouter(tags=["Persons"])

Reader = Annotated[Principal, Depends(allow(*PERSON_READERS, what="read persons"))]


class Employee(BaseModel):
    """One employment of a person: masked (``张*``, ``**************1234``) unless unmasked."""

    person_id: int
    name: str
    id_number: str
    position: str | None
    started: dt.date | None
    ended: dt.date | None


class Employees(BaseModel):
    uscc: str
    masked: bool
    employees: list[Employee]
    numberReturned: int


@router.get(
    "/organizations/{uscc}/employees",
    response_model=Employees,
    responses={**PROBLEMS, 404: problem("No such organization in the jurisdiction.")},
    summary="The employees of an organization",
)
async def employees(
    request: Request,
    response: Response,
    principal: Reader,
    uscc: Annotated[
        str,
        PathParam(max_length=64, description="The unified social credit code (GB 32100)."),
    ],
    unmask: Unmask = False,
    purpose: Purpose = None,
) -> dict[str, Any]:
    """Every employment of the organization, past ones included, earliest first. Audited
    as ``read_persons``; an organization outside the jurisdiction is a 404."""
    try:
        code = parse_uscc(uscc).value
    except UsccError as exc:
        raise bad_request(f"uscc {uscc!r}: not a unified social credit code ({exc})") from None
    access = await access_for(request, principal, purpose, unmask)
    rows = await audited(request, organizations.organization_employees, access, code)
    if rows is None:
        raise not_found(f"no organization {code}")
    response.headers["Cache-Control"] = NO_STORE
    return {
        "uscc": code,
        "masked": not access.unmasked,
        "employees": rows,
        "numberReturned": len(rows),
    }

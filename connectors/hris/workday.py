"""Workday as the HRIS: a custom report (RaaS) in JSON for the roster, ``Get_Workers`` (SOAP) for the rest.

Connection: an Integration System User (ISU) in an integration system security group with **Get** on the
domains Microsoft Entra's Workday tutorial lists for reading workers (learn.microsoft.com/entra/identity/
saas-apps/workday-inbound-tutorial, "Configuring domain security policy permissions"): Worker Data: Workers,
Worker Data: Public Worker Reports, Person Data: Work Contact Information, Worker Data: All Positions, Worker
Data: Current Staffing Information, Worker Data: Business Title on Worker Profile (plus Person Data: Home
Contact Information if the report carries the home e-mail). Tenure only reads: no Put is needed. The ISU's user name is sent as ``user@tenant`` (Workday Web Services expect the tenant-qualified name);
the password is a secret: HTTP Basic for RaaS, a WS-Security ``UsernameToken`` (``PasswordText``; OASIS
"Web Services Security UsernameToken Profile 1.0" §3.1) in the SOAP header for Web Services. Base URL
``https://{host}/ccx/service/``.

Roster: ``GET customreport2/{tenant}/{owner}/{report}?format=json`` (Reports-as-a-Service; the report must be
web-service enabled) → ``{"Report_Entry": [{alias: value}]}``, one request, no paging. Columns are the report's
field aliases; :data:`REPORT_COLUMNS` lists the default alias per field and ``column_map`` overrides them.
Single-instance reference fields may come as an object with a ``Descriptor``; empty fields are left out of the
JSON. Booleans are ``"1"``/``"0"``.

One worker and changes: ``Get_Workers`` of the Human_Resources web service (``POST {tenant}/Human_Resources/
{version}``; community.workday.com/sites/default/files/file-hosting/productionapi/Human_Resources/v41.0/
Get_Workers.html), following Microsoft Entra's documented Workday integration (learn.microsoft.com/entra/
identity/app-provisioning/workday-integration-reference):

- one worker: ``Request_References/Worker_Reference/ID[@type='Employee_ID']`` with ``Response_Filter``
  ``As_Of_Effective_Date`` = ``As_Of_Entry_DateTime`` = now, so a future-dated hire comes as it stands today
  (``Active`` 0, a future ``Hire_Date``: pending) and a future-dated termination as active with its
  ``Termination_Date`` ("Query for future-dated hires" notes that Active turns 1 on the hire date);
  ``Invalid ID value`` → NotFoundError;
- changed since (section "How incremental sync works"): **two** transaction-log queries per run, because a
  future-dated change is *entered* on one day and becomes *effective* on another —
  ``Transaction_Log_Criteria_Data/Transaction_Date_Range_Data`` with ``Updated_From``/``Updated_Through``
  (entered between the cursor and now: "Query for manual updates", which also catches future-dated hires and
  terminations the day HR enters them) and with ``Effective_From``/``Effective_Through`` (entered before,
  effective between the cursor and now: "Query for effective-dated updates and terminations"). Both are
  paged (``Response_Filter/Page``, ``Count`` 100; ``Response_Results/Total_Pages``).
- rescinds and corrections are read explicitly: no ``Transaction_Type_References`` filter is sent (a type
  filter would have to list the rescind and correction types too, or miss them), and
  ``Include_Transaction_Log_Data`` returns each worker's transaction log, whose ``Is_Rescind_Or_Rescinded``
  and ``Is_Correction_Or_Corrected`` flags (Transaction_Log_DataType) are read: every worker with a rescinded
  or corrected transaction in the window is reported changed (and counted in the log line), so a rescinded
  termination or a corrected hire date is re-read as it stands now. A worker whose hire was rescinded no
  longer exists in Workday: its id answers NotFoundError, which the sync treats as "no HR record".

Field mapping (``Get_Workers``, XPaths of the Entra attribute reference): Employee_ID; ``Legal_Name_Data/
Name_Detail_Data/First_Name``, ``Last_Name``; ``Preferred_Name_Data/.../First_Name``; the Work and Home
``Email_Address``; ``Position_Data/Business_Title``, ``Business_Site_Summary_Data/Name`` (location),
``Worker_Type_Reference/@Descriptor``; the SUPERVISORY ``Organization_Name`` (department); the manager's
Employee_ID from the last ``Management_Chain_Data``; ``Worker_Status_Data/Active``, ``On_Leave``, ``Rehire``,
``Hire_Date``, ``Termination_Date`` (``xsd:date`` with an offset, ``2026-02-01-08:00``). A rehired worker keeps
the previous ``Termination_Date``: with the ``Rehire`` flag set, a termination before the hire date is dropped;
without it the record is invalid. Status: Active/On_Leave refined by the dates
(:func:`connectors.hris.parsing.status_from`).

SOAP faults are HTTP 500 whatever the cause: :func:`workday_fault` classifies them (authentication →
AuthenticationError, ``Client.validationError`` → permanent, ``Server`` → retryable). Responses are parsed with
defusedxml (a SOAP message carries no DTD, SOAP 1.1 §3). The password never appears in a log, exception or
repr.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

import httpx
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from connectors.errors import (
    AuthenticationError,
    ConnectorError,
    InvalidRecordError,
    NotFoundError,
    PermanentAPIError,
    ResponseValidationError,
    RetryableAPIError,
)
from connectors.hris.parsing import (
    EMPLOYEE_FIELDS,
    RecordProblem,
    build_employee,
    clean,
    parse_date,
    reject_manager_loops,
    status_from,
)
from connectors.http import APIClient, ClosesAPI, LoopGuard
from models.domain import ChangeSet, Employee, EmployeeStatus

__all__ = [
    "WorkdayHRIS",
    "REPORT_COLUMNS",
    "DEFAULT_VERSION",
    "PAGE_COUNT",
    "workday_fault",
    "workday_user",
    "get_workers_request",
    "worker_record",
]

SOURCE = "workday"
DEFAULT_VERSION = "v41.0"
PAGE_COUNT = 100
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
WD_NS = "urn:com.workday/bsvc"
WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
PASSWORD_TEXT = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText"
)
NS = {"env": SOAP_NS, "wd": WD_NS}
WD_TYPE = f"{{{WD_NS}}}type"
WD_DESCRIPTOR = f"{{{WD_NS}}}Descriptor"
# our field (and the three status inputs) -> the report's field alias
REPORT_COLUMNS: dict[str, str] = {
    "employee_id": "Employee_ID",
    "first_name": "First_Name",
    "last_name": "Last_Name",
    "preferred_name": "Preferred_Name",
    "work_email": "Work_Email",
    "personal_email": "Home_Email",
    "department": "Department",
    "title": "Business_Title",
    "manager_id": "Manager_Employee_ID",
    "location": "Location",
    "employment_type": "Worker_Type",
    "hire_date": "Hire_Date",
    "termination_date": "Termination_Date",
    "active": "Active",
    "on_leave": "On_Leave",
    "rehire": "Rehire",
}
RESPONSE_GROUP_FULL = (
    "<wd:Include_Reference>1</wd:Include_Reference>"
    "<wd:Include_Personal_Information>1</wd:Include_Personal_Information>"
    "<wd:Include_Employment_Information>1</wd:Include_Employment_Information>"
    "<wd:Include_Organizations>1</wd:Include_Organizations>"
    "<wd:Include_Management_Chain_Data>1</wd:Include_Management_Chain_Data>"
)
RESPONSE_GROUP_LOG = (
    "<wd:Include_Reference>1</wd:Include_Reference>"
    "<wd:Include_Transaction_Log_Data>1</wd:Include_Transaction_Log_Data>"
)
log = logging.getLogger("tenure.hris.workday")
_FAULT = re.compile(r"<(?:[\w.-]+:)?Fault[\s>]")


def _today() -> date:
    return datetime.now(UTC).date()


def _moment(moment: datetime) -> str:
    """An ``xsd:dateTime`` in UTC with the fraction kept (a truncated ``Through`` would miss the last second)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def workday_user(username: str, tenant: str) -> str:
    """The tenant-qualified ISU name Workday Web Services authenticate (``user@tenant``)."""
    return username if "@" in username else f"{username}@{tenant}"


def _flag(value: Any) -> bool:
    text = (clean(value) or "").lower()
    return text in ("1", "true", "y", "yes")


def _parse_xml(content: bytes) -> Element:
    try:
        root: Element = fromstring(content)
        return root
    except (ParseError, DefusedXmlException) as exc:
        raise ResponseValidationError(
            f"Workday answered XML we refuse to parse ({type(exc).__name__})", source=SOURCE
        ) from None


def workday_fault(response: httpx.Response) -> ConnectorError | None:
    """A SOAP fault (HTTP 500 whatever its cause) as the typed error it means; None for anything else."""
    if response.status_code < 400 or not _FAULT.search(response.text[:2000]):
        return None
    try:
        root = _parse_xml(response.content)
    except ResponseValidationError:
        return None
    fault = root.find(".//env:Fault", NS)
    if fault is None:
        return None
    code = (fault.findtext("faultcode") or "").strip()
    text = " ".join((fault.findtext("faultstring") or "").split())[:200]
    where = f"{response.request.method} {response.request.url.path} failed: {code} {text}".strip()
    status = response.status_code
    lowered = f"{code} {text}".lower()
    if "authentication" in lowered or "invalid username or password" in lowered:
        return AuthenticationError(where, source=SOURCE, status_code=status)
    if "not a valid id value" in lowered:
        return NotFoundError(where, source=SOURCE, status_code=status)
    if code.split(":")[-1].lower().startswith("client"):
        return PermanentAPIError(where, source=SOURCE, status_code=status)
    return RetryableAPIError(where, source=SOURCE, status_code=status)


def get_workers_request(
    *,
    as_of: datetime,
    employee_id: str | None = None,
    updated: tuple[datetime, datetime] | None = None,
    effective: tuple[datetime, datetime] | None = None,
    page: int = 1,
) -> str:
    """The ``Get_Workers_Request`` body: one worker by Employee_ID, or the workers with a transaction entered
    (``updated``) or effective (``effective``) in a window (from, through)."""
    moment = _moment(as_of)
    if employee_id is not None:
        criteria = (
            "<wd:Request_References><wd:Worker_Reference>"
            f'<wd:ID wd:type="Employee_ID">{escape(employee_id)}</wd:ID>'
            "</wd:Worker_Reference></wd:Request_References>"
        )
        group = RESPONSE_GROUP_FULL
    else:
        if updated is not None:
            window = (
                f"<wd:Updated_From>{_moment(updated[0])}</wd:Updated_From>"
                f"<wd:Updated_Through>{_moment(updated[1])}</wd:Updated_Through>"
            )
        elif effective is not None:
            window = (
                f"<wd:Effective_From>{_moment(effective[0])}</wd:Effective_From>"
                f"<wd:Effective_Through>{_moment(effective[1])}</wd:Effective_Through>"
            )
        else:
            raise ValueError("a transaction window (updated or effective) is required")
        criteria = (
            "<wd:Request_Criteria><wd:Transaction_Log_Criteria_Data><wd:Transaction_Date_Range_Data>"
            f"{window}</wd:Transaction_Date_Range_Data></wd:Transaction_Log_Criteria_Data>"
            "<wd:Exclude_Inactive_Workers>0</wd:Exclude_Inactive_Workers></wd:Request_Criteria>"
        )
        group = RESPONSE_GROUP_LOG
    return (
        f'<wd:Get_Workers_Request xmlns:wd="{WD_NS}">{criteria}'
        f"<wd:Response_Filter><wd:As_Of_Effective_Date>{moment}</wd:As_Of_Effective_Date>"
        f"<wd:As_Of_Entry_DateTime>{moment}</wd:As_Of_Entry_DateTime>"
        f"<wd:Page>{page}</wd:Page><wd:Count>{PAGE_COUNT}</wd:Count></wd:Response_Filter>"
        f"<wd:Response_Group>{group}</wd:Response_Group></wd:Get_Workers_Request>"
    )


def _text(node: Element | None, path: str) -> str | None:
    return clean(node.findtext(path, namespaces=NS)) if node is not None else None


def _typed_id(node: Element | None, kind: str) -> str | None:
    if node is None:
        return None
    for found in node.findall("wd:ID", NS):
        if found.get(WD_TYPE) == kind:
            return clean(found.text)
    return None


def _email(contact: Element | None, usage: str) -> str | None:
    if contact is None:
        return None
    for entry in contact.findall("wd:Email_Address_Data", NS):
        kinds = [
            (t.get(WD_DESCRIPTOR) or t.findtext("wd:ID", namespaces=NS) or "").upper()
            for t in entry.findall("wd:Usage_Data/wd:Type_Data/wd:Type_Reference", NS)
        ]
        if usage in kinds:
            return _text(entry, "wd:Email_Address")
    return None


def worker_record(worker: Element) -> dict[str, Any]:
    """A ``wd:Worker`` element of a Get_Workers answer → our field names plus the status inputs."""
    data = worker.find("wd:Worker_Data", NS)
    personal = data.find("wd:Personal_Data", NS) if data is not None else None
    employment = data.find("wd:Employment_Data", NS) if data is not None else None
    position = employment.find(".//wd:Position_Data", NS) if employment is not None else None
    status = employment.find("wd:Worker_Status_Data", NS) if employment is not None else None
    contact = personal.find("wd:Contact_Data", NS) if personal is not None else None
    department = None
    for org in (
        data.findall("wd:Organization_Data/wd:Worker_Organization_Data/wd:Organization_Data", NS)
        if (data is not None)
        else []
    ):
        if _typed_id(org.find("wd:Organization_Type_Reference", NS), "Organization_Type_ID") == "SUPERVISORY":
            department = _text(org, "wd:Organization_Name")
            break
    chains = (
        data.findall(
            "wd:Management_Chain_Data/wd:Worker_Supervisory_Management_Chain_Data/wd:Management_Chain_Data",
            NS,
        )
        if data is not None
        else []
    )
    manager = _typed_id(chains[-1].find("wd:Manager_Reference", NS), "Employee_ID") if chains else None
    worker_type = position.find("wd:Worker_Type_Reference", NS) if position is not None else None
    return {
        "employee_id": _typed_id(worker.find("wd:Worker_Reference", NS), "Employee_ID")
        or _text(data, "wd:Worker_ID"),
        "first_name": _text(personal, "wd:Name_Data/wd:Legal_Name_Data/wd:Name_Detail_Data/wd:First_Name"),
        "last_name": _text(personal, "wd:Name_Data/wd:Legal_Name_Data/wd:Name_Detail_Data/wd:Last_Name"),
        "preferred_name": _text(
            personal, "wd:Name_Data/wd:Preferred_Name_Data/wd:Name_Detail_Data/wd:First_Name"
        ),
        "work_email": _email(contact, "WORK"),
        "personal_email": _email(contact, "HOME"),
        "department": department,
        "title": _text(position, "wd:Business_Title"),
        "manager_id": manager,
        "location": _text(position, "wd:Business_Site_Summary_Data/wd:Name"),
        "employment_type": clean(worker_type.get(WD_DESCRIPTOR)) if worker_type is not None else None,
        "hire_date": _text(status, "wd:Hire_Date"),
        "termination_date": _text(status, "wd:Termination_Date"),
        "active": _text(status, "wd:Active"),
        "on_leave": _text(status, "wd:Leave_Status_Data/wd:On_Leave"),
        "rehire": _text(status, "wd:Rehire"),
    }


def _report_value(value: Any) -> Any:
    """A RaaS JSON cell: a reference object's ``Descriptor``, a list's first entry, else the value."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, Mapping):
        value = value.get("Descriptor")
    return value


class WorkdayHRIS(ClosesAPI):
    """Employees from Workday; satisfies :class:`connectors.protocols.HRIS`.

    ``api``: an APIClient on ``https://{host}/ccx/service/`` with the ISU's Basic auth and
    :func:`workday_fault` as its classifier; ``user``/``password`` go into the WS-Security header."""

    source = SOURCE

    def __init__(
        self,
        api: APIClient,
        *,
        tenant: str,
        report: str,
        user: str,
        password: str,
        version: str = DEFAULT_VERSION,
        column_map: Mapping[str, str] | None = None,
        today: Callable[[], date] = _today,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        unknown = set(column_map or {}) - set(REPORT_COLUMNS)
        if unknown:
            raise ValueError(f"column_map names unknown fields: {', '.join(sorted(unknown))}")
        self.api = api
        self.tenant = tenant.strip("/")
        self.report = report.strip("/")
        self.version = version
        self.columns = {**REPORT_COLUMNS, **(column_map or {})}
        self._user = user
        self._password = password
        self._today = today
        self._now = now

    def __repr__(self) -> str:
        return f"WorkdayHRIS(api={self.api!r}, tenant={self.tenant!r}, report={self.report!r})"

    # -- transport ----------------------------------------------------------------------------------------

    def _envelope(self, body: str) -> str:
        return (
            f'<env:Envelope xmlns:env="{SOAP_NS}"><env:Header>'
            f'<wsse:Security xmlns:wsse="{WSSE_NS}" env:mustUnderstand="1"><wsse:UsernameToken>'
            f"<wsse:Username>{escape(self._user)}</wsse:Username>"
            f'<wsse:Password Type="{PASSWORD_TEXT}">{escape(self._password)}</wsse:Password>'
            f"</wsse:UsernameToken></wsse:Security></env:Header><env:Body>{body}</env:Body></env:Envelope>"
        )

    async def _get_workers(self, body: str) -> Element:
        response = await self.api.request(
            "POST",
            f"{self.tenant}/Human_Resources/{self.version}",
            content=self._envelope(body).encode(),
            headers={"Content-Type": "text/xml; charset=utf-8", "Accept": "text/xml"},
            retry=True,  # Get_Workers is a read expressed as POST
        )
        root = _parse_xml(response.content)
        answer = root.find("env:Body/wd:Get_Workers_Response", NS)
        if answer is None:
            raise ResponseValidationError("Workday answered no Get_Workers_Response", source=SOURCE)
        return answer

    # -- check --------------------------------------------------------------------------------------------

    def to_employee(self, record: Mapping[str, Any], *, today: date) -> Employee | InvalidRecordError:
        """A worker in our field names plus ``active``/``on_leave``/``rehire`` → Employee or invalid."""
        values = {k: _report_value(v) for k, v in record.items()}
        values = {
            k: str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
            for k, v in values.items()
        }
        employee_id = clean(values.get("employee_id"))
        try:
            hire = parse_date(values.get("hire_date"), "hire_date", with_time=True)
            termination = parse_date(values.get("termination_date"), "termination_date", with_time=True)
            if hire and termination and termination < hire and _flag(values.get("rehire")):
                values["termination_date"] = termination = None  # the earlier employment's end
            active = clean(values.get("active"))  # a report without the column: the dates decide
            word = (
                None
                if active is None
                else EmployeeStatus.TERMINATED
                if not _flag(active)
                else EmployeeStatus.LEAVE
                if _flag(values.get("on_leave"))
                else EmployeeStatus.ACTIVE
            )
            status = status_from(word, hire, termination, today=today)
        except RecordProblem as problem:
            return InvalidRecordError(
                problem.reason, source=SOURCE, record_id=employee_id, field=problem.field
            )
        fields = {name: values.get(name) for name in EMPLOYEE_FIELDS}
        return build_employee(
            fields, source=SOURCE, today=today, raw=dict(record), status=status, with_time=True
        )

    # -- HRIS protocol ------------------------------------------------------------------------------------

    async def _report(self) -> list[Mapping[str, Any]]:
        body = await self.api.request_json(
            "GET", f"customreport2/{self.tenant}/{self.report}", params={"format": "json"}
        )
        entries = body.get("Report_Entry") if isinstance(body, Mapping) else None
        if not isinstance(entries, list):
            raise ResponseValidationError("the custom report answered no 'Report_Entry' list", source=SOURCE)
        return entries

    async def iter_employees(self) -> AsyncIterator[Employee | InvalidRecordError]:
        """Every worker in the custom report (one request)."""
        today = self._today()
        items: list[Employee | InvalidRecordError] = []
        for entry in await self._report():
            if not isinstance(entry, Mapping):
                items.append(InvalidRecordError("report entry is not an object", source=SOURCE))
                continue
            record = {name: entry.get(alias) for name, alias in self.columns.items()}
            items.append(self.to_employee(record, today=today))
        for item in reject_manager_loops(items, source=SOURCE):
            yield item

    async def get_employee(self, employee_id: str) -> Employee:
        """``Get_Workers`` for one Employee_ID as of now; NotFoundError if Workday does not know it."""
        answer = await self._get_workers(get_workers_request(as_of=self._now(), employee_id=employee_id))
        workers = answer.findall("wd:Response_Data/wd:Worker", NS)
        if not workers:
            raise NotFoundError(f"worker {employee_id} is not in Workday", source=SOURCE)
        result = self.to_employee(worker_record(workers[0]), today=self._today())
        if isinstance(result, InvalidRecordError):
            raise result
        return result

    async def _changed(
        self,
        *,
        updated: tuple[datetime, datetime] | None = None,
        effective: tuple[datetime, datetime] | None = None,
    ) -> tuple[list[str], int, int]:
        """(ids, rescinded, corrected) of the workers with a transaction in one window (entered or
        effective), every page."""
        ids: list[str] = []
        rescinded = corrected = 0
        guard = LoopGuard(SOURCE)
        page, pages = 1, 1
        while page <= pages:
            guard.check(page)
            request = get_workers_request(as_of=self._now(), page=page, updated=updated, effective=effective)
            answer = await self._get_workers(request)
            total = clean(answer.findtext("wd:Response_Results/wd:Total_Pages", namespaces=NS))
            pages = int(total) if total and total.isdigit() else page
            for worker in answer.findall("wd:Response_Data/wd:Worker", NS):
                worker_id = _typed_id(worker.find("wd:Worker_Reference", NS), "Employee_ID")
                if worker_id:
                    ids.append(worker_id)
                for entry in worker.findall(".//wd:Transaction_Log_Data", NS):
                    rescinded += _flag(entry.findtext("wd:Is_Rescind_Or_Rescinded", namespaces=NS))
                    corrected += _flag(entry.findtext("wd:Is_Correction_Or_Corrected", namespaces=NS))
            page += 1
        return ids, rescinded, corrected

    async def changed_since(self, cursor: datetime | None) -> ChangeSet:
        """Workers with a transaction entered, or effective, between ``cursor`` and now (two transaction-log
        queries, rescinds and corrections included); None → every worker in the report."""
        asked_at = self._now()
        if cursor is None:
            ids = [clean(_report_value(e.get(self.columns["employee_id"]))) for e in await self._report()]
            return ChangeSet(employee_ids=list(dict.fromkeys(i for i in ids if i)), next_cursor=asked_at)
        entered, rescinded_a, corrected_a = await self._changed(updated=(cursor, asked_at))
        effective, rescinded_b, corrected_b = await self._changed(effective=(cursor, asked_at))
        if rescinded_a + rescinded_b or corrected_a + corrected_b:
            log.info(
                "Workday transaction log since %s: %d rescinded and %d corrected transaction(s), re-read",
                _moment(cursor),
                rescinded_a + rescinded_b,
                corrected_a + corrected_b,
            )
        return ChangeSet(employee_ids=list(dict.fromkeys([*entered, *effective])), next_cursor=asked_at)

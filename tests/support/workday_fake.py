"""A stateful Workday fake: a custom report (RaaS, JSON) and ``Get_Workers`` of the Human_Resources web service.

Modelled on Workday's documented interfaces as Microsoft Entra's Workday integration reference shows them
(learn.microsoft.com/entra/identity/app-provisioning/workday-integration-reference: the request shapes,
``Response_Results`` paging, the XPaths of the worker data) and the Get_Workers reference (Transaction_Log
data types). What it enforces:

- RaaS: ``GET /ccx/service/customreport2/{tenant}/{owner}/{report}?format=json`` with HTTP Basic
  ``user@tenant`` + password (else 401) → ``{"Report_Entry": [...]}`` (empty fields left out, booleans
  ``"1"``/``"0"``); an unknown report → 404;
- SOAP: ``POST /ccx/service/{tenant}/Human_Resources/{version}``; the WS-Security ``UsernameToken`` must
  match, else a SOAP fault (HTTP 500, ``SOAP-ENV:Client.authenticationError``); a request carrying a DTD is
  refused; ``Request_References`` by Employee_ID (an unknown id → ``Client.validationError`` "Invalid ID
  value"); ``Transaction_Log_Criteria_Data`` with either the entered window (``Updated_From``/``Through``)
  or the effective window (``Effective_From``/``Through``) selects the workers with a transaction in it;
  ``Response_Filter/Count`` 1..999 and ``Page``, answered with ``Response_Results`` (``Total_Pages``);
  ``Include_Transaction_Log_Data`` adds each worker's transaction log with the rescind/correction flags.

A rehired worker keeps the previous ``Termination_Date`` and has ``Rehire`` = 1; a future-dated hire is
``Active`` = 0 until its hire date (as Entra's reference notes).
"""

from __future__ import annotations

import base64
import math
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

import httpx

from tests.support.hris_fake import FakeHRIS, Person, Transaction

__all__ = ["WorkdayFake"]

NS = {
    "env": "http://schemas.xmlsoap.org/soap/envelope/",
    "wd": "urn:com.workday/bsvc",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
}


def _fault(code: str, text: str) -> httpx.Response:
    body = (
        f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{NS["env"]}"><SOAP-ENV:Body><SOAP-ENV:Fault>'
        f"<faultcode>{code}</faultcode><faultstring>{escape(text)}</faultstring>"
        "</SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    )
    return httpx.Response(500, content=body.encode(), headers={"Content-Type": "text/xml; charset=utf-8"})


def _moment(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class WorkdayFake(FakeHRIS):
    source = "workday"
    base_url = "https://wd2-impl-services1.workday.test/ccx/service/"
    tenant = "acme_impl"
    username = "ISU_Tenure"
    password = "wd-fake-pa55&<word>"
    report = "ISU_Tenure/Tenure_Workers"
    version = "v41.0"

    @property
    def user(self) -> str:
        return f"{self.username}@{self.tenant}"

    # -- HR actions Workday has ---------------------------------------------------------------------------

    def rescind_termination(self, employee_id: str) -> Person:
        """Undo a termination: the termination and the rescind are flagged in the transaction log."""
        person = self.people[employee_id]
        for transaction in person.transactions:
            if transaction.description == "Termination" and not transaction.rescinded:
                transaction.rescinded = True
        person.termination_date = None
        self._touch(person, "Rescind Termination")
        person.transactions[-1].rescinded = True
        return person

    def correct_hire_date(self, employee_id: str, hire_date: str) -> Person:
        """Correct the hire date: the hire and the correction are flagged, effective on the new date."""
        person = self.people[employee_id]
        for transaction in person.transactions:
            if transaction.description == "Hire":
                transaction.corrected = True
        person.hire_date = hire_date
        self._touch(person, "Correct Hire", hire_date)
        person.transactions[-1].corrected = True
        return person

    # -- rendering ----------------------------------------------------------------------------------------

    def _active(self, person: Person) -> bool:
        today = self.today
        return not (person.terminated(today) or person.future_hire(today))

    def report_entry(self, person: Person) -> dict[str, Any]:
        entry = {
            "Employee_ID": person.employee_id,
            "First_Name": person.first_name,
            "Last_Name": person.last_name,
            "Work_Email": person.work_email,
            "Home_Email": person.personal_email,
            "Department": person.department,
            "Business_Title": person.title,
            "Manager_Employee_ID": person.manager_id,
            "Location": person.location,
            "Worker_Type": person.employment_type,
            "Hire_Date": person.hire_date,
            "Termination_Date": person.termination_date or person.previous_termination_date,
            "Active": "1" if self._active(person) else "0",
            "On_Leave": "1" if person.on_leave else "0",
            "Rehire": "1" if person.previous_hire_date else "0",
        }
        return {k: v for k, v in entry.items() if v not in (None, "")}  # RaaS JSON leaves empty fields out

    def worker_xml(self, person: Person, *, log: bool = False, full: bool = True) -> str:
        def date_element(tag: str, value: str | None) -> str:
            return f"<wd:{tag}>{escape(value)}-08:00</wd:{tag}>" if value else ""

        def text(tag: str, value: str | None) -> str:
            return f"<wd:{tag}>{escape(value)}</wd:{tag}>" if value else ""

        wid = f"wid{person.employee_id}"
        reference = (
            f'<wd:Worker_Reference><wd:ID wd:type="WID">{wid}</wd:ID>'
            f'<wd:ID wd:type="Employee_ID">{escape(person.employee_id)}</wd:ID></wd:Worker_Reference>'
        )
        parts = [f"<wd:Worker>{reference}<wd:Worker_Data>", text("Worker_ID", person.employee_id)]
        if full:
            emails = "".join(
                f"<wd:Email_Address_Data><wd:Email_Address>{escape(address)}</wd:Email_Address><wd:Usage_Data>"
                f'<wd:Type_Data><wd:Type_Reference wd:Descriptor="{usage}"/></wd:Type_Data>'
                "</wd:Usage_Data></wd:Email_Address_Data>"
                for address, usage in ((person.work_email, "Work"), (person.personal_email, "Home"))
                if address
            )
            worker_type = (
                f'<wd:Worker_Type_Reference wd:Descriptor="{escape(person.employment_type)}"/>'
                if person.employment_type
                else ""
            )
            site = (
                f"<wd:Business_Site_Summary_Data>{text('Name', person.location)}</wd:Business_Site_Summary_Data>"
                if person.location
                else ""
            )
            leave = f"<wd:Leave_Status_Data><wd:On_Leave>{int(person.on_leave)}</wd:On_Leave></wd:Leave_Status_Data>"
            parts += [
                "<wd:Personal_Data><wd:Name_Data><wd:Legal_Name_Data><wd:Name_Detail_Data>",
                text("First_Name", person.first_name),
                text("Last_Name", person.last_name),
                "</wd:Name_Detail_Data></wd:Legal_Name_Data></wd:Name_Data>",
                f"<wd:Contact_Data>{emails}</wd:Contact_Data></wd:Personal_Data>",
                '<wd:Employment_Data><wd:Worker_Job_Data wd:Primary_Job="1"><wd:Position_Data>',
                text("Business_Title", person.title),
                site,
                worker_type,
                "</wd:Position_Data></wd:Worker_Job_Data><wd:Worker_Status_Data>",
                f"<wd:Active>{int(self._active(person))}</wd:Active>",
                date_element("Hire_Date", person.hire_date),
                date_element("Termination_Date", person.termination_date or person.previous_termination_date),
                f"<wd:Rehire>{int(bool(person.previous_hire_date))}</wd:Rehire>",
                leave,
                "</wd:Worker_Status_Data></wd:Employment_Data>",
            ]
            if person.department:
                parts.append(
                    "<wd:Organization_Data><wd:Worker_Organization_Data><wd:Organization_Data>"
                    f"{text('Organization_Name', person.department)}<wd:Organization_Type_Reference>"
                    '<wd:ID wd:type="Organization_Type_ID">SUPERVISORY</wd:ID></wd:Organization_Type_Reference>'
                    "</wd:Organization_Data></wd:Worker_Organization_Data></wd:Organization_Data>"
                )
            if person.manager_id:
                parts.append(
                    "<wd:Management_Chain_Data><wd:Worker_Supervisory_Management_Chain_Data>"
                    "<wd:Management_Chain_Data><wd:Manager_Reference>"
                    f'<wd:ID wd:type="WID">wid{escape(person.manager_id)}</wd:ID>'
                    f'<wd:ID wd:type="Employee_ID">{escape(person.manager_id)}</wd:ID>'
                    "</wd:Manager_Reference></wd:Management_Chain_Data>"
                    "</wd:Worker_Supervisory_Management_Chain_Data></wd:Management_Chain_Data>"
                )
        if log:
            parts.append("<wd:Transaction_Log_Entry_Data>")
            parts += [self._log_entry(t) for t in person.transactions]
            parts.append("</wd:Transaction_Log_Entry_Data>")
        parts.append("</wd:Worker_Data></wd:Worker>")
        return "".join(parts)

    @staticmethod
    def _log_entry(transaction: Transaction) -> str:
        return (
            "<wd:Transaction_Log_Entry><wd:Transaction_Log_Data>"
            f"<wd:Transaction_Log_Description>{escape(transaction.description)}</wd:Transaction_Log_Description>"
            f"<wd:Transaction_Effective_Moment>{transaction.effective_at.isoformat()}</wd:Transaction_Effective_Moment>"
            f"<wd:Transaction_Entry_Moment>{transaction.entered_at.isoformat()}</wd:Transaction_Entry_Moment>"
            f"<wd:Is_Rescind_Or_Rescinded>{int(transaction.rescinded)}</wd:Is_Rescind_Or_Rescinded>"
            f"<wd:Is_Correction_Or_Corrected>{int(transaction.corrected)}</wd:Is_Correction_Or_Corrected>"
            "</wd:Transaction_Log_Data></wd:Transaction_Log_Entry>"
        )

    # -- routes -------------------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        prefix = "/ccx/service/"
        if request.method == "GET" and path.startswith(f"{prefix}customreport2/"):
            expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            if request.headers.get("Authorization") != f"Basic {expected}":
                return httpx.Response(401, text="Unauthorized")
            if path != f"{prefix}customreport2/{self.tenant}/{self.report}":
                return httpx.Response(404, text="report not found")
            if request.url.params.get("format") != "json":
                return httpx.Response(200, text="<wd:Report_Data/>", headers={"Content-Type": "text/xml"})
            entries = [self.report_entry(p) for p in self.people.values()]
            return httpx.Response(200, json={"Report_Entry": entries})
        if request.method == "POST" and path == f"{prefix}{self.tenant}/Human_Resources/{self.version}":
            return self._soap(request)
        return httpx.Response(404, text="not found")

    def _soap(self, request: httpx.Request) -> httpx.Response:
        if b"<!DOCTYPE" in request.content:
            return _fault("SOAP-ENV:Client", "DTD not allowed")
        try:
            envelope = ET.fromstring(request.content)
        except ET.ParseError:
            return _fault("SOAP-ENV:Client", "malformed XML")
        token = envelope.find("env:Header/wsse:Security/wsse:UsernameToken", NS)
        user = token.findtext("wsse:Username", namespaces=NS) if token is not None else None
        password = token.findtext("wsse:Password", namespaces=NS) if token is not None else None
        if (user, password) != (self.user, self.password):
            return _fault("SOAP-ENV:Client.authenticationError", "invalid username or password")
        ask = envelope.find("env:Body/wd:Get_Workers_Request", NS)
        if ask is None:
            return _fault("SOAP-ENV:Client.validationError", "unknown operation")
        count = int(ask.findtext("wd:Response_Filter/wd:Count", "100", NS))
        page = int(ask.findtext("wd:Response_Filter/wd:Page", "1", NS))
        if not 1 <= count <= 999:
            return _fault("SOAP-ENV:Client.validationError", "Count must be between 1 and 999")
        log = ask.findtext("wd:Response_Group/wd:Include_Transaction_Log_Data", "0", NS) in ("1", "true")
        full = ask.findtext("wd:Response_Group/wd:Include_Personal_Information", "0", NS) in ("1", "true")
        reference = ask.find("wd:Request_References/wd:Worker_Reference/wd:ID", NS)
        if reference is not None:
            person = self.people.get(reference.text or "")
            if person is None:
                kind = reference.get(f"{{{NS['wd']}}}type")
                return _fault(
                    "SOAP-ENV:Client.validationError",
                    f"Invalid ID value. '{reference.text}' is not a valid ID value for type = '{kind}'",
                )
            selected = [person]
        else:
            window = ask.find(
                "wd:Request_Criteria/wd:Transaction_Log_Criteria_Data/wd:Transaction_Date_Range_Data", NS
            )
            if window is None:
                selected = list(self.people.values())
            else:
                selected = self._in_window(window)
                if selected is None:
                    return _fault("SOAP-ENV:Client.validationError", "a date range needs From and Through")
        pages = max(1, math.ceil(len(selected) / count))
        chunk = selected[(page - 1) * count : page * count]
        workers = "".join(self.worker_xml(p, log=log, full=full) for p in chunk)
        body = (
            f'<env:Envelope xmlns:env="{NS["env"]}"><env:Body>'
            f'<wd:Get_Workers_Response xmlns:wd="{NS["wd"]}" wd:version="{self.version}">'
            f"<wd:Response_Results><wd:Total_Results>{len(selected)}</wd:Total_Results>"
            f"<wd:Total_Pages>{pages}</wd:Total_Pages><wd:Page_Results>{len(chunk)}</wd:Page_Results>"
            f"<wd:Page>{page}</wd:Page></wd:Response_Results>"
            f"<wd:Response_Data>{workers}</wd:Response_Data></wd:Get_Workers_Response></env:Body></env:Envelope>"
        )
        return httpx.Response(200, content=body.encode(), headers={"Content-Type": "text/xml; charset=utf-8"})

    def _in_window(self, window: ET.Element) -> list[Person] | None:
        updated = (
            window.findtext("wd:Updated_From", None, NS),
            window.findtext("wd:Updated_Through", None, NS),
        )
        effective = (
            window.findtext("wd:Effective_From", None, NS),
            window.findtext("wd:Effective_Through", None, NS),
        )
        if all(updated):
            low, high = _moment(updated[0]), _moment(updated[1])
            return [
                p for p in self.people.values() if any(low <= t.entered_at <= high for t in p.transactions)
            ]
        if all(effective):
            low, high = _moment(effective[0]), _moment(effective[1])
            return [
                p for p in self.people.values() if any(low <= t.effective_at <= high for t in p.transactions)
            ]
        return None

    def roster_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if "/customreport2/" in r.url.path]

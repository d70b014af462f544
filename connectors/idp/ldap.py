"""LDAP directory (OpenLDAP, 389-DS, Active Directory) as an :class:`~connectors.protocols.IdentityProvider`.

Two entry layouts (:mod:`connectors.idp.ldap_layout`): RFC 2798/4519 by default, Active Directory's with
``deactivation_method="ad_uac"`` (see "Active Directory" below). RFC layout (all OUs relative to
``base_dn`` unless given as full DNs)::

    <users_ou>,<base_dn>       uid=<userName>   objectClass inetOrgPerson (RFC 2798)
    <disabled_ou>,<base_dn>    deactivated accounts (method "move")
    <groups_ou>,<base_dn>      cn=<name>        objectClass groupOfNames (RFC 4519 §3.5), ``member`` DNs

Attribute mapping (:data:`FIELD_TO_LDAP`): ``user_name`` → ``uid`` (also the RDN), ``employee_id`` →
``employeeNumber``, ``given_name`` → ``givenName``, ``family_name`` → ``sn``, ``display_name`` →
``displayName`` and ``cn``, ``email`` → ``mail``, ``title`` → ``title``, ``department`` →
``departmentNumber``, ``manager_id`` → ``manager`` (a DN: written by looking the manager up by
``employeeNumber``, read back as the manager's ``employeeNumber``).

Account and group ids are the entries' ``entryUUID`` (RFC 4530): a DN changes when an account moves to the
disabled OU or is renamed, the UUID does not.

Deactivation (a leaver), chosen with ``deactivation_method``:

* ``"move"`` (default): replace ``userPassword`` with the salted hash of a random value nobody knows, then
  move the entry to the disabled OU (ModifyDN with newSuperior, RFC 4511 §4.9). ``active`` is "not under
  the disabled OU". Reactivation moves it back; the password stays scrambled (a reset is a ticket).
  With OpenLDAP's refint overlay, ``member`` and ``manager`` values follow the move.
* ``"ad_uac"``: Active Directory's way: set bit ``0x2`` (ACCOUNTDISABLE) of ``userAccountControl``
  (MS-ADTS §2.2.16, default value 512 NORMAL_ACCOUNT); reactivation clears it; ``active`` is "bit not set".

Active Directory (tested against a real Samba AD DC, tests/contract/test_idp_ad.py):

* users are ``user`` objects ``cn=<user name>`` in the users OU, found with
  ``(&(objectCategory=person)(objectClass=user))``; the user name is ``userPrincipalName`` (or
  ``sAMAccountName``, ``user_name_attribute``), the employee id ``employeeID`` (or ``employeeNumber``,
  ``employee_id_attribute``), the department ``department``; ids are ``objectGUID`` (binary, shown in AD's
  string form). A joiner is added with ``userAccountControl`` 514 and a random ``unicodePwd`` (quoted
  UTF-16-LE, so LDAPS is required), then set to 512 when active: the scripted creation MS documents
  (https://learn.microsoft.com/troubleshoot/windows-server/active-directory/useraccountcontrol-manipulate-account-properties).
* groups are ``group`` objects; ``member`` is a linked attribute that may be empty (no placeholder). AD
  answers an existing value with entryAlreadyExists (68) and a missing one with unwillingToPerform (53), each
  checked against the group before it is taken as "already so".
* a disabled account's own bind fails with result 49 and ``data 533`` in the diagnostic (Win32 error
  0x533, ERROR_ACCOUNT_DISABLED); paging (RFC 2696) is capped by the DC's MaxPageSize (1000 by default,
  https://learn.microsoft.com/troubleshoot/windows-server/active-directory/view-set-ldap-policy-using-ntdsutil).

An entry without an employee id (made by hand, not by Tenure) is listed with an empty one: the access
review reports it as an orphan and no employee-id look-up ever returns it.

Empty groups: groupOfNames requires at least one ``member``, so a group whose last member is removed keeps
the group's own DN as a placeholder member; it is never reported as a member and is dropped again when a
real member is added.

Filters escape every value with RFC 4515 §3 rules (``escape_filter_chars``), RDN values with RFC 4514 §2.4
rules (``escape_rdn``): a userName ``*)(uid=*`` matches only itself. The bind password is a ``SecretStr``,
revealed only when binding and cleared from the ldap3 connection afterwards;
it never appears in a repr, a log line or an exception.

ldap3 is synchronous: each operation runs in a worker thread (``anyio.to_thread``) on one shared
connection guarded by a lock, so concurrent calls are serialised; :meth:`iter_users` pages (RFC 2696) on a
connection of its own so its paging cookie is never disturbed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import secrets
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Literal, TypeVar

import anyio.to_thread
import ldap3
from ldap3.core import exceptions as lx
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn, parse_dn
from ldap3.utils.hashed import hashed
from pydantic import SecretStr

from connectors.errors import (
    AuthenticationError,
    ConflictError,
    ConnectorError,
    InvalidRecordError,
    NetworkError,
    NotFoundError,
    PermanentAPIError,
    RetryableAPIError,
)
from connectors.http import AsyncClosing
from connectors.idp.fallback import create_one_by_one
from connectors.idp.ldap_layout import (
    ACTIVE_DIRECTORY,
    OPENLDAP,
    SAM_ACCOUNT_NAME_FORBIDDEN,
    DirectoryLayout,
    ad_password_value,
    dns_domain,
    id_filter_value,
    id_text,
    random_ad_password,
    sam_account_name_candidates,
    sam_account_name_problem,
)
from models.domain import Account, AccountAttributes, Group

__all__ = [
    "ACCOUNTDISABLE",
    "FIELD_TO_LDAP",
    "USER_OBJECT_CLASSES",
    "DeactivationMethod",
    "LDAPIdentityProvider",
    "canonical_dn",
    "entry_to_account",
    "first_rdn_value",
    "is_under",
    "modify_changes",
    "new_user_attributes",
    "parse_ldap_timestamp",
    "scrambled_password",
    "translate_error",
    "uac_with_disabled",
    "user_filter",
    "user_rdn",
]

log = logging.getLogger(__name__)

SOURCE = "ldap"
DeactivationMethod = Literal["move", "ad_uac"]
T = TypeVar("T")

FIELD_TO_LDAP: dict[str, str] = dict(OPENLDAP.fields)
USER_OBJECT_CLASSES = list(OPENLDAP.user_classes)
ACCOUNTDISABLE = 0x2  # MS-ADTS 2.2.16 userAccountControl flag
NORMAL_ACCOUNT = 0x200
_FULL_SCAN_THRESHOLD = 20  # resolve more member DNs than this with one scan instead of one read each


# --------------------------------------------------------------------------- pure helpers (no I/O)

_HEX_ESCAPE = re.compile(r"\\([0-9A-Fa-f]{2})|\\(.)")


def _unescape_dn_value(value: str) -> str:
    """Decode RFC 4514 §2.4 escapes (``\\22`` hex pairs as UTF-8 bytes, ``\\"`` single characters)."""
    out = bytearray()
    pos = 0
    for match in _HEX_ESCAPE.finditer(value):
        out += value[pos : match.start()].encode()
        out += bytes([int(match.group(1), 16)]) if match.group(1) else match.group(2).encode()
        pos = match.end()
    out += value[pos:].encode()
    return out.decode("utf-8", errors="replace")


def canonical_dn(dn: str) -> tuple[tuple[tuple[str, str], ...], ...]:
    """A comparable form of ``dn``: escapes decoded, case folded, multi-valued RDNs sorted.

    Servers spell one DN several ways (``o\\"b`` vs ``o\\22b``, ``ou=People`` vs ``ou=people``); the
    naming attributes Tenure uses (uid, cn, ou, dc) match case-insensitively (RFC 4519).
    """
    rdns: list[list[tuple[str, str]]] = [[]]
    for attr, value, sep in parse_dn(dn, strip=True):
        rdns[-1].append((attr.lower(), _unescape_dn_value(value).casefold()))
        if sep == ",":
            rdns.append([])
    return tuple(tuple(sorted(rdn)) for rdn in rdns if rdn)


def is_under(dn: str, base: str) -> bool:
    """True when ``dn`` is strictly below ``base`` (any depth)."""
    entry, parent = canonical_dn(dn), canonical_dn(base)
    return len(entry) > len(parent) and entry[len(entry) - len(parent) :] == parent


def first_rdn_value(dn: str) -> str:
    """The unescaped value of the first RDN (``cn=sales,ou=groups,...`` → ``sales``)."""
    _attr, value, _sep = parse_dn(dn, strip=True)[0]
    return _unescape_dn_value(value)


def user_rdn(user_name: str, attribute: str = "uid") -> str:
    """``uid=<user_name>`` (``cn=`` in Active Directory) with RFC 4514 escaping."""
    return f"{attribute}={escape_rdn(user_name)}"


def user_filter(attribute: str, value: str, class_filter: str = OPENLDAP.user_class_filter) -> str:
    """A user equality filter (inetOrgPerson unless told) with ``value`` escaped per RFC 4515 §3."""
    return f"(&{class_filter}({attribute}={escape_filter_chars(value)}))"


def _fallback_name(attributes: Mapping[str, Any]) -> str:
    return str(attributes.get("user_name") or "")


def new_user_attributes(
    attributes: AccountAttributes, *, manager_dn: str | None, layout: DirectoryLayout = OPENLDAP
) -> dict[str, list[str]]:
    """LDAP attributes for a new user entry. inetOrgPerson's ``sn`` and ``cn`` are mandatory, so they fall
    back to the user name when the HRIS has no family / display name; in Active Directory ``cn`` is the
    RDN (set by the DN) and ``sn`` is optional."""
    names = layout.fields
    values: dict[str, str | None] = {names[f]: getattr(attributes, f) for f in names if f != "manager_id"}
    values[names["manager_id"]] = manager_dn
    if layout.cn_is_display_name:
        given_family = " ".join(p for p in (attributes.given_name, attributes.family_name) if p)
        values[names["family_name"]] = attributes.family_name or attributes.user_name
        values["cn"] = attributes.display_name or given_family or attributes.user_name
    return {name: [value] for name, value in values.items() if value}


def modify_changes(
    changes: Mapping[str, Any],
    *,
    manager_dn: str | None,
    user_name: str,
    layout: DirectoryLayout = OPENLDAP,
) -> dict[str, list[tuple[str, list[str]]]]:
    """The MODIFY_REPLACE list for ``changes`` (AccountAttributes names), nothing else.

    ``user_name`` (a rename) and ``active`` are not attribute writes and are left to the caller.
    ``None`` deletes an optional attribute; inetOrgPerson's mandatory ``sn``/``cn`` fall back to
    ``user_name``. ``manager_dn`` is the resolved DN for ``manager_id`` (None: remove the manager).
    """
    unknown = set(changes) - set(layout.fields) - {"active"}
    if unknown:
        raise InvalidRecordError(f"not an account attribute: {', '.join(sorted(unknown))}", source=SOURCE)
    mods: dict[str, list[tuple[str, list[str]]]] = {}
    for field, value in changes.items():
        if field in ("user_name", "active"):
            continue
        attr = layout.fields[field]
        if field == "manager_id":
            mods[attr] = [(ldap3.MODIFY_REPLACE, [manager_dn] if manager_dn else [])]
            continue
        if field == "family_name" and not value and layout.cn_is_display_name:
            value = user_name
        new = [str(value)] if value not in (None, "") else []
        mods[attr] = [(ldap3.MODIFY_REPLACE, new)]
        if field == "display_name" and layout.cn_is_display_name:
            mods["cn"] = [(ldap3.MODIFY_REPLACE, [str(value) if value else user_name])]
    return mods


def _values(attributes: Mapping[str, Any], name: str) -> list[Any]:
    """All values of ``name`` (case-insensitive), always as a list."""
    value = attributes.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in attributes.items() if k.lower() == lowered), None)
    if value is None:
        return []
    if isinstance(value, list | tuple | set | frozenset):
        return [v for v in value if v not in (None, "", b"")]
    return [value] if value not in ("", b"") else []


def _first(attributes: Mapping[str, Any], name: str) -> str | None:
    values = _values(attributes, name)
    return str(values[0]) if values else None


_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)


def parse_ldap_timestamp(value: Any) -> datetime | None:
    """GeneralizedTime (RFC 4517 §3.3.13, e.g. ``20240131120000Z``) or an AD FILETIME (100 ns ticks since
    1601, as in ``lastLogonTimestamp``); 0 and unparseable values give None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value).strip()
    if text.isdigit() and len(text) > 14:
        ticks = int(text)
        return _FILETIME_EPOCH + timedelta(microseconds=ticks // 10) if ticks > 0 else None
    match = re.fullmatch(r"(\d{14})(?:[.,](\d+))?(Z|[+-]\d{4})?", text)
    if not match:
        return None
    moment = datetime.strptime(match.group(1), "%Y%m%d%H%M%S")
    if match.group(2):
        moment += timedelta(seconds=float(f"0.{match.group(2)}"))
    zone = match.group(3)
    if zone in (None, "Z"):
        return moment.replace(tzinfo=UTC)
    offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5])) * (1 if zone[0] == "+" else -1)
    return (moment - offset).replace(tzinfo=UTC)


def uac_with_disabled(uac: int | None, disabled: bool) -> int:
    """``userAccountControl`` with ACCOUNTDISABLE (0x2) set or cleared, other flags kept."""
    current = NORMAL_ACCOUNT if uac is None else uac
    return current | ACCOUNTDISABLE if disabled else current & ~ACCOUNTDISABLE


def scrambled_password() -> str:
    """A salted hash of 32 random bytes nobody ever sees: no password can bind against it."""
    return str(hashed(ldap3.HASHED_SALTED_SHA, secrets.token_urlsafe(32)))


def entry_to_account(
    dn: str,
    attributes: Mapping[str, Any],
    *,
    id_attribute: str,
    disabled_base: str,
    groups_base: str | None = None,
    method: DeactivationMethod = "move",
    manager_id: str | None = None,
    layout: DirectoryLayout = OPENLDAP,
) -> Account:
    """The Account for one directory entry; ``manager_id`` is the manager's employee id, looked up by
    the caller from the entry's ``manager`` DN."""
    names = layout.fields
    account_id = _first(attributes, id_attribute)
    user_names = (_first(attributes, name) for name in (names["user_name"], *layout.user_name_fallbacks))
    user_name = next(filter(None, user_names), None)
    if not account_id or not user_name:
        required = ((id_attribute, account_id), (names["user_name"], user_name))
        missing = [n for n, v in required if not v]
        raise InvalidRecordError(f"directory entry lacks {', '.join(missing)}", source=SOURCE)
    # No employee id: an account made by hand, not by Tenure. It is listed with an empty one, which the
    # access review reports as an orphan; it never matches an HR record.
    employee_id = _first(attributes, names["employee_id"]) or ""
    if method == "ad_uac":
        uac = _first(attributes, "userAccountControl")
        active = not (int(uac) & ACCOUNTDISABLE) if uac else True
    else:
        active = not is_under(dn, disabled_base)
    sign_ins = [
        moment
        for name in ("authTimestamp", "lastLogonTimestamp")
        for moment in map(parse_ldap_timestamp, _values(attributes, name))
        if moment
    ]
    groups = frozenset(
        first_rdn_value(str(group_dn))
        for group_dn in _values(attributes, "memberOf")
        if groups_base is None or is_under(str(group_dn), groups_base)
    )
    return Account(
        id=account_id,
        user_name=user_name,
        employee_id=employee_id,
        given_name=_first(attributes, names["given_name"]),
        family_name=_first(attributes, names["family_name"]),
        display_name=_first(attributes, names["display_name"])
        or (_first(attributes, "cn") if layout.cn_is_display_name else None),
        email=_first(attributes, names["email"]),
        title=_first(attributes, names["title"]),
        department=_first(attributes, names["department"]),
        manager_id=manager_id,
        active=active,
        last_sign_in=max(sign_ins) if sign_ins else None,
        groups=groups,
    )


# --------------------------------------------------------------------------- error translation

_NETWORK_ERRORS = (
    lx.LDAPCommunicationError,
    lx.LDAPResponseTimeoutError,
    lx.LDAPMaximumRetriesError,
    lx.LDAPServerPoolExhaustedError,
    lx.LDAPStartTLSError,
    OSError,
)


def translate_error(exc: Exception, what: str) -> ConnectorError:
    """Map an ldap3 failure onto the error tree; the message names the operation and the LDAP result
    (RFC 4511 Appendix A), never a DN value or a credential."""
    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, _NETWORK_ERRORS):
        return NetworkError(f"{what}: directory unreachable ({type(exc).__name__})", source=SOURCE)
    if isinstance(exc, lx.LDAPOperationResult):
        detail = f"{what}: {exc.description or type(exc).__name__} (LDAP result {exc.result})"
        if isinstance(
            exc,
            lx.LDAPInvalidCredentialsResult
            | lx.LDAPInsufficientAccessRightsResult
            | lx.LDAPInappropriateAuthenticationResult
            | lx.LDAPStrongerAuthRequiredResult
            | lx.LDAPConfidentialityRequiredResult,
        ):
            return AuthenticationError(detail, source=SOURCE)
        if isinstance(exc, lx.LDAPNoSuchObjectResult):
            return NotFoundError(detail, source=SOURCE)
        if isinstance(exc, lx.LDAPEntryAlreadyExistsResult):
            return ConflictError(detail, source=SOURCE)
        if isinstance(
            exc,
            lx.LDAPBusyResult
            | lx.LDAPUnavailableResult
            | lx.LDAPTimeLimitExceededResult
            | lx.LDAPAdminLimitExceededResult
            | lx.LDAPOtherResult,
        ):
            return RetryableAPIError(detail, source=SOURCE)
        return PermanentAPIError(detail, source=SOURCE)
    if isinstance(exc, lx.LDAPBindError):
        return AuthenticationError(f"{what}: bind refused", source=SOURCE)
    return PermanentAPIError(f"{what}: {type(exc).__name__}", source=SOURCE)


def _resolve_dn(rdn_or_dn: str, base_dn: str) -> str:
    """``ou=people`` → ``ou=people,<base_dn>``; a DN already ending in ``base_dn`` is kept."""
    if canonical_dn(rdn_or_dn)[-len(canonical_dn(base_dn)) :] == canonical_dn(base_dn):
        return rdn_or_dn
    return f"{rdn_or_dn},{base_dn}"


# --------------------------------------------------------------------------- the connector


class LDAPIdentityProvider(AsyncClosing):
    """An LDAP directory as an IdentityProvider (see the module docstring for layout and mapping)."""

    source = SOURCE

    def __init__(
        self,
        server_url: str,
        *,
        bind_dn: str,
        password: str | SecretStr | None,
        base_dn: str,
        users_ou: str = "ou=people",
        groups_ou: str = "ou=groups",
        disabled_ou: str = "ou=disabled",
        deactivation_method: DeactivationMethod = "move",
        allow_delete: bool = False,
        id_attribute: str | None = None,
        employee_id_attribute: str | None = None,
        user_name_attribute: str | None = None,
        upn_suffix: str | None = None,
        timeout_seconds: float = 30.0,
        verify_tls: bool = True,
    ) -> None:
        if deactivation_method not in ("move", "ad_uac"):
            raise ValueError("deactivation_method must be 'move' or 'ad_uac'")
        self._url = server_url.rstrip("/")
        self._bind_dn = bind_dn
        self._password = (
            password if isinstance(password, SecretStr) or password is None else SecretStr(password)
        )
        self.base_dn = base_dn
        self.users_base = _resolve_dn(users_ou, base_dn)
        self.groups_base = _resolve_dn(groups_ou, base_dn)
        self.disabled_base = _resolve_dn(disabled_ou, base_dn)
        self.deactivation_method: DeactivationMethod = deactivation_method
        self.layout = (ACTIVE_DIRECTORY if deactivation_method == "ad_uac" else OPENLDAP).with_overrides(
            id_attribute=id_attribute,
            employee_id_attribute=employee_id_attribute,
            user_name_attribute=user_name_attribute,
        )
        self.upn_suffix = upn_suffix or dns_domain(base_dn)
        self.allow_delete = allow_delete
        self.id_attribute = self.layout.id_attribute
        # Active Directory keeps leavers where they are (the flag disables them); "move" has two OUs.
        self._user_bases = (
            (self.users_base,) if deactivation_method == "ad_uac" else (self.users_base, self.disabled_base)
        )
        self._timeout = timeout_seconds
        self._verify_tls = verify_tls
        self._lock = threading.Lock()
        self._conn: ldap3.Connection | None = None

    def __repr__(self) -> str:
        return f"LDAPIdentityProvider(url={self._url!r}, bind_dn={self._bind_dn!r}, base_dn={self.base_dn!r})"

    @property
    def _active_directory(self) -> bool:
        return self.layout.kind == "ad"

    # ---------------------------------------------------------------- connection plumbing

    def _new_connection(self) -> ldap3.Connection:
        """Open and bind a connection; the password is dropped from it right after the bind."""
        tls = None
        if self._url.lower().startswith("ldaps://"):
            tls = ldap3.Tls(validate=ssl.CERT_REQUIRED if self._verify_tls else ssl.CERT_NONE)
        server = ldap3.Server(self._url, get_info=ldap3.NONE, connect_timeout=self._timeout, tls=tls)
        conn = ldap3.Connection(
            server,
            user=self._bind_dn,
            password=self._password.get_secret_value() if self._password else None,
            raise_exceptions=True,
            receive_timeout=max(1, math.ceil(self._timeout)),  # ldap3 packs it as an integer
            auto_range=True,
        )
        try:
            conn.bind()
        except BaseException:
            with contextlib.suppress(Exception):
                conn.unbind()  # closes the socket of a refused bind
            sock = getattr(conn, "socket", None)
            if sock is not None:  # ldap3 keeps the socket of a refused connect open
                with contextlib.suppress(Exception):
                    sock.close()
            raise
        finally:
            conn.password = None  # ldap3's Connection.__repr__ would print it
        return conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: nothing left to close cleanly
                conn.unbind()

    def _locked(self, fn: Callable[[ldap3.Connection], T], what: str) -> T:
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._new_connection()
                return fn(self._conn)
            except Exception as exc:
                if isinstance(exc, _NETWORK_ERRORS):
                    self._drop_connection()
                raise translate_error(exc, what) from exc

    async def _call(self, fn: Callable[[ldap3.Connection], T], what: str) -> T:
        return await anyio.to_thread.run_sync(self._locked, fn, what)

    async def aclose(self) -> None:
        """Unbind the shared connection (a later call opens a new one)."""

        def close() -> None:
            with self._lock:
                self._drop_connection()

        await anyio.to_thread.run_sync(close)

    # ---------------------------------------------------------------- sync building blocks (under lock)

    def _entry(self, entry: dict[str, Any]) -> dict[str, Any]:
        """One search result with its id attribute as text (``objectGUID`` comes as 16 raw bytes)."""
        if self.layout.binary_id:
            raw = _values(entry.get("raw_attributes") or {}, self.id_attribute)
            text = id_text(self.layout, raw[0]) if raw else None
            entry["attributes"][self.id_attribute] = [text] if text else []
        return entry

    def _entries(self, conn: ldap3.Connection) -> list[dict[str, Any]]:
        return [self._entry(e) for e in conn.response if e.get("type") == "searchResEntry"]

    def _user_filter(self, attribute: str, value: str) -> str:
        return user_filter(attribute, value, self.layout.user_class_filter)

    def _id_filter(self, class_filter: str, object_id: str) -> str | None:
        value = id_filter_value(self.layout, object_id)
        return None if value is None else f"(&{class_filter}({self.id_attribute}={value}))"

    def _is_user_dn(self, dn: str) -> bool:
        return any(is_under(dn, base) for base in self._user_bases)

    def _search_users(self, conn: ldap3.Connection, search_filter: str) -> list[dict[str, Any]]:
        conn.search(self.base_dn, search_filter, ldap3.SUBTREE, attributes=self.layout.read_attributes())
        return [e for e in self._entries(conn) if self._is_user_dn(e["dn"])]

    def _read_entry(self, conn: ldap3.Connection, dn: str, attributes: list[str]) -> dict[str, Any] | None:
        try:
            conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=attributes)
        except lx.LDAPNoSuchObjectResult:
            return None
        entries = self._entries(conn)
        return entries[0] if entries else None

    def _user_entry(self, conn: ldap3.Connection, account_id: str) -> dict[str, Any] | None:
        search_filter = self._id_filter(self.layout.user_class_filter, account_id)
        entries = self._search_users(conn, search_filter) if search_filter else []
        return entries[0] if entries else None

    def _require_user(self, conn: ldap3.Connection, account_id: str) -> dict[str, Any]:
        entry = self._user_entry(conn, account_id)
        if entry is None:
            raise NotFoundError("no account with this id", source=SOURCE)
        return entry

    def _manager_dn(self, conn: ldap3.Connection, manager_id: str | None) -> str | None:
        if not manager_id:
            return None
        entries = self._search_users(conn, self._user_filter(self.layout.employee_id_attribute, manager_id))
        if not entries:
            log.warning("ldap: manager not in the directory yet; manager attribute left unset")
            return None
        return str(entries[0]["dn"])

    def _manager_id(
        self, conn: ldap3.Connection, entry: Mapping[str, Any], cache: dict[Any, str | None]
    ) -> str | None:
        manager_dn = _first(entry["attributes"], self.layout.fields["manager_id"])
        if not manager_dn:
            return None
        key = canonical_dn(manager_dn)
        if key not in cache:
            employee_id = self.layout.employee_id_attribute
            manager = self._read_entry(conn, manager_dn, [employee_id])
            cache[key] = _first(manager["attributes"], employee_id) if manager else None
        return cache[key]

    def _to_account(
        self, conn: ldap3.Connection, entry: Mapping[str, Any], cache: dict[Any, str | None] | None = None
    ) -> Account:
        return entry_to_account(
            entry["dn"],
            entry["attributes"],
            id_attribute=self.id_attribute,
            disabled_base=self.disabled_base,
            groups_base=self.groups_base,
            method=self.deactivation_method,
            manager_id=self._manager_id(conn, entry, {} if cache is None else cache),
            layout=self.layout,
        )

    def _to_accounts(
        self, conn: ldap3.Connection, *, entries: list[dict[str, Any]], cache: dict[Any, str | None]
    ) -> list[Account]:
        return [self._to_account(conn, entry, cache) for entry in entries]

    def _pick_one(self, entries: list[dict[str, Any]], what: str) -> dict[str, Any] | None:
        """One match, or the single active one among several; ambiguity is a ConflictError."""
        if len(entries) <= 1:
            return entries[0] if entries else None
        active = [e for e in entries if not is_under(e["dn"], self.disabled_base)]
        if len(active) == 1 and self.deactivation_method == "move":
            return active[0]
        raise ConflictError(f"{len(entries)} directory entries share this {what}", source=SOURCE)

    def _find_one(self, conn: ldap3.Connection, attribute: str, value: str) -> Account | None:
        entry = self._pick_one(self._search_users(conn, self._user_filter(attribute, value)), attribute)
        return self._to_account(conn, entry) if entry else None

    def _set_active(self, conn: ldap3.Connection, account_id: str, active: bool) -> None:
        entry = self._require_user(conn, account_id)
        dn = str(entry["dn"])
        if self.deactivation_method == "ad_uac":
            uac = _first(entry["attributes"], "userAccountControl")
            new = uac_with_disabled(int(uac) if uac else None, disabled=not active)
            conn.modify(dn, {"userAccountControl": [(ldap3.MODIFY_REPLACE, [str(new)])]})
            return
        rdn = user_rdn(str(_first(entry["attributes"], self.layout.user_name_attribute)))
        if not active:
            conn.modify(dn, {"userPassword": [(ldap3.MODIFY_REPLACE, [scrambled_password()])]})
            if not is_under(dn, self.disabled_base):
                conn.modify_dn(dn, rdn, new_superior=self.disabled_base)
        elif is_under(dn, self.disabled_base):
            conn.modify_dn(dn, rdn, new_superior=self.users_base)

    # ---------------------------------------------------------------- Active Directory logon names

    def _sam_account_name_taken(self, conn: ldap3.Connection, name: str) -> bool:
        conn.search(
            self.base_dn, f"(sAMAccountName={escape_filter_chars(name)})", ldap3.SUBTREE, attributes=[]
        )
        return bool(self._entries(conn))

    def _logon_names(self, conn: ldap3.Connection, user_name: str) -> dict[str, list[str]]:
        """``sAMAccountName`` and ``userPrincipalName`` for a new AD user.

        Keyed by UPN (default): the UPN is the user name, the sAMAccountName its local part when that is
        valid and free, else a derived one (see :func:`sam_account_name_candidates`). Keyed by
        sAMAccountName: the user name must be a valid one; the UPN is ``<user name>@<upn_suffix>``.
        """
        if self.layout.user_name_attribute == "sAMAccountName":
            problem = sam_account_name_problem(user_name)
            if problem:
                raise InvalidRecordError(
                    f"the user name cannot be an AD sAMAccountName: {problem}", source=SOURCE
                )
            return {"sAMAccountName": [user_name], "userPrincipalName": [f"{user_name}@{self.upn_suffix}"]}
        plain, derived = sam_account_name_candidates(user_name)
        sam = plain if plain and not self._sam_account_name_taken(conn, plain) else derived
        return {"sAMAccountName": [sam], "userPrincipalName": [user_name]}

    def _add_user(self, conn: ldap3.Connection, attributes: AccountAttributes) -> str:
        """Add the entry; returns its DN.

        OpenLDAP: ``uid=<user_name>`` under the users OU (the disabled OU when inactive, with a scrambled
        password). Active Directory (the way MS documents for scripted creation): ``cn=<user_name>`` under
        the users OU with ``userAccountControl`` 514 (disabled) and a random ``unicodePwd`` nobody knows
        (set over LDAPS), then 512 when the account is to be active.
        """
        manager_dn = self._manager_dn(conn, attributes.manager_id)
        values: dict[str, list[Any]] = new_user_attributes(
            attributes, manager_dn=manager_dn, layout=self.layout
        )
        if not self._active_directory:
            parent = self.users_base if attributes.active else self.disabled_base
            dn = f"{user_rdn(attributes.user_name)},{parent}"
            if not attributes.active:
                values["userPassword"] = [scrambled_password()]
            conn.add(dn, list(self.layout.user_classes), values)
            return dn
        dn = f"{user_rdn(attributes.user_name, 'cn')},{self.users_base}"
        values.update(self._logon_names(conn, attributes.user_name))
        values["userAccountControl"] = [str(NORMAL_ACCOUNT | ACCOUNTDISABLE)]
        values["unicodePwd"] = [ad_password_value(random_ad_password())]
        conn.add(dn, list(self.layout.user_classes), values)
        if attributes.active:
            conn.modify(dn, {"userAccountControl": [(ldap3.MODIFY_REPLACE, [str(NORMAL_ACCOUNT)])]})
        return dn

    def _rename(self, conn: ldap3.Connection, entry: Mapping[str, Any], user_name: str) -> None:
        """A new user name: the RDN follows (ModifyDN, RFC 4511 §4.9); in AD the logon names change too
        (keyed by UPN the sAMAccountName stays: it is meant never to change)."""
        dn = str(entry["dn"])
        if self._active_directory:
            names = {self.layout.user_name_attribute: [user_name]}
            if self.layout.user_name_attribute == "sAMAccountName":
                problem = sam_account_name_problem(user_name)
                if problem:
                    raise InvalidRecordError(
                        f"the user name cannot be an AD sAMAccountName: {problem}", source=SOURCE
                    )
                names["userPrincipalName"] = [f"{user_name}@{self.upn_suffix}"]
            conn.modify(dn, {name: [(ldap3.MODIFY_REPLACE, value)] for name, value in names.items()})
        conn.modify_dn(dn, user_rdn(user_name, self.layout.rdn_attribute), delete_old_dn=True)

    # ---------------------------------------------------------------- groups (under lock)

    def _group_attributes(self) -> list[str]:
        return ["cn", "member", self.id_attribute]

    def _group_entry(self, conn: ldap3.Connection, group_id: str) -> dict[str, Any]:
        search_filter = self._id_filter(self.layout.group_class_filter, group_id)
        entries: list[dict[str, Any]] = []
        if search_filter:
            conn.search(self.groups_base, search_filter, ldap3.SUBTREE, attributes=self._group_attributes())
            entries = self._entries(conn)
        if not entries:
            raise NotFoundError("no group with this id", source=SOURCE)
        return entries[0]

    def _is_member(self, conn: ldap3.Connection, group_dn: str, member_dn: str) -> bool:
        conn.search(group_dn, f"(member={escape_filter_chars(member_dn)})", ldap3.BASE, attributes=[])
        return bool(self._entries(conn))

    def _add_member_dn(self, conn: ldap3.Connection, group_dn: str, member_dn: str) -> None:
        """Add ``member_dn``; already there is fine: OpenLDAP answers attributeOrValueExists (20), AD
        entryAlreadyExists (68) for a linked value that exists."""
        try:
            conn.modify(group_dn, {"member": [(ldap3.MODIFY_ADD, [member_dn])]})
        except lx.LDAPAttributeOrValueExistsResult:
            pass
        except lx.LDAPEntryAlreadyExistsResult:
            if not self._is_member(conn, group_dn, member_dn):
                raise
        if self.layout.group_needs_member:  # a real member now: drop the empty-group placeholder
            with contextlib.suppress(lx.LDAPNoSuchAttributeResult):
                conn.modify(group_dn, {"member": [(ldap3.MODIFY_DELETE, [group_dn])]})

    def _remove_member_dn(self, conn: ldap3.Connection, group_dn: str, member_dn: str) -> None:
        """Remove ``member_dn``; not a member is fine: OpenLDAP answers noSuchAttribute (16), AD
        unwillingToPerform (53). groupOfNames' last member is swapped for the placeholder."""
        try:
            conn.modify(group_dn, {"member": [(ldap3.MODIFY_DELETE, [member_dn])]})
        except lx.LDAPNoSuchAttributeResult:
            pass  # not a member
        except lx.LDAPUnwillingToPerformResult:
            if self._is_member(conn, group_dn, member_dn):
                raise
        except lx.LDAPObjectClassViolationResult:  # the last member: leave the placeholder in its place
            conn.modify(
                group_dn, {"member": [(ldap3.MODIFY_ADD, [group_dn]), (ldap3.MODIFY_DELETE, [member_dn])]}
            )

    def _all_user_ids(self, conn: ldap3.Connection) -> dict[Any, str]:
        """canonical DN → account id for every account, read in pages (RFC 2696)."""
        ids: dict[Any, str] = {}
        for base in self._user_bases:
            for entry in conn.extend.standard.paged_search(
                base,
                self.layout.user_class_filter,
                ldap3.SUBTREE,
                attributes=[self.id_attribute],
                paged_size=500,
                generator=True,
            ):
                if entry.get("type") == "searchResEntry":
                    account_id = _first(self._entry(entry)["attributes"], self.id_attribute)
                    if account_id:
                        ids[canonical_dn(entry["dn"])] = account_id
        return ids

    def _member_ids(
        self, conn: ldap3.Connection, member_dns: Iterable[str], ids: dict[Any, str] | None
    ) -> set[str]:
        """Account ids for member DNs; the placeholder, nested groups and dangling DNs are left out."""
        dns = list(member_dns)
        if ids is None and len(dns) > _FULL_SCAN_THRESHOLD:
            ids = self._all_user_ids(conn)
        found: set[str] = set()
        for dn in dns:
            if ids is not None:
                account_id = ids.get(canonical_dn(dn))
            elif self._is_user_dn(dn):
                entry = self._read_entry(conn, dn, [self.id_attribute, "objectClass"])
                account_id = _first(entry["attributes"], self.id_attribute) if entry else None
            else:
                account_id = None
            if account_id:
                found.add(account_id)
        return found

    def _to_group(
        self, conn: ldap3.Connection, entry: Mapping[str, Any], ids: dict[Any, str] | None
    ) -> Group:
        attrs = entry["attributes"]
        return Group(
            id=str(_first(attrs, self.id_attribute)),
            name=_first(attrs, "cn") or first_rdn_value(entry["dn"]),
            member_ids=frozenset(self._member_ids(conn, (str(v) for v in _values(attrs, "member")), ids)),
        )

    # ---------------------------------------------------------------- IdentityProvider

    async def find_user_by_employee_id(self, employee_id: str) -> Account | None:
        """The account whose employee id attribute (``employeeNumber``; AD ``employeeID``) equals
        ``employee_id`` (RFC 4515-escaped), or None; an empty id matches nobody."""
        if not employee_id:
            return None
        attribute = self.layout.employee_id_attribute
        return await self._call(lambda c: self._find_one(c, attribute, employee_id), "find user")

    async def find_user_by_username(self, user_name: str) -> Account | None:
        """The account whose ``uid`` (AD: ``userPrincipalName`` or ``sAMAccountName``) equals ``user_name``
        (RFC 4515-escaped), or None."""
        attribute = self.layout.user_name_attribute
        return await self._call(lambda c: self._find_one(c, attribute, user_name), "find user")

    async def iter_users(self, *, page_size: int = 200) -> AsyncIterator[list[Account]]:
        """Every account (active and disabled OUs), one RFC 2696 page at a time, on its own connection."""

        def open_conn() -> ldap3.Connection:
            try:
                return self._new_connection()
            except Exception as exc:
                raise translate_error(exc, "list users") from exc

        def fetch(
            conn: ldap3.Connection, base: str, cookie: bytes | None
        ) -> tuple[list[dict[str, Any]], bytes | None]:
            try:
                conn.search(
                    base,
                    self.layout.user_class_filter,
                    ldap3.SUBTREE,
                    attributes=self.layout.read_attributes(),
                    paged_size=page_size,
                    paged_cookie=cookie,
                )
            except lx.LDAPNoSuchObjectResult:
                return [], None  # the disabled OU may not exist in a directory that never had a leaver
            except Exception as exc:
                raise translate_error(exc, "list users") from exc
            entries = self._entries(conn)
            control = conn.result.get("controls", {}).get("1.2.840.113556.1.4.319", {})
            return entries, control.get("value", {}).get("cookie") or None

        conn = await anyio.to_thread.run_sync(open_conn)
        cache: dict[Any, str | None] = {}
        try:
            for base in self._user_bases:
                cookie: bytes | None = None
                while True:
                    entries, cookie = await anyio.to_thread.run_sync(fetch, conn, base, cookie)
                    if entries:
                        # managers are resolved on the shared connection: this one carries the paging state
                        yield await self._call(
                            partial(self._to_accounts, entries=entries, cache=cache), "list users"
                        )
                    if not cookie:
                        break
        finally:
            with contextlib.suppress(Exception):
                conn.unbind()

    async def create_user(self, attributes: AccountAttributes) -> Account:
        """Add the user (see :meth:`_add_user`; inactive joiners are created disabled).

        Safe to retry: an entry with this employee id is returned, marked ``existing`` (``Account.found``).
        A different person holding the same user name is a ConflictError.
        """
        employee_id = self.layout.employee_id_attribute

        def create(conn: ldap3.Connection) -> Account:
            existing = self._find_one(conn, employee_id, attributes.employee_id)
            if existing is not None:
                return existing.found()
            try:
                dn = self._add_user(conn, attributes)
            except (lx.LDAPEntryAlreadyExistsResult, lx.LDAPConstraintViolationResult) as exc:
                # AD answers a taken userPrincipalName with constraintViolation (19), a taken DN or
                # sAMAccountName with entryAlreadyExists (68), as OpenLDAP does for a taken DN
                again = self._find_one(conn, employee_id, attributes.employee_id)
                if again is not None:  # a concurrent create won the race
                    return again.found()
                taken = isinstance(exc, lx.LDAPEntryAlreadyExistsResult) or self._find_one(
                    conn, self.layout.user_name_attribute, attributes.user_name
                )
                if taken:
                    raise ConflictError(
                        "an entry with this user name already exists", source=SOURCE
                    ) from None
                raise
            entry = self._read_entry(conn, dn, self.layout.read_attributes())
            if entry is None:
                raise NotFoundError("entry vanished right after creation", source=SOURCE)
            return self._to_account(conn, entry)

        return await self._call(create, "create user")

    async def update_user(self, account: Account, changes: dict[str, Any]) -> Account:
        """Write only ``changes``: one MODIFY_REPLACE per changed attribute (RFC 4511 §4.6); a new
        ``user_name`` is a ModifyDN rename (§4.9); ``active`` deactivates or reactivates."""

        def update(conn: ldap3.Connection) -> Account:
            entry = self._require_user(conn, account.id)
            current_name = _first(entry["attributes"], self.layout.user_name_attribute)
            user_name = str(changes.get("user_name") or current_name)
            manager_dn = (
                self._manager_dn(conn, changes.get("manager_id")) if "manager_id" in changes else None
            )
            mods = modify_changes(changes, manager_dn=manager_dn, user_name=user_name, layout=self.layout)
            manager = self.layout.fields["manager_id"]
            if "manager_id" in changes and changes["manager_id"] and manager_dn is None:
                del mods[manager]  # manager not provisioned yet: keep the old value, the next sync retries
            if "user_name" in changes and changes["user_name"] != current_name:
                self._rename(conn, entry, user_name)
            if mods:
                conn.modify(str(self._require_user(conn, account.id)["dn"]), mods)
            if "active" in changes:
                self._set_active(conn, account.id, bool(changes["active"]))
            return self._to_account(conn, self._require_user(conn, account.id))

        return await self._call(update, "update user")

    async def deactivate_user(self, account_id: str) -> None:
        """A leaver: scramble the password and move to the disabled OU (or set AD's ACCOUNTDISABLE)."""
        await self._call(lambda c: self._set_active(c, account_id, False), "deactivate user")

    async def reactivate_user(self, account_id: str) -> None:
        """Move back to the users OU (or clear ACCOUNTDISABLE); the password stays scrambled."""
        await self._call(lambda c: self._set_active(c, account_id, True), "reactivate user")

    async def delete_user(self, account_id: str) -> None:
        """Delete the entry, only when ``allow_delete`` is set; an already-deleted account is no error."""
        if not self.allow_delete:
            raise PermanentAPIError(
                "deleting LDAP accounts is disabled (set TENURE_IDP__ALLOW_DELETE=true to allow it)",
                source=SOURCE,
            )

        def delete(conn: ldap3.Connection) -> None:
            entry = self._user_entry(conn, account_id)
            if entry is None:
                return
            dn = str(entry["dn"])
            # Drop memberships first: a dangling member DN would hand this account's entitlements to the
            # next person given the same uid (refint cannot remove a groupOfNames' last member).
            conn.search(
                self.groups_base,
                f"(&{self.layout.group_class_filter}(member={escape_filter_chars(dn)}))",
                ldap3.SUBTREE,
                attributes=[],
            )
            for group_dn in [str(e["dn"]) for e in self._entries(conn)]:
                self._remove_member_dn(conn, group_dn, dn)
            conn.delete(dn)

        await self._call(delete, "delete user")

    async def create_group(self, name: str) -> Group:
        """Not in the Protocol: add ``cn=<name>`` under the groups OU, or return the existing one. A new
        groupOfNames holds only the placeholder member (its own DN); an AD group (global security, the
        default ``groupType``) starts empty, its ``sAMAccountName`` the name when valid (else AD picks one)."""

        def create(conn: ldap3.Connection) -> Group:
            dn = f"cn={escape_rdn(name)},{self.groups_base}"
            values: dict[str, list[str]] = {"cn": [name]}
            if self.layout.group_needs_member:
                values["member"] = [dn]
            elif not SAM_ACCOUNT_NAME_FORBIDDEN & set(name) and len(name) <= 256:
                values["sAMAccountName"] = [name]
            with contextlib.suppress(lx.LDAPEntryAlreadyExistsResult):
                conn.add(dn, list(self.layout.group_classes), values)
            entry = self._read_entry(conn, dn, self._group_attributes())
            if entry is None:
                raise NotFoundError("group vanished right after creation", source=SOURCE)
            return self._to_group(conn, entry, None)

        return await self._call(create, "create group")

    async def list_groups(self) -> list[Group]:
        """Every group under the groups OU with its member account ids."""

        def groups(conn: ldap3.Connection) -> list[Group]:
            conn.search(
                self.groups_base,
                self.layout.group_class_filter,
                ldap3.SUBTREE,
                attributes=self._group_attributes(),
            )
            entries = self._entries(conn)
            ids = self._all_user_ids(conn) if entries else {}
            return [self._to_group(conn, entry, ids) for entry in entries]

        return await self._call(groups, "list groups")

    async def list_members(self, group_id: str) -> set[str]:
        """Account ids in the group's ``member`` attribute (placeholder and non-accounts left out)."""

        def members(conn: ldap3.Connection) -> set[str]:
            entry = self._group_entry(conn, group_id)
            return self._member_ids(conn, (str(v) for v in _values(entry["attributes"], "member")), None)

        return await self._call(members, "list members")

    async def add_member(self, group_id: str, account_id: str) -> None:
        """Add the account's DN to ``member``; an existing value is fine."""

        def add(conn: ldap3.Connection) -> None:
            group_dn = str(self._group_entry(conn, group_id)["dn"])
            user_dn = str(self._require_user(conn, account_id)["dn"])
            self._add_member_dn(conn, group_dn, user_dn)

        await self._call(add, "add member")

    async def remove_member(self, group_id: str, account_id: str) -> None:
        """Remove the account's DN from ``member``; a non-member is fine. Removing a groupOfNames' last
        member puts the placeholder in its place in the same modify (groupOfNames needs a member)."""

        def remove(conn: ldap3.Connection) -> None:
            group_dn = str(self._group_entry(conn, group_id)["dn"])
            user = self._user_entry(conn, account_id)
            if user is None:
                return
            self._remove_member_dn(conn, group_dn, str(user["dn"]))

        await self._call(remove, "remove member")

    def _user_dns(self, conn: ldap3.Connection, account_ids: list[str]) -> dict[str, str]:
        """Account id (case-folded) → DN for the ids that name an account: one search per 100 ids."""
        found: dict[str, str] = {}
        for start in range(0, len(account_ids), 100):
            values = [id_filter_value(self.layout, a) for a in account_ids[start : start + 100]]
            terms = "".join(f"({self.id_attribute}={v})" for v in values if v is not None)
            if not terms:
                continue
            search_filter = f"(&{self.layout.user_class_filter}(|{terms}))"
            conn.search(self.base_dn, search_filter, ldap3.SUBTREE, attributes=[self.id_attribute])
            for entry in self._entries(conn):
                account_id = _first(entry["attributes"], self.id_attribute)
                if account_id and self._is_user_dn(entry["dn"]):
                    found[account_id.casefold()] = str(entry["dn"])
        return found

    def _change_members(
        self, conn: ldap3.Connection, group_id: str, account_ids: Sequence[str], *, add: bool
    ) -> dict[str, ConnectorError]:
        """One ``modify`` of ``member`` with every value that changes (RFC 4511 §4.6: all or nothing). If the
        server refuses it (a value changed meanwhile, a constraint on one member), each member is written on its
        own, so each is judged on its own."""
        group = self._group_entry(conn, group_id)
        group_dn = str(group["dn"])
        ids = list(dict.fromkeys(account_ids))
        dns = self._user_dns(conn, ids)
        failed: dict[str, ConnectorError] = {}
        if add:
            for account_id in ids:
                if account_id.casefold() not in dns:
                    failed[account_id] = NotFoundError("no account with this id", source=SOURCE)
        current = {canonical_dn(str(v)) for v in _values(group["attributes"], "member")}
        todo = {
            a: dn
            for a in ids
            if (dn := dns.get(a.casefold())) is not None and (canonical_dn(dn) in current) is not add
        }
        if not todo:
            return failed
        values = list(todo.values())
        if add:
            changes = [(ldap3.MODIFY_ADD, values)]
            if self.layout.group_needs_member and canonical_dn(group_dn) in current:
                changes.append((ldap3.MODIFY_DELETE, [group_dn]))  # a real member now: drop the placeholder
        else:
            changes = [(ldap3.MODIFY_DELETE, values)]
            left = current - {canonical_dn(dn) for dn in values}
            if self.layout.group_needs_member and not left:  # groupOfNames needs a member: the placeholder
                changes.insert(0, (ldap3.MODIFY_ADD, [group_dn]))
        try:
            conn.modify(group_dn, {"member": changes})
        except lx.LDAPOperationResult:
            write = self._add_member_dn if add else self._remove_member_dn
            for account_id, dn in todo.items():
                try:
                    write(conn, group_dn, dn)
                except lx.LDAPException as exc:
                    if isinstance(exc, _NETWORK_ERRORS):
                        raise
                    failed[account_id] = translate_error(exc, "add member" if add else "remove member")
        return failed

    async def create_users(self, attributes: Sequence[AccountAttributes]) -> list[Account | ConnectorError]:
        """One :meth:`create_user` per account (an LDAP ``add`` creates one entry)."""
        return await create_one_by_one(attributes, self.create_user)

    async def add_members(self, group_id: str, account_ids: Sequence[str]) -> dict[str, ConnectorError]:
        """Add every account's DN to ``member`` in one ``modify``; existing members are left out of it."""
        return await self._call(
            lambda c: self._change_members(c, group_id, account_ids, add=True), "add members"
        )

    async def remove_members(self, group_id: str, account_ids: Sequence[str]) -> dict[str, ConnectorError]:
        """Remove the accounts' DNs from ``member`` in one ``modify``; non-members (and unknown ids) are fine."""
        return await self._call(
            lambda c: self._change_members(c, group_id, account_ids, add=False), "remove members"
        )

    async def last_sign_in(self, account_id: str) -> datetime | None:
        """``authTimestamp`` (OpenLDAP lastbind overlay) or AD ``lastLogonTimestamp``; None when neither."""
        account = await self._call(
            lambda c: self._to_account(c, self._require_user(c, account_id)), "last sign-in"
        )
        return account.last_sign_in

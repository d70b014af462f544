"""What user and group entries look like in the two kinds of LDAP directory Tenure writes to.

* :data:`OPENLDAP`: RFC 2798 ``inetOrgPerson`` users named by ``uid``, RFC 4519 ``groupOfNames`` groups
  (OpenLDAP, 389-DS), ids from ``entryUUID`` (RFC 4530).
* :data:`ACTIVE_DIRECTORY`: the ``user`` and ``group`` classes of the AD schema (MS-ADSC), named by ``cn``;
  ids from ``objectGUID``, a 16-byte binary value shown in its usual string form (little-endian, as
  ADUC and PowerShell print it: https://learn.microsoft.com/windows/win32/adschema/a-objectguid);
  ``employeeID``, ``department``; the sign-in name is ``userPrincipalName`` (or ``sAMAccountName``).

Active Directory specifics the connector needs, as pure functions:

* ``sAMAccountName`` (https://learn.microsoft.com/windows/win32/adschema/a-samaccountname): 20 characters
  or fewer, none of ``" / \\ [ ] : ; | = , + * ? < >``; unique in the domain.
* ``unicodePwd`` (MS-ADTS 3.1.1.3.1.5.1, https://learn.microsoft.com/troubleshoot/windows-server/
  active-directory/set-user-password-with-ldifde): the password in double quotes, UTF-16-LE encoded,
  written only over an encrypted connection (LDAPS).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ldap3.utils.conv import escape_bytes, escape_filter_chars

__all__ = [
    "ACTIVE_DIRECTORY",
    "OPENLDAP",
    "SAM_ACCOUNT_NAME_FORBIDDEN",
    "SAM_ACCOUNT_NAME_MAX",
    "DirectoryLayout",
    "ad_password_value",
    "dns_domain",
    "id_filter_value",
    "id_text",
    "random_ad_password",
    "sam_account_name_candidates",
    "sam_account_name_problem",
]

SAM_ACCOUNT_NAME_MAX = 20
SAM_ACCOUNT_NAME_FORBIDDEN = frozenset('"/\\[]:;|=,+*?<>')


@dataclass(frozen=True)
class DirectoryLayout:
    """Object classes, naming and attribute names of one kind of directory."""

    kind: str
    user_classes: tuple[str, ...]
    user_class_filter: str
    group_classes: tuple[str, ...]
    group_class_filter: str
    rdn_attribute: str
    fields: Mapping[str, str]  # AccountAttributes field -> LDAP attribute
    id_attribute: str
    group_needs_member: bool  # groupOfNames MUST have a member: an emptied group keeps a placeholder
    cn_is_display_name: bool  # inetOrgPerson's cn is the display name; in AD cn is the RDN
    sign_in_attributes: tuple[str, ...]
    extra_read_attributes: tuple[str, ...] = field(default=())
    user_name_fallbacks: tuple[str, ...] = field(default=())  # read when the user-name attribute is unset

    @property
    def user_name_attribute(self) -> str:
        return self.fields["user_name"]

    @property
    def employee_id_attribute(self) -> str:
        return self.fields["employee_id"]

    @property
    def binary_id(self) -> bool:
        """``objectGUID`` is 16 raw bytes; ``entryUUID`` is already text."""
        return self.id_attribute.lower() == "objectguid"

    def read_attributes(self) -> list[str]:
        """Every attribute read for a user entry."""
        names = [
            *self.fields.values(),
            "cn",
            "memberOf",
            *self.sign_in_attributes,
            *self.extra_read_attributes,
        ]
        names.append(self.id_attribute)
        return list(dict.fromkeys(names))

    def with_overrides(
        self,
        *,
        id_attribute: str | None = None,
        employee_id_attribute: str | None = None,
        user_name_attribute: str | None = None,
    ) -> DirectoryLayout:
        """This layout with the configured id, employee-id and user-name attributes."""
        fields = dict(self.fields)
        if employee_id_attribute:
            fields["employee_id"] = employee_id_attribute
        if user_name_attribute:
            allowed = ("userPrincipalName", "sAMAccountName") if self.kind == "ad" else ("uid",)
            if user_name_attribute not in allowed:
                raise ValueError(
                    f"user_name_attribute must be one of {', '.join(allowed)} for this directory"
                )
            fields["user_name"] = user_name_attribute
        return replace(self, fields=fields, id_attribute=id_attribute or self.id_attribute)


OPENLDAP = DirectoryLayout(
    kind="rfc",
    user_classes=("top", "person", "organizationalPerson", "inetOrgPerson"),
    user_class_filter="(objectClass=inetOrgPerson)",
    group_classes=("top", "groupOfNames"),
    group_class_filter="(objectClass=groupOfNames)",
    rdn_attribute="uid",
    fields={
        "user_name": "uid",
        "employee_id": "employeeNumber",
        "given_name": "givenName",
        "family_name": "sn",
        "display_name": "displayName",
        "email": "mail",
        "title": "title",
        "department": "departmentNumber",
        "manager_id": "manager",
    },
    id_attribute="entryUUID",
    group_needs_member=True,
    cn_is_display_name=True,
    sign_in_attributes=("authTimestamp", "lastLogonTimestamp"),
    extra_read_attributes=("userAccountControl",),
)

ACTIVE_DIRECTORY = DirectoryLayout(
    kind="ad",
    user_classes=("top", "person", "organizationalPerson", "user"),
    user_class_filter="(&(objectCategory=person)(objectClass=user))",  # computers are objectClass=user too
    group_classes=("top", "group"),
    group_class_filter="(objectClass=group)",
    rdn_attribute="cn",
    fields={
        "user_name": "userPrincipalName",
        "employee_id": "employeeID",
        "given_name": "givenName",
        "family_name": "sn",
        "display_name": "displayName",
        "email": "mail",
        "title": "title",
        "department": "department",
        "manager_id": "manager",
    },
    id_attribute="objectGUID",
    group_needs_member=False,
    cn_is_display_name=False,
    sign_in_attributes=("lastLogonTimestamp",),
    extra_read_attributes=("userAccountControl", "sAMAccountName", "userPrincipalName"),
    user_name_fallbacks=("sAMAccountName",),  # an account made by hand may have no UPN
)


def id_text(layout: DirectoryLayout, raw: Any) -> str | None:
    """The id as text: ``objectGUID`` bytes → ``xxxxxxxx-xxxx-…`` (little-endian, AD's own form)."""
    if raw in (None, b"", ""):
        return None
    if layout.binary_id and isinstance(raw, bytes | bytearray) and len(raw) == 16:
        return str(uuid.UUID(bytes_le=bytes(raw)))
    return raw.decode() if isinstance(raw, bytes | bytearray) else str(raw)


def id_filter_value(layout: DirectoryLayout, account_id: str) -> str | None:
    """``account_id`` escaped for an equality filter on the id attribute (RFC 4515 §3); for ``objectGUID``
    its 16 bytes escaped one by one. None when the id cannot be one of this directory's ids."""
    if not layout.binary_id:
        return str(escape_filter_chars(account_id))
    try:
        return str(escape_bytes(uuid.UUID(account_id).bytes_le))
    except ValueError:
        return None


def sam_account_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a user's ``sAMAccountName``, or None when it can."""
    if not name or not name.strip(" ."):
        return "it is empty or only dots and spaces"
    if len(name) > SAM_ACCOUNT_NAME_MAX:
        return f"it is longer than {SAM_ACCOUNT_NAME_MAX} characters"
    if SAM_ACCOUNT_NAME_FORBIDDEN & set(name) or any(ord(ch) < 32 for ch in name):
        return 'it contains one of " / \\ [ ] : ; | = , + * ? < > or a control character'
    if name.endswith("$"):
        return "a trailing $ marks a computer account"
    return None


def sam_account_name_candidates(user_principal_name: str) -> tuple[str | None, str]:
    """(the UPN's local part when it is a valid ``sAMAccountName`` as it stands, a derived one that always is).

    The derived name keeps up to 13 allowed characters of the local part and adds ``-`` and six hex digits
    of the UPN's SHA-256, so two UPNs that clean up alike (``o*`` and ``o*@example.com``) stay apart.
    """
    local = user_principal_name.split("@", 1)[0]
    plain = local if sam_account_name_problem(local) is None else None
    kept = "".join(ch for ch in local if ch not in SAM_ACCOUNT_NAME_FORBIDDEN and ord(ch) >= 32 and ch != " ")
    kept = kept.strip(".$")[:13] or "user"
    digest = hashlib.sha256(user_principal_name.encode()).hexdigest()[:6]
    return plain, f"{kept}-{digest}"


def random_ad_password() -> str:
    """A password nobody ever sees that meets AD's default complexity (upper, lower, digit, symbol)."""
    return f"{secrets.token_urlsafe(30)}-Aa1"


def ad_password_value(password: str) -> bytes:
    """The ``unicodePwd`` value: the password in double quotes, UTF-16-LE (MS-ADTS 3.1.1.3.1.5.1)."""
    return f'"{password}"'.encode("utf-16-le")


def dns_domain(base_dn: str) -> str:
    """``DC=corp,DC=example,DC=com`` (or a DN below it) → ``corp.example.com``: the default UPN suffix."""
    parts = [rdn.split("=", 1)[1] for rdn in base_dn.split(",") if rdn.strip().lower().startswith("dc=")]
    return ".".join(part.strip() for part in parts)

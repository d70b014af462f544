"""SCIM resources and messages as ``scim2-models`` objects (RFC 7643 resources, RFC 7644 messages).

:mod:`connectors.idp.scim` imports this module on first need: reading a listing whose users, groups and
envelope have the plain shape (:func:`connectors.idp.scim.quick_user`, ``quick_group``, ``quick_envelope``)
needs none of it, and importing scim2-models costs about 0.4 s of CPU (pydantic reads its attribute
docstrings), most of a no-drift sync's start-up. Everything the provider sends in another shape, every Error
message, the ServiceProviderConfig and every PatchOp and replacement body is validated here.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from scim2_models import (
    Context,
    Email,
    EnterpriseUser,
    Error,
    GroupMember,
    ListResponse,
    Manager,
    Name,
    PatchOp,
    ServiceProviderConfig,
)
from scim2_models import Group as SCIMGroup
from scim2_models import User as SCIMUser

from connectors.errors import ResponseValidationError
from connectors.idp.scim import (
    ENTERPRISE_SCHEMA,
    GROUP_SCHEMA,
    PATCH_SCHEMA,
    USER_SCHEMA,
    find_last_sign_in,
    pick_email,
)
from models.domain import Account, AccountAttributes

__all__ = [
    "Context",
    "EnterpriseUser",
    "GroupMember",
    "SCIMUserEnterprise",
    "account_from_user",
    "assumed_config",
    "check_list_envelope",
    "group_patch_body",
    "group_payload",
    "manager_account_id",
    "new_group_payload",
    "parse_group",
    "parse_user",
    "patch_body",
    "read_config",
    "scim_error",
    "user_payload",
    "user_resource",
]

SCIMUserEnterprise = SCIMUser[EnterpriseUser]


def _known_keys(model: type[Any]) -> dict[str, str]:
    """Lower-cased SCIM attribute names of a scim2-models resource → their canonical spelling."""
    keys: dict[str, str] = {}
    for name, field in model.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias or name
        keys[alias.lower()] = alias
    return keys


_USER_KEYS = _known_keys(SCIMUserEnterprise)
_GROUP_KEYS = _known_keys(SCIMGroup)
# the envelope model, built once and held: pydantic keeps parametrised models only weakly, and rebuilding one (per
# page) reads the class's source again for its docstrings (inspect.getmodule over every loaded module)
_LIST_ENVELOPE = ListResponse[SCIMGroup]


def _split_known(data: Any, keys: dict[str, str], schemas: set[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a resource payload into what scim2-models knows and the rest (vendor extensions, unknown
    attributes). scim2-models refuses unknown keys, while RFC 7643 §3.3 lets providers add extensions."""
    if not isinstance(data, dict):
        raise ValueError("a SCIM resource must be a JSON object")
    known: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in data.items():
        canonical = keys.get(key.lower())
        if canonical is None:
            extra[key] = value
        elif canonical == "schemas":
            known["schemas"] = [s for s in value or [] if isinstance(s, str) and s.lower() in schemas]
        else:
            known[canonical] = value
    return known, extra


def _parse(model: type[Any], data: Any, *, source: str, what: str) -> Any:
    """Validate a response payload, turning pydantic errors into ResponseValidationError."""
    try:
        return model.model_validate(data, scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    except (ValidationError, ValueError, TypeError) as exc:
        raise ResponseValidationError(f"{what} is not a valid SCIM resource", source=source) from exc


def parse_user(data: Any, *, source: str = "scim") -> tuple[Any, dict[str, Any]]:
    """A SCIM User (with the enterprise extension) from a response payload, plus the attributes we do not
    model (vendor extensions)."""
    try:
        known, extra = _split_known(data, _USER_KEYS, {USER_SCHEMA.lower(), ENTERPRISE_SCHEMA.lower()})
    except ValueError as exc:
        raise ResponseValidationError("user is not a JSON object", source=source) from exc
    return _parse(SCIMUserEnterprise, known, source=source, what="user"), extra


def parse_group(data: Any, *, source: str = "scim") -> Any:
    """A SCIM Group from a response payload (unknown attributes dropped)."""
    try:
        known, _ = _split_known(data, _GROUP_KEYS, {GROUP_SCHEMA.lower()})
    except ValueError as exc:
        raise ResponseValidationError("group is not a JSON object", source=source) from exc
    return _parse(SCIMGroup, known, source=source, what="group")


def user_resource(attributes: AccountAttributes, *, manager_account_id: str | None = None) -> Any:
    """The SCIM User to create for ``attributes`` (see the mapping table in the module docstring)."""
    name = (
        Name(given_name=attributes.given_name, family_name=attributes.family_name)
        if attributes.given_name or attributes.family_name
        else None
    )
    user = SCIMUserEnterprise(
        user_name=attributes.user_name,
        external_id=attributes.employee_id,
        name=name,
        display_name=attributes.display_name,
        title=attributes.title,
        active=attributes.active,
        emails=[Email(value=attributes.email, type="work", primary=True)] if attributes.email else None,
    )
    user[EnterpriseUser] = EnterpriseUser(
        employee_number=attributes.employee_id,
        department=attributes.department,
        manager=Manager(value=manager_account_id) if manager_account_id else None,
    )
    return user


def user_payload(user: Any, context: Context = Context.RESOURCE_CREATION_REQUEST) -> dict[str, Any]:
    """The JSON body for a create (or, with ``RESOURCE_REPLACEMENT_REQUEST``, a replace) request."""
    payload: dict[str, Any] = user.model_dump(scim_ctx=context)
    return payload


def _primary_email(user: Any) -> str | None:
    return pick_email([(e.value, e.type, e.primary) for e in user.emails or []])


def account_from_user(
    user: Any, *, manager_id: str | None = None, extra: dict[str, Any] | None = None
) -> Account:
    """Our Account for a SCIM User. ``manager_id`` is the manager's employee id, resolved by the caller from
    ``manager.value`` (an account id)."""
    enterprise = user[EnterpriseUser]
    employee_id = user.external_id or (enterprise.employee_number if enterprise else None) or ""
    return Account(
        id=str(user.id),
        user_name=user.user_name or "",
        employee_id=employee_id,
        given_name=user.name.given_name if user.name else None,
        family_name=user.name.family_name if user.name else None,
        display_name=user.display_name,
        email=_primary_email(user),
        title=user.title,
        department=enterprise.department if enterprise else None,
        manager_id=manager_id,
        active=user.active is not False,
        last_sign_in=find_last_sign_in(extra or {}),
        groups=frozenset(g.display for g in user.groups or [] if g.display),
    )


def manager_account_id(user: Any) -> str | None:
    enterprise = user[EnterpriseUser]
    return (
        enterprise.manager.value if enterprise and enterprise.manager and enterprise.manager.value else None
    )


_PATCH_MODELS: dict[type[Any], Any] = {}


def _patch_model(resource: type[Any]) -> Any:
    """``PatchOp[resource]``, made once (scim2-models builds a new generic class on every subscription)."""
    if resource not in _PATCH_MODELS:
        _PATCH_MODELS[resource] = PatchOp[resource]  # type: ignore[valid-type]
    return _PATCH_MODELS[resource]


def patch_body(operations: list[dict[str, Any]], resource: type[Any] = SCIMUserEnterprise) -> dict[str, Any]:
    """The PatchOp message for ``operations``, validated by scim2-models."""
    patch = _patch_model(resource).model_validate(
        {"schemas": [PATCH_SCHEMA], "Operations": operations}, scim_ctx=Context.RESOURCE_PATCH_REQUEST
    )
    body: dict[str, Any] = patch.model_dump(scim_ctx=Context.RESOURCE_PATCH_REQUEST)
    # scim2-models may canonicalise paths; keep our exact operations (values included) for servers that are
    # strict about the shapes RFC 7644 §3.5.2 shows.
    body["Operations"] = operations
    return body


def group_patch_body(operations: list[dict[str, Any]]) -> dict[str, Any]:
    """The PatchOp message for ``operations`` on a Group's ``members``."""
    return patch_body(operations, SCIMGroup)


def scim_error(body: dict[str, Any]) -> tuple[int, str]:
    """(status, ``scimType detail``) of a SCIM Error message (RFC 7644 §3.12); (400, a note) if malformed."""
    try:
        error = Error.model_validate(body)
        status = int(error.status) if error.status is not None else 400
        return status, " ".join(str(p) for p in (error.scim_type, error.detail) if p)
    except (ValidationError, ValueError, TypeError):
        return 400, "malformed SCIM Error body"


_CONFIG_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:serviceproviderconfig"


def read_config(data: Any) -> ServiceProviderConfig | None:
    """A ``/ServiceProviderConfig`` answer (RFC 7644 §4, RFC 7643 §5), or None if it is not usable."""
    try:
        known, _ = _split_known(data or {}, _known_keys(ServiceProviderConfig), {_CONFIG_SCHEMA})
        return ServiceProviderConfig.model_validate(known)
    except (ValidationError, ValueError):
        return None


def assumed_config() -> ServiceProviderConfig:
    """What a provider without a usable ``/ServiceProviderConfig`` is taken to support: PATCH, no ETags."""
    return ServiceProviderConfig.model_validate({"patch": {"supported": True}, "etag": {"supported": False}})


def check_list_envelope(data: dict[str, Any], *, source: str) -> None:
    """Validate a ListResponse's envelope (RFC 7644 §3.4.2); its resources are validated one by one."""
    try:
        _LIST_ENVELOPE.model_validate(
            {k: v for k, v in data.items() if k != "Resources"}
            | ({"Resources": []} if "Resources" in data else {}),
            scim_ctx=Context.DEFAULT,
        )
    except ValidationError as exc:
        raise ResponseValidationError("list response is not a SCIM ListResponse", source=source) from exc


def group_payload(group: Any, members: list[GroupMember]) -> dict[str, Any]:
    """The PUT body replacing ``group`` (a parsed SCIM Group) with exactly ``members`` (RFC 7644 §3.5.1)."""
    replacement = SCIMGroup(
        id=group.id,
        display_name=group.display_name,
        external_id=group.external_id,
        members=members or None,
    )
    payload: dict[str, Any] = replacement.model_dump(scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST)
    payload["id"] = group.id
    if not members:
        payload["members"] = []
    return payload


def new_group_payload(name: str) -> dict[str, Any]:
    """The POST /Groups body of an empty group called ``name``."""
    body: dict[str, Any] = SCIMGroup(display_name=name).model_dump(scim_ctx=Context.RESOURCE_CREATION_REQUEST)
    return body

"""The ``Auditor`` role of the FAB auth manager: reads what a Viewer reads, plus the GDPR audit.

The auditor page asks the auth manager whether a user may ``GET`` the custom view ``GDPR Audit``
(``gdpr_erasure.auditor.app``); with the FAB auth manager that is the permission ``can_read`` on
the resource ``GDPR Audit``. FAB creates no resource for a plugin's view, and its ``[fab]
custom_roles`` setting refuses a resource that does not exist yet, so :func:`sync_auditor_role`
creates it, then keeps the role to exactly this:

* every read (``can_read``, ``menu_access``) the ``Viewer`` role has: the DAG, its runs and task
  logs, which auditors review;
* ``can_read`` on ``GDPR Audit`` (the page, its data API and its exports), and on ``Plugins``:
  the UI learns of the page's menu entry (Browse > GDPR audit) from the plugins list, which FAB
  gives only to ``Admin`` (without it the entry is missing and its URL a 404);
* nothing that writes, apart from the user's own password and profile: any other permission found
  on the role is removed, whoever added it;

and gives ``Admin`` the audit too. ``Viewer``, ``User`` and ``Op`` do not get it. Idempotent:
``airflow-init`` runs it on every start (``gdpr-erasure roles sync``), after ``airflow db migrate``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
AUDITOR_ROLE = "Auditor"
AUDIT_RESOURCE = "GDPR Audit"
PLUGINS_RESOURCE = "Plugins"  # FAB's resource for Airflow's plugins list (AccessView.PLUGINS)
READ_ACTIONS = frozenset({"can_read", "menu_access"})
# Self-service edits every Airflow user keeps (changing one's own password is not writing data).
SELF_SERVICE = frozenset({("can_edit", "My Password"), ("can_edit", "My Profile")})


class RolesError(RuntimeError):
    """The roles cannot be synced (wrong auth manager, missing base role); the message says what to do."""


@dataclass
class RoleSync:
    """What :func:`sync_auditor_role` changed."""

    role: str
    created: bool = False
    added: list[tuple[str, str]] = field(default_factory=list)
    removed: list[tuple[str, str]] = field(default_factory=list)
    admin_granted: bool = False


def allowed(action: str, resource: str) -> bool:
    """Whether the Auditor role may hold the permission ``action`` on ``resource``."""
    return action in READ_ACTIONS or (action, resource) in SELF_SERVICE


@contextmanager
def fab_security_manager() -> Iterator[Any]:
    """FAB's security manager, as Airflow's own ``airflow roles`` commands get it."""
    from airflow.configuration import conf

    manager = conf.get("core", "auth_manager", fallback="")
    if "FabAuthManager" not in manager:
        raise RolesError(
            f"needs the FAB auth manager ([core] auth_manager is {manager or 'unset'}): "
            f"set AIRFLOW__CORE__AUTH_MANAGER={FAB_AUTH_MANAGER}"
        )
    try:
        from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder
    except ImportError as exc:  # pragma: no cover - the provider is pinned in requirements.txt
        raise RolesError("install apache-airflow-providers-fab (requirements.txt pins it)") from exc
    with get_application_builder() as appbuilder:
        yield appbuilder.sm


def _key(permission: Any) -> tuple[str, str]:
    return permission.action.name, permission.resource.name


def sync_auditor_role(
    role: str = AUDITOR_ROLE, resource: str = AUDIT_RESOURCE, base_role: str = "Viewer"
) -> RoleSync:
    """Create or repair ``role`` (module docstring) and give ``Admin`` read access to ``resource``.

    :param role: name of the auditors' role.
    :param resource: the custom view the auditor page asks about (``$GDPR_AUDITOR_RESOURCE``).
    :param base_role: the role whose reads the auditors get.
    """
    with fab_security_manager() as sm:
        audit = sm.create_permission("can_read", resource)
        base = sm.find_role(base_role)
        if base is None:
            raise RolesError(f"no {base_role} role: run `airflow db migrate` (it creates FAB's roles) first")
        wanted = {_key(p): p for p in base.permissions if allowed(*_key(p))}
        wanted[_key(audit)] = audit
        plugins = sm.create_permission("can_read", PLUGINS_RESOURCE)
        wanted[_key(plugins)] = plugins

        sync = RoleSync(role=role)
        auditors = sm.find_role(role)
        if auditors is None:
            auditors = sm.add_role(role)
            sync.created = True
        held = {_key(p): p for p in auditors.permissions}
        for key, permission in held.items():
            if not allowed(*key):
                sm.remove_permission_from_role(auditors, permission)
                sync.removed.append(key)
        for key, permission in sorted(wanted.items()):
            if key not in held:
                sm.add_permission_to_role(auditors, permission)
                sync.added.append(key)

        admin = sm.find_role("Admin")
        if admin is not None and _key(audit) not in {_key(p) for p in admin.permissions}:
            sm.add_permission_to_role(admin, audit)
            sync.admin_granted = True
        return sync


def ensure_user(username: str, password: str, role: str, email: str = "") -> bool:
    """Create the FAB user ``username`` with ``role`` unless it exists; True if it was created.

    An existing user keeps their password (it may have been changed in the UI since) and gets
    ``role`` added if they lack it. The password never goes through a command line.

    :param username: the login.
    :param password: the initial password.
    :param role: ``Admin`` or ``Auditor`` (created by :func:`sync_auditor_role` first).
    :param email: FAB requires one; defaults to ``<username>@localhost``.
    """
    with fab_security_manager() as sm:
        wanted = sm.find_role(role)
        if wanted is None:
            raise RolesError(f"no {role} role: run `gdpr-erasure roles sync` first")
        user = sm.find_user(username=username)
        if user is None:
            created = sm.add_user(
                username, username, role, email or f"{username}@localhost", wanted, password
            )
            if not created:
                raise RolesError(f"FAB could not create the user {username} (see the log above)")
            return True
        if wanted not in user.roles:
            user.roles.append(wanted)
            sm.update_user(user)
        return False

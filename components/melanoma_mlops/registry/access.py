"""Who may move the registered model's aliases: the promotion identity, nobody else (issue 22).

The MLflow UI's model-version page has its own buttons (aliases, "Promote model"); a move made there
has no reason, no gate and no audit trail. With the tracking server's basic-auth on, MLflow checks a
permission for every alias move (``SetRegisteredModelAlias`` / ``DeleteRegisteredModelAlias`` need
EDIT / MANAGE on the registered model), so the rule is a permission table:

- the **promotion identity** (the user the pipeline's steps and ``melanoma-mlops promote`` log in
  as, e.g. ``pipeline``) has MANAGE on the model: it registers versions, moves ``challenger`` and
  ``champion``, and takes the promotion lock;
- **every other user** has READ on it (the server's ``default_permission``; an explicit grant above
  READ is brought back down): the UI shows them the model, versions, aliases and gate tags, and
  refuses their alias changes;
- MLflow **admins** bypass every permission: they are reported, never changed (keep admin accounts
  for managing users).

:func:`plan` decides on numbers (users and their effective permissions, as the server resolves them
with roles and defaults); :class:`AccessAdmin` reads and writes them through the server's auth API,
logged in as an admin.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from melanoma_mlops.errors import AccessError, ConfigError

logger = logging.getLogger(__name__)

RESOURCE_TYPE = "registered_model"
PROMOTER_PERMISSION = "MANAGE"
PEOPLE_PERMISSION = "READ"
#: basic-auth's REST endpoints (mlflow.server.auth.routes; importing that module starts the whole
#: server app, seconds and Flask-WTF, so the paths are spelled here).
LIST_USERS = "/api/2.0/mlflow/users/list"
GET_USER_PERMISSION = "/api/3.0/mlflow/users/permissions/get"
GRANT_USER_PERMISSION = "/api/3.0/mlflow/users/permissions/grant"
REVOKE_USER_PERMISSION = "/api/3.0/mlflow/users/permissions/revoke"
#: MLflow's permission order (mlflow.server.auth.permissions.PERMISSION_PRIORITY).
PRIORITY = {"DENY": -1, "NO_PERMISSIONS": 0, "READ": 1, "USE": 2, "EDIT": 3, "MANAGE": 4}


@dataclass(frozen=True)
class UserAccess:
    """One user's effective permission on the registered model."""

    username: str
    is_admin: bool
    permission: str

    @property
    def can_move_aliases(self) -> bool:
        return self.is_admin or PRIORITY.get(self.permission, 0) >= PRIORITY["EDIT"]


@dataclass(frozen=True)
class Change:
    username: str
    before: str
    after: str
    why: str


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    #: Admins: they can move aliases whatever the table says (reported, not changed).
    admins: tuple[str, ...] = field(default_factory=tuple)


def plan(users: Sequence[UserAccess], promoter: str, model: str) -> Plan:
    """The grants that make ``promoter`` the only non-admin user able to move ``model``'s aliases."""
    by_name = {u.username: u for u in users}
    if promoter not in by_name:
        raise ConfigError(
            f"no MLflow user {promoter!r}: create the promotion identity first (docs/cluster.md, "
            "'Open MLflow and create the users'), then run this again"
        )
    changes = []
    if by_name[promoter].permission != PROMOTER_PERMISSION and not by_name[promoter].is_admin:
        changes.append(
            Change(
                promoter,
                by_name[promoter].permission,
                PROMOTER_PERMISSION,
                f"the promotion identity registers versions of {model} and moves its aliases",
            )
        )
    for user in users:
        if user.username == promoter or user.is_admin:
            continue
        if PRIORITY.get(user.permission, 0) > PRIORITY[PEOPLE_PERMISSION]:
            changes.append(
                Change(
                    user.username,
                    user.permission,
                    PEOPLE_PERMISSION,
                    f"people read {model}; only {promoter} moves its aliases (melanoma-mlops promote)",
                )
            )
    admins = tuple(sorted(u.username for u in users if u.is_admin and u.username != promoter))
    return Plan(tuple(changes), admins)


class AccessAdmin:
    """The server's auth API (``mlflow.server.auth``), as an admin (MLFLOW_TRACKING_USERNAME/PASSWORD)."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri

    def _call(self, endpoint: str, method: str, **kwargs: object) -> dict:
        from mlflow.utils.credentials import get_default_host_creds
        from mlflow.utils.rest_utils import http_request, verify_rest_response

        resp = http_request(get_default_host_creds(self.tracking_uri), endpoint, method, **kwargs)
        resp = verify_rest_response(resp, endpoint)
        return resp.json() if resp.content else {}

    def users(self, model: str) -> list[UserAccess]:
        """Every user with their effective permission on ``model`` (roles and defaults resolved)."""
        out = []
        for user in self._call(LIST_USERS, "GET").get("users", []):
            params = {"username": user["username"], "resource_type": RESOURCE_TYPE, "resource_id": model}
            permission = self._call(GET_USER_PERMISSION, "GET", params=params)["permission"]
            out.append(UserAccess(user["username"], bool(user.get("is_admin")), permission))
        return sorted(out, key=lambda u: u.username)

    def grant(self, username: str, model: str, permission: str) -> None:
        """Set the user's own grant on ``model`` (MLflow refuses a second grant: replace the first)."""
        from mlflow.exceptions import MlflowException

        key = {"username": username, "resource_type": RESOURCE_TYPE, "resource_id": model}
        try:
            self._call(GRANT_USER_PERMISSION, "POST", json={**key, "permission": permission})
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            self._call(REVOKE_USER_PERMISSION, "POST", json=key)
            self._call(GRANT_USER_PERMISSION, "POST", json={**key, "permission": permission})


def check_can_move_aliases(tracking_uri: str, model: str) -> None:
    """Refuse, before anything is locked or written, a user who may not move ``model``'s aliases.

    A tracking server with basic-auth answers a user's question about their own permission; one
    without it (or a local store) has no such endpoint and every user may move aliases, so there is
    nothing to check. Without this a refused user's ``promote`` would take the promotion lock and
    fail half-way through the move.
    """
    import os

    from mlflow.exceptions import MlflowException

    username = os.environ.get("MLFLOW_TRACKING_USERNAME", "")
    if not tracking_uri.startswith(("http://", "https://")) or not username:
        return
    params = {"username": username, "resource_type": RESOURCE_TYPE, "resource_id": model}
    try:
        permission = AccessAdmin(tracking_uri)._call(GET_USER_PERMISSION, "GET", params=params)["permission"]
    except MlflowException as exc:
        if exc.error_code in ("ENDPOINT_NOT_FOUND", "NOT_FOUND") or "404" in str(exc):
            return  # no basic-auth on this server
        raise
    if not UserAccess(username, False, permission).can_move_aliases:
        raise AccessError(
            f"MLflow user {username!r} has {permission} on {model}: only the promotion identity moves its "
            "aliases (docs/registry-access.md). Run `melanoma-mlops promote` logged in as it "
            "(MLFLOW_TRACKING_USERNAME/PASSWORD), or ask whoever holds it"
        )


def apply(
    admin: AccessAdmin, promoter: str, model: str, *, dry_run: bool = False, model_exists: bool = True
) -> tuple[Plan, list[UserAccess]]:
    """Plan, grant (unless ``dry_run``) and read back; the users' permissions afterwards are returned
    so the caller can show that only the promoter (and admins) can move aliases now.

    A model that does not exist yet gets no grant for the promoter: MLflow gives its creator MANAGE
    (and refuses to create the model when that grant exists already), so the promotion identity's
    first pipeline run makes it the owner.
    """
    decided = plan(admin.users(model), promoter, model)
    if not model_exists:
        decided = Plan(tuple(c for c in decided.changes if c.username != promoter), decided.admins)
    if dry_run:
        return decided, admin.users(model)
    for change in decided.changes:
        logger.debug(
            "%s: %s -> %s on %s (%s)", change.username, change.before, change.after, model, change.why
        )
        admin.grant(change.username, model, change.after)
    after = admin.users(model)
    still = [u.username for u in after if u.can_move_aliases and not u.is_admin and u.username != promoter]
    if still:
        raise ConfigError(
            f"{', '.join(still)} can still move {model}'s aliases after a READ grant: a role gives them "
            "more; remove them from that role (MLflow UI, admin page) and run this again"
        )
    return decided, after


def report_lines(
    decided: Plan, after: Sequence[UserAccess], promoter: str, model: str, *, dry_run: bool = False
) -> list[str]:
    """What ``registry-access`` prints: each user's permission on the model before and after, and why."""
    changed = {c.username: c for c in decided.changes}
    lines = [f"{model}: only {promoter!r} (and MLflow admins) may move its aliases"]
    for user in after:
        change = changed.get(user.username)
        before = change.before if change else user.permission
        now = change.after if change else user.permission
        if change:
            note = f"{'would set' if dry_run else 'set'}: {change.why}"
        elif user.username == promoter:
            note = "the promotion identity"
        elif user.is_admin:
            note = "MLflow admin: bypasses every permission (keep admin accounts for managing users)"
        else:
            note = ""
        lines.append(f"  {user.username:<16} {before:>8} -> {now:<8} {note}".rstrip())
    lines.append(f"{len(decided.changes)} grant(s) {'to make (--dry-run)' if dry_run else 'made'}")
    return lines

"""`hopscope dashboards publish`: create or update the folder, datasources and dashboards in a Grafana.

Idempotent: each object is read first and written only when it is missing or
differs, and the returned `Change` list says what happened to each. A second
publish of the same build changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .build import dashboards
from .datasources import ALL, FOLDER_TITLE, FOLDER_UID, Datasource

# Fields Grafana stores as given; anything else it adds (id, orgId, version, …) is not ours to compare.
_DS_FIELDS = ("name", "type", "access", "url", "isDefault", "jsonData", "user", "database")
_VOLATILE_DASHBOARD_KEYS = ("id", "version")


class PublishError(RuntimeError):
    """Grafana refused or answered something unexpected: names the object and the HTTP status."""


@dataclass(frozen=True)
class Change:
    kind: str  # folder | datasource | dashboard
    uid: str
    action: str  # created | updated | unchanged

    def __str__(self) -> str:
        return f"{self.action:9} {self.kind} {self.uid}"


def connect(url: str, token: str | None, timeout: float = 10.0) -> Any:
    # Imported here: grafana-client (the `dashboards` extra) pulls niquests/urllib3-future,
    # which only publish needs.
    try:
        from grafana_client import GrafanaApi
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "grafana-client is not installed; publishing needs it: pip install 'hopscope[dashboards]'",
            name=exc.name,
        ) from exc

    return GrafanaApi.from_url(url, credential=token or None, timeout=timeout)


def _status(exc: Exception) -> int | None:
    return getattr(exc, "status_code", None)


def _get_or_none(call: Any, *args: Any) -> Any:
    from grafana_client.client import GrafanaClientError  # imported late: see connect()

    try:
        return call(*args)
    except GrafanaClientError as exc:
        if _status(exc) == 404:
            return None
        raise


def publish(
    api: Any,
    urls: Mapping[str, str] | None = None,
    secrets: Mapping[str, Mapping[str, str]] | None = None,
    message: str = "hopscope dashboards publish",
) -> list[Change]:
    """Bring folder, datasources and dashboards in `api`'s Grafana up to date.

    `urls` overrides a datasource's URL by uid; `secrets` gives secureJsonData by
    uid (sent on create, and on update when given: Grafana never returns them).
    """
    from grafana_client.client import GrafanaException  # imported late: see connect()

    urls = urls or {}
    secrets = secrets or {}
    changes: list[Change] = []
    try:
        changes.append(_folder(api))
        changes += [_datasource(api, ds, urls.get(ds.uid), secrets.get(ds.uid)) for ds in ALL]
        changes += [_dashboard(api, doc, message) for doc in dashboards().values()]
    except GrafanaException as exc:
        done = ", ".join(str(c) for c in changes) or "nothing"
        raise PublishError(f"Grafana answered {_status(exc)}: {exc} (done before the error: {done})") from exc
    return changes


def _folder(api: Any) -> Change:
    existing = _get_or_none(api.folder.get_folder, FOLDER_UID)
    if existing is None:
        api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
        return Change("folder", FOLDER_UID, "created")
    if existing.get("title") != FOLDER_TITLE:
        api.folder.update_folder(FOLDER_UID, title=FOLDER_TITLE, overwrite=True)
        return Change("folder", FOLDER_UID, "updated")
    return Change("folder", FOLDER_UID, "unchanged")


def _datasource(api: Any, ds: Datasource, url: str | None, secure: Mapping[str, str] | None) -> Change:
    body = ds.api_body(url=url, secure=dict(secure) if secure else None)
    existing = _get_or_none(api.datasource.get_datasource_by_uid, ds.uid)
    if existing is None:
        api.datasource.create_datasource(body)
        return Change("datasource", ds.uid, "created")
    same = all(existing.get(k) == body.get(k) for k in _DS_FIELDS if k in body)
    if same and not secure:
        return Change("datasource", ds.uid, "unchanged")
    api.datasource.update_datasource_by_uid(ds.uid, body)
    return Change("datasource", ds.uid, "updated")


def _comparable(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in _VOLATILE_DASHBOARD_KEYS}


def _dashboard(api: Any, doc: dict[str, Any], message: str) -> Change:
    uid = doc["uid"]
    existing = _get_or_none(api.dashboard.get_dashboard, uid)
    if existing is not None:
        meta = existing.get("meta", {})
        if (
            _comparable(existing.get("dashboard", {})) == _comparable(doc)
            and meta.get("folderUid") == FOLDER_UID
        ):
            return Change("dashboard", uid, "unchanged")
    api.dashboard.update_dashboard(
        {"dashboard": doc, "folderUid": FOLDER_UID, "overwrite": True, "message": message}
    )
    return Change("dashboard", uid, "created" if existing is None else "updated")

"""`publish` against Grafana's HTTP API contract, as grafana-client sends it.

No Grafana server is installable here (AGPL); this local http.server keeps state
and answers the documented endpoints the way Grafana does (404 bodies, 409 on
duplicates, dashboard/meta envelopes, ids and versions it adds), and records
every request so the test can assert paths, methods, headers and bodies.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from hopscope.dashboards import build
from hopscope.dashboards.datasources import ALL, FOLDER_UID, POSTGRES, PROMETHEUS
from hopscope.dashboards.publish import PublishError, connect, publish

TOKEN = "test-token-not-a-secret"


class FakeGrafana:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any, dict[str, str]]] = []
        self.folders: dict[str, dict[str, Any]] = {}
        self.datasources: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.next_id = 1
        self.require_token: str | None = TOKEN

    def writes(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p, _, _ in self.requests if m != "GET"]

    def handle(self, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        self.requests.append((method, path, body, headers))
        if self.require_token and headers.get("authorization") != f"Bearer {self.require_token}":
            return 401, {"message": "Unauthorized"}
        parts = path.split("?")[0].strip("/").split("/")
        if parts[:2] == ["api", "folders"]:
            return self._folders(method, parts[2:], body)
        if parts[:2] == ["api", "datasources"]:
            return self._datasources(method, parts[2:], body)
        if parts[:2] == ["api", "dashboards"]:
            return self._dashboards(method, parts[2:], body)
        return 404, {"message": "Not found"}

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _folders(self, method: str, rest: list[str], body: Any) -> tuple[int, Any]:
        if method == "GET" and len(rest) == 1:
            f = self.folders.get(rest[0])
            return (200, f) if f else (404, {"message": "folder not found", "status": "not-found"})
        if method == "POST" and not rest:
            if body["uid"] in self.folders:
                return 409, {"message": "a folder with the same uid already exists"}
            self.folders[body["uid"]] = {
                "id": self._id(),
                "uid": body["uid"],
                "title": body["title"],
                "version": 1,
            }
            return 200, self.folders[body["uid"]]
        return 405, {"message": "method not allowed"}

    def _datasources(self, method: str, rest: list[str], body: Any) -> tuple[int, Any]:
        if rest[:1] == ["uid"] and len(rest) == 2:
            uid = rest[1]
            if method == "GET":
                ds = self.datasources.get(uid)
                return (200, ds) if ds else (404, {"message": "Data source not found"})
            if method == "PUT":
                if uid not in self.datasources:
                    return 404, {"message": "Data source not found"}
                self.datasources[uid] = self._stored(
                    body, self.datasources[uid]["id"], self.datasources[uid]["version"] + 1
                )
                return 200, {"datasource": self.datasources[uid], "message": "Datasource updated"}
        if method == "POST" and not rest:
            if (
                any(d["name"] == body["name"] for d in self.datasources.values())
                or body.get("uid") in self.datasources
            ):
                return 409, {"message": "data source with the same name already exists"}
            stored = self._stored(body, self._id(), 1)
            self.datasources[body["uid"]] = stored
            return 200, {
                "datasource": stored,
                "id": stored["id"],
                "message": "Datasource added",
                "name": body["name"],
            }
        return 405, {"message": "method not allowed"}

    @staticmethod
    def _stored(body: dict[str, Any], ds_id: int, version: int) -> dict[str, Any]:
        # Grafana never returns secrets: it answers which secure fields are set.
        out = {k: v for k, v in body.items() if k != "secureJsonData"}
        out.update(id=ds_id, orgId=1, version=version, readOnly=False)
        out["secureJsonFields"] = {k: True for k in body.get("secureJsonData", {})}
        out.setdefault("jsonData", {})
        return out

    def _dashboards(self, method: str, rest: list[str], body: Any) -> tuple[int, Any]:
        if method == "GET" and rest[:1] == ["uid"]:
            d = self.dashboards.get(rest[1])
            return (200, copy.deepcopy(d)) if d else (404, {"message": "Dashboard not found"})
        if method == "POST" and rest == ["db"]:
            dash = copy.deepcopy(body["dashboard"])
            uid = dash["uid"]
            old = self.dashboards.get(uid)
            if old and not body.get("overwrite"):
                return 412, {
                    "message": "The dashboard has been changed by someone else",
                    "status": "version-mismatch",
                }
            if body["folderUid"] not in self.folders:
                return 400, {"message": "folder not found"}
            dash["id"] = old["dashboard"]["id"] if old else self._id()
            dash["version"] = old["dashboard"]["version"] + 1 if old else 1
            self.dashboards[uid] = {"dashboard": dash, "meta": {"folderUid": body["folderUid"], "slug": uid}}
            return 200, {
                "id": dash["id"],
                "uid": uid,
                "url": f"/d/{uid}/{uid}",
                "status": "success",
                "version": dash["version"],
                "slug": uid,
            }
        return 405, {"message": "method not allowed"}


@pytest.fixture
def grafana() -> Iterator[tuple[FakeGrafana, str]]:
    state = FakeGrafana()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, answer = state.handle(self.command, self.path, body, headers)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _committed(name: str) -> dict[str, Any]:
    return json.loads((build.JSON_DIR / name).read_text())


def test_first_publish_creates_everything_with_grafanas_request_shapes(
    grafana: tuple[FakeGrafana, str],
) -> None:
    state, url = grafana
    changes = publish(connect(url, TOKEN))
    assert [str(c).split() for c in changes] == (
        [["created", "folder", FOLDER_UID]]
        + [["created", "datasource", d.uid] for d in ALL]
        + [["created", "dashboard", _committed(n)["uid"]] for n in build.BOARDS]
    )
    assert state.writes() == (
        [("POST", "/api/folders")] + [("POST", "/api/datasources")] * 4 + [("POST", "/api/dashboards/db")] * 4
    )
    assert all(h.get("authorization") == f"Bearer {TOKEN}" for _, _, _, h in state.requests)
    posts = [(p, b) for m, p, b, _ in state.requests if m == "POST"]
    assert posts[0][1] == {"title": "hopscope", "uid": FOLDER_UID}
    for (_, body), ds in zip(posts[1:5], ALL, strict=True):
        assert {k: body[k] for k in ("name", "uid", "type", "access", "url")} == {
            "name": ds.name, "uid": ds.uid, "type": ds.type, "access": "proxy", "url": ds.url,
        }  # fmt: skip
        assert body["jsonData"] == ds.json_data
        assert "secureJsonData" not in body, "no secret was given, none may be sent"
    for (_, body), name in zip(posts[5:], build.BOARDS, strict=True):
        assert body["overwrite"] is True and body["folderUid"] == FOLDER_UID
        assert body["dashboard"] == _committed(name), "publish must send exactly the committed JSON"
        assert "id" not in body["dashboard"]


def test_second_publish_changes_nothing(grafana: tuple[FakeGrafana, str]) -> None:
    state, url = grafana
    publish(connect(url, TOKEN))
    before = len(state.requests)
    changes = publish(connect(url, TOKEN))
    assert {c.action for c in changes} == {"unchanged"}
    assert [m for m, *_ in state.requests[before:]] == ["GET"] * 9


def test_drift_on_the_server_is_repaired_and_reported(grafana: tuple[FakeGrafana, str]) -> None:
    state, url = grafana
    publish(connect(url, TOKEN))
    state.datasources[PROMETHEUS.uid]["url"] = "http://elsewhere:9090"
    state.dashboards["hopscope-traces"]["dashboard"]["title"] = "edited in the UI"
    before = len(state.requests)
    changes = publish(connect(url, TOKEN))
    changed = {(c.kind, c.uid) for c in changes if c.action == "updated"}
    assert changed == {("datasource", PROMETHEUS.uid), ("dashboard", "hopscope-traces")}
    writes = [(m, p, b) for m, p, b, _ in state.requests[before:] if m != "GET"]
    assert [(m, p) for m, p, _ in writes] == [
        ("PUT", f"/api/datasources/uid/{PROMETHEUS.uid}"),
        ("POST", "/api/dashboards/db"),
    ]
    assert writes[0][2]["url"] == PROMETHEUS.url
    assert state.dashboards["hopscope-traces"]["dashboard"]["title"] == "hopscope: traces"
    assert state.dashboards["hopscope-traces"]["dashboard"]["version"] == 2


def test_urls_and_secrets_are_sent(grafana: tuple[FakeGrafana, str]) -> None:
    state, url = grafana
    publish(
        connect(url, TOKEN),
        urls={PROMETHEUS.uid: "http://prom.example:9090"},
        secrets={POSTGRES.uid: {"password": "pw-from-env"}},
    )
    bodies = {b["uid"]: b for m, p, b, _ in state.requests if (m, p) == ("POST", "/api/datasources")}
    assert bodies[PROMETHEUS.uid]["url"] == "http://prom.example:9090"
    assert bodies[POSTGRES.uid]["secureJsonData"] == {"password": "pw-from-env"}
    assert state.datasources[POSTGRES.uid]["secureJsonFields"] == {"password": True}


def test_a_refused_token_is_a_clear_error(grafana: tuple[FakeGrafana, str]) -> None:
    _, url = grafana
    with pytest.raises(PublishError, match="401"):
        publish(connect(url, "wrong-token"))

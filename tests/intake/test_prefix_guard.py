"""BarePrefixGuard in process, in front of an app shaped like Airflow's API server: a mount at
``/gdpr``, a UI catch-all, and an outer access log that reads the scope after the answer."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.responses import HTMLResponse

from gdpr_erasure.intake.app import BarePrefixGuard


def airflow_like(root_path: str = "") -> tuple[FastAPI, list[tuple[str, str]]]:
    logged: list[tuple[str, str]] = []
    inner = FastAPI()

    @inner.get("/v1/requests")
    def ours():
        return {"ok": True}

    app = FastAPI(root_path=root_path)
    app.mount("/gdpr", inner)

    @app.get("/{rest:path}")
    def ui(rest: str):
        return HTMLResponse("<html>ui</html>")

    app.add_middleware(BarePrefixGuard, prefix="/gdpr")

    class AccessLog:  # what Airflow's HttpAccessLogMiddleware reads, once the call is answered
        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            await self.app(scope, receive, send)
            if scope["type"] == "http":
                logged.append((scope["path"], scope["query_string"].decode()))

    app.add_middleware(AccessLog)
    return app, logged


@pytest.mark.parametrize(
    ("url", "status", "code", "logged_path"),
    [
        ("/gdpr?email=jane%40example.com", 400, "query_not_allowed", "/gdpr"),
        ("/gdpr", 404, "not_found", "/gdpr"),
        ("/GDPR?email=jane%40example.com", 400, "query_not_allowed", "/gdpr/[redacted]"),
        ("/Gdpr/v1/requests/jane@example.com", 404, "not_found", "/gdpr/[redacted]"),
    ],
)
def test_calls_outside_the_mount_are_answered_and_scrubbed(url, status, code, logged_path):
    app, logged = airflow_like()
    response = TestClient(app).post(url)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert logged == [(logged_path, "")]


def test_the_mount_and_the_ui_are_untouched():
    app, logged = airflow_like()
    client = TestClient(app)
    assert client.get("/gdpr/v1/requests").json() == {"ok": True}
    assert client.get("/gdprs?x=1").text == "<html>ui</html>"
    assert client.get("/home?x=1").text == "<html>ui</html>"
    assert logged == [("/gdpr/v1/requests", ""), ("/gdprs", "x=1"), ("/home", "x=1")]


def test_under_a_root_path():
    app, logged = airflow_like(root_path="/airflow")
    response = TestClient(app, root_path="/airflow").get("/airflow/gdpr?email=jane%40example.com")
    assert response.status_code == 400
    assert logged[-1][1] == ""

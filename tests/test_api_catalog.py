"""The catalog resources of the REST API (repositories, registries, templates, presets, tokens) on a real uvicorn."""

from __future__ import annotations

import base64
import io
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import httpx
import pytest
import uvicorn
from cryptography.fernet import Fernet
from PIL import Image

from api.app import create_app
from runner import catalog, database
from runner.tokens import ApiToken, create_token
from tests.services.gitrepos import make_remote
from tests.services.postgres import fresh_database

# Every response body of every test is searched for these (and their base64 forms): credentials are write-only.
CANARIES: set[str] = set()


def canary(label: str) -> str:
    value = f"canary-{label}-{secrets.token_hex(8)}"
    CANARIES.add(value)
    return value


def _no_canary(response: httpx.Response) -> None:
    body = response.read().decode("utf-8", "replace")
    for value in CANARIES:
        assert value not in body and base64.b64encode(value.encode()).decode() not in body, \
            f"a credential came back from {response.request.method} {response.request.url.path}"


@dataclass
class Server:
    url: str
    home: Path
    tokens: dict[str, str]  # role → token

    def client(self, role: str | None = "admin", token: str | None = None) -> httpx.Client:
        token = token or (self.tokens[role] if role else None)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=f"{self.url}/api/pipelines", headers=headers, timeout=30,
                            trust_env=False, event_hooks={"response": [_no_canary]})

    def stored_bytes(self) -> bytes:
        """Every row of every table, as a dump would show it, and (SQLite) the database files, WAL included."""
        rows = [database.db.execute_sql(f'SELECT * FROM "{table}"').fetchall() for table in database.db.get_tables()]
        return repr(rows).encode() + b"".join(path.read_bytes() for path in self.home.glob("forgeyard.db*"))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("home")
    database_url = f"sqlite:///{home / 'forgeyard.db'}" if request.param == "sqlite" else \
        fresh_database(request.getfixturevalue("postgres_url"))
    environment = {"FORGEYARD_HOME": str(home), "FORGEYARD_SECRET_KEY": Fernet.generate_key().decode(),
                   "FORGEYARD_ALLOW_LOCAL_REPOS": "1", "FORGEYARD_ALLOW_PRIVATE_GIT_HOSTS": "1",
                   "FORGEYARD_ALLOW_HTTP_GIT": "1", "FORGEYARD_ALLOW_PRIVATE_REGISTRIES": "1"}
    with mock.patch.dict(os.environ, environment):
        app = create_app(database_url=database_url, rate_limit="100000/minute")
        uvicorn_server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=uvicorn_server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not uvicorn_server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)
        port = uvicorn_server.servers[0].sockets[0].getsockname()[1]
        roles = {role: create_token(f"test {role}", role)[0] for role in ("admin", "operator", "viewer")}
        try:
            yield Server(f"http://127.0.0.1:{port}", home, roles)
        finally:
            uvicorn_server.should_exit = True
            thread.join(10)
            database.close()


@pytest.fixture(scope="module")
def admin(server: Server) -> Iterator[httpx.Client]:
    with server.client("admin") as client:
        yield client


@pytest.fixture(scope="module")
def viewer(server: Server) -> Iterator[httpx.Client]:
    with server.client("viewer") as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) <= {"error", "message", "code"} and body["error"] and body["message"]
    if code:
        assert body["code"] == code, body
    return body


def png(color: str = "#0a7cff", side: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (side, side), color).save(buffer, format="PNG")
    return buffer.getvalue()


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64" fill="#f00"/></svg>'
SVG_SCRIPT = (b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><script>alert(1)</script>'
              b'<rect width="64" height="64"/></svg>')


# -- repositories -----------------------------------------------------------------------------------------------

def test_repository_create_list_get_update_delete(admin: httpx.Client) -> None:
    name = unique("fork")
    created = admin.post("/repositories", json={"name": name, "url": "https://git.example.com/acme/open-webui.git",
                                                "default_ref": "main"})
    assert created.status_code == 201, created.text
    repository = created.json()["repository"]
    assert repository["type"] == "https" and repository["is_verified"] is False
    assert repository["has_credentials"] is False and repository["default_ref"] == "main"
    assert set(repository) >= {"id", "name", "url", "type", "is_verified", "default_ref", "created_at", "last_used_at"}

    listed = admin.get("/repositories").json()
    assert listed["success"] is True and listed["count"] == len(listed["repositories"])
    assert repository in listed["repositories"]
    assert admin.get(f"/repositories/{repository['id']}").json() == {"success": True, "repository": repository}

    assert_error(admin.post("/repositories", json={"name": name, "url": "https://other.example/x.git"}), 409,
                 "name_exists")
    patched = admin.patch(f"/repositories/{repository['id']}", json={"name": name + "-2", "default_ref": "v1.0"})
    assert patched.json()["repository"]["name"] == name + "-2"
    assert patched.json()["repository"]["default_ref"] == "v1.0"

    deleted = admin.delete(f"/repositories/{repository['id']}")
    assert deleted.json() == {"success": True, "deleted": {"id": repository["id"], "name": name + "-2"}}
    assert_error(admin.get(f"/repositories/{repository['id']}"), 404, "not_found")
    assert_error(admin.delete(f"/repositories/{repository['id']}"), 404)


def test_repository_credentials_are_write_only_and_encrypted(server: Server, admin: httpx.Client) -> None:
    token = canary("repo-token")
    created = admin.post("/repositories", json={"name": unique("private"), "url": "https://git.example.com/p.git",
                                                "token": token})
    repository = created.json()["repository"]
    assert created.status_code == 201 and repository["has_credentials"] is True
    # A bad update answers with an error that still holds no credential (the response hook checks every body).
    assert_error(admin.patch(f"/repositories/{repository['id']}", json={"ssh_private_key": token}), 400)
    admin.get("/repositories")
    stored = catalog.Repository.get_by_id(repository["id"])
    assert stored.credentials() == {"token": token}  # really stored …
    assert token.encode() not in server.stored_bytes()  # … but never in plain text

    # Changing the credentials makes the repository unverified again, and null removes one.
    catalog.Repository.update(is_verified=True).where(catalog.Repository.id == repository["id"]).execute()
    cleared = admin.patch(f"/repositories/{repository['id']}", json={"token": None}).json()["repository"]
    assert cleared["has_credentials"] is False and cleared["is_verified"] is False


@pytest.mark.parametrize(("body", "code"), [
    ({"url": "--upload-pack=touch pwned"}, "invalid_repo_url"),
    ({"url": "ext::sh -c touch% pwned"}, "invalid_repo_url"),
    ({"url": "ssh://-oProxyCommand=touch%20pwned/x"}, "invalid_repo_url"),
    ({"url": "https://git.example.com/r.git", "type": "ssh"}, "type_mismatch"),
    ({"url": "git@git.example.com:acme/r.git", "token": "abcdefgh"}, "credential_mismatch"),
    ({"url": "https://git.example.com/r.git", "password": "abcdefgh"}, "credential_mismatch"),
    ({"url": "git@git.example.com:acme/r.git", "ssh_private_key": "not a key at all"}, "invalid_ssh_key"),
    ({"url": "https://git.example.com/r.git", "default_ref": "--upload-pack=x"}, "invalid_ref"),
])
def test_repository_validation(admin: httpx.Client, body: dict, code: str) -> None:
    name = unique("bad")
    assert_error(admin.post("/repositories", json={"name": name, **body}), 400, code)
    assert not catalog.Repository.select().where(catalog.Repository.name == name).exists()


def test_repository_url_with_credentials_is_refused_without_echoing_them(admin: httpx.Client) -> None:
    secret = canary("url-password")
    error = assert_error(admin.post("/repositories", json={"name": unique("r"),
                                                           "url": f"https://user:{secret}@git.example.com/r.git"}),
                         400, "credentials_in_url")
    assert "credentials in repository URLs" in error["message"]


@pytest.mark.parametrize("token", ["abc", "two\nlines-of-token"])
def test_unmaskable_secrets_are_refused(admin: httpx.Client, token: str) -> None:
    response = admin.post("/repositories", json={"name": unique("short"), "url": "https://git.example.com/r.git",
                                                 "token": token})
    assert_error(response, 422, "unmaskable_secret")
    assert token not in response.text


@pytest.mark.parametrize("extra", [{"id": 999}, {"created_at": "2000-01-01T00:00:00Z"}, {"is_verified": True},
                                   {"has_credentials": True}, {"owner": "x"}])
def test_mass_assignment_and_unknown_fields_are_refused(admin: httpx.Client, extra: dict) -> None:
    name = unique("mass")
    body = {"name": name, "url": "https://git.example.com/r.git", **extra}
    error = assert_error(admin.post("/repositories", json=body), 400, "unknown_field")
    assert next(iter(extra)) in error["message"]
    assert not catalog.Repository.select().where(catalog.Repository.name == name).exists()


def test_repository_verify_runs_ls_remote(admin: httpx.Client, tmp_path: Path) -> None:
    _, remote = make_remote(tmp_path, "upstream")
    good = admin.post("/repositories", json={"name": unique("local"), "url": f"file://{remote}"}).json()["repository"]
    verified = admin.post(f"/repositories/{good['id']}/verify").json()
    assert verified["success"] is True and verified["verification"]["ok"] is True
    assert verified["repository"]["is_verified"] is True
    assert admin.get(f"/repositories/{good['id']}").json()["repository"]["is_verified"] is True

    missing = admin.post("/repositories", json={"name": unique("gone"),
                                                "url": f"file://{tmp_path / 'missing.git'}"}).json()["repository"]
    failed = admin.post(f"/repositories/{missing['id']}/verify").json()
    assert failed["verification"]["ok"] is False and "repository not found" in failed["verification"]["message"]
    assert str(tmp_path) not in failed["verification"]["message"]
    assert failed["repository"]["is_verified"] is False


def test_repository_verify_with_token_over_http(admin: httpx.Client, git_http) -> None:
    make_remote(git_http.root, "private")
    CANARIES.add(git_http.token)
    url = git_http.url("private.git")
    login = {"username": git_http.username, "token": git_http.token}
    good = admin.post("/repositories", json={"name": unique("http"), "url": url, **login})
    assert admin.post(f"/repositories/{good.json()['repository']['id']}/verify").json()["verification"]["ok"] is True
    wrong = admin.post("/repositories", json={"name": unique("http"), "url": url, **login, "token": canary("wrong")})
    failed = admin.post(f"/repositories/{wrong.json()['repository']['id']}/verify").json()["verification"]
    assert failed == {"ok": False, "message": "git ls-remote failed: authentication failed"}


def test_deleted_repository_leaves_finished_runs_readable_and_blocks_while_queued(admin: httpx.Client) -> None:
    from runner.models import Run

    repository = admin.post("/repositories", json={"name": unique("used"),
                                                   "url": "https://git.example.com/u.git"}).json()["repository"]
    run = Run.create(trigger="api", pipeline_name="api-build", spec_yaml="x", git_repository_id=repository["id"],
                     status="running")
    assert_error(admin.delete(f"/repositories/{repository['id']}"), 409, "in_use")
    Run.update(status="completed").where(Run.id == run.id).execute()
    assert admin.delete(f"/repositories/{repository['id']}").status_code == 200
    info = admin.get(f"/runs/{run.id}").json()["pipeline_run"]["repository_info"]
    assert info["id"] == repository["id"] and info["deleted"] is True


# -- registries -------------------------------------------------------------------------------------------------

def test_registry_crud_and_verify_against_a_real_registry(server: Server, admin: httpx.Client,
                                                          docker_registry) -> None:
    CANARIES.add(docker_registry.password)
    created = admin.post("/registries", json={
        "name": unique("local"), "type": "generic", "url": f"http://{docker_registry.host}/", "namespace": "acme",
        "username": docker_registry.username, "password": docker_registry.password})
    assert created.status_code == 201, created.text
    registry = created.json()["registry"]
    assert registry["url"] == docker_registry.host and registry["has_credentials"] is True
    assert registry["username"] == docker_registry.username and registry["namespace"] == "acme"
    verified = admin.post(f"/registries/{registry['id']}/verify").json()
    assert verified["verification"] == {"ok": True, "message": f"logged in to {docker_registry.host} as "
                                                               f"{docker_registry.username}"}
    assert admin.get(f"/registries/{registry['id']}").json()["registry"]["is_verified"] is True

    wrong = canary("registry-password")
    patched = admin.patch(f"/registries/{registry['id']}", json={"password": wrong}).json()["registry"]
    assert patched["is_verified"] is False
    refused = admin.post(f"/registries/{registry['id']}/verify").json()["verification"]
    assert refused["ok"] is False and "refused the credentials" in refused["message"]
    assert docker_registry.password.encode() not in server.stored_bytes()
    assert wrong.encode() not in server.stored_bytes()
    assert admin.get("/registries").json()["count"] >= 1
    assert admin.delete(f"/registries/{registry['id']}").status_code == 200
    assert_error(admin.get(f"/registries/{registry['id']}"), 404)


def test_registry_types_and_their_credentials(admin: httpx.Client) -> None:
    hub = admin.post("/registries", json={"name": unique("hub"), "type": "docker_hub", "username": "acme",
                                          "token": canary("hub-token")}).json()["registry"]
    assert hub["url"] == "docker.io" and hub["has_credentials"] is True
    ecr = admin.post("/registries", json={
        "name": unique("ecr"), "type": "ecr", "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
        "aws_secret_access_key": canary("aws-secret"), "region": "eu-west-1"})
    assert ecr.status_code == 201 and ecr.json()["registry"]["type"] == "ecr"
    stored = catalog.Registry.get_by_id(ecr.json()["registry"]["id"]).credentials()
    assert stored["region"] == "eu-west-1" and stored["aws_access_key_id"] == "AKIAIOSFODNN7EXAMPLE"

    cases = [({"type": "ecr", "password": "abcdefgh"}, "credential_mismatch"),
             ({"type": "ecr", "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE"}, "missing_field"),
             ({"type": "generic"}, "missing_field"),
             ({"type": "generic", "url": "ghcr.io", "password": "abcdefgh"}, "credential_mismatch"),
             ({"type": "ghcr", "username": "u", "password": "abcdefgh", "token": "abcdefgh"}, "credential_mismatch"),
             ({"type": "quay", "url": "not a host!"}, "invalid_registry_url"),
             ({"type": "ghcr", "namespace": "Bad Namespace"}, "invalid_namespace")]
    for body, code in cases:
        assert_error(admin.post("/registries", json={"name": unique("bad"), **body}), 400, code)
    assert_error(admin.post("/registries", json={"name": unique("t"), "type": "harbor"}), 400)


def test_private_registry_hosts_need_the_opt_in(admin: httpx.Client) -> None:
    with mock.patch.dict(os.environ, {"FORGEYARD_ALLOW_PRIVATE_REGISTRIES": "0"}):
        for url in ("169.254.169.254", "127.0.0.1:2375", "[::1]:5000", "localhost:5000"):
            assert_error(admin.post("/registries", json={"name": unique("ssrf"), "url": url}), 400,
                         "invalid_registry_url")


# -- templates --------------------------------------------------------------------------------------------------

def upload(client: httpx.Client, template_id: int, kind: str, data: bytes, filename: str = "logo.png"):
    return client.post(f"/templates/{template_id}/assets/{kind}", files={"file": (filename, data, "image/png")})


def test_template_crud_and_field_checks(admin: httpx.Client) -> None:
    name = unique("acme")
    body = {"name": name, "app_name": "Acme AI", "theme_color": "#0a7cff", "license_exception": "users_le_50",
            "replacements": [{"search": "Open WebUI", "replace": "Acme AI", "files": ["src/**/*.svelte"]}]}
    created = admin.post("/templates", json=body)
    assert created.status_code == 201, created.text
    template = created.json()["template"]
    assert {k: template[k] for k in body} == body and template["assets"] == []
    assert template in admin.get("/templates").json()["templates"]
    patched = admin.patch(f"/templates/{template['id']}", json={"theme_color": None, "app_name": "Acme 2"})
    assert patched.json()["template"]["theme_color"] is None and patched.json()["template"]["app_name"] == "Acme 2"
    assert_error(admin.post("/templates", json=body), 409, "name_exists")

    bad = [{"theme_color": "blue"}, {"license_exception": "because"}, {"app_name": ""},
           {"replacements": [{"search": "x", "replace": "y"}]},
           {"replacements": [{"search": "(", "replace": "y", "files": ["*"], "regex": True}]}]
    for fields in bad:
        assert_error(admin.patch(f"/templates/{template['id']}", json=fields), 400)
    assert admin.delete(f"/templates/{template['id']}").status_code == 200
    assert_error(admin.get(f"/templates/{template['id']}"), 404)


def test_template_assets_upload_download_and_content_checks(admin: httpx.Client, viewer: httpx.Client) -> None:
    template = admin.post("/templates", json={"name": unique("assets"), "app_name": "Acme"}).json()["template"]
    logo = png()
    uploaded = upload(admin, template["id"], "logo", logo, filename="../../etc/passwd")
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["template"]["assets"][0]["kind"] == "logo"
    assert uploaded.json()["template"]["assets"][0]["size"] == len(logo)
    download = viewer.get(f"/templates/{template['id']}/assets/logo")
    assert download.content == logo and download.headers["content-type"] == "image/png"
    assert download.headers["content-disposition"] == 'attachment; filename="logo.png"'
    assert upload(admin, template["id"], "favicon", SVG, "x.svg").status_code == 201
    assert viewer.get(f"/templates/{template['id']}/assets/favicon").headers["content-type"] == "image/svg+xml"

    assert_error(upload(admin, template["id"], "splash", b"GIF89a not a png"), 422, "invalid_image")
    assert_error(upload(admin, template["id"], "splash", SVG_SCRIPT, "s.svg"), 422, "invalid_image")
    assert_error(upload(admin, template["id"], "splash", png(side=8)), 422, "invalid_image")
    assert_error(upload(admin, template["id"], "splash", logo + b"\0" * (5 * 1024 * 1024)), 413, "asset_too_large")
    assert_error(upload(admin, template["id"], "wallpaper", logo), 404)
    assert_error(upload(viewer, template["id"], "logo", logo), 403)
    assert_error(admin.post(f"/templates/{template['id']}/assets/logo", json={"file": "x"}), 415)
    assert_error(admin.post(f"/templates/{template['id']}/assets/logo", files={"other": ("a", logo)}), 400,
                 "missing_file")
    assert_error(viewer.get(f"/templates/{template['id']}/assets/splash"), 404)
    assert admin.delete(f"/templates/{template['id']}/assets/favicon").status_code == 200
    assert_error(viewer.get(f"/templates/{template['id']}/assets/favicon"), 404)


def test_template_export_import_round_trip(admin: httpx.Client) -> None:
    name = unique("export")
    template = admin.post("/templates", json={
        "name": name, "app_name": "Acme", "theme_color": "#123456",
        "replacements": [{"search": "a+", "replace": "b", "files": ["*.txt"], "regex": True}]}).json()["template"]
    logo, favicon = png("#ff0000", 48), SVG
    upload(admin, template["id"], "logo", logo)
    upload(admin, template["id"], "favicon", favicon, "f.svg")
    exported = admin.get(f"/templates/{template['id']}/export")
    assert exported.headers["content-disposition"].startswith("attachment")
    document = exported.json()
    assert_error(admin.post("/templates/import", json=document), 409, "name_exists")

    document["template"]["name"] = name + "-copy"
    imported = admin.post("/templates/import", json=document)
    assert imported.status_code == 201, imported.text
    copy = imported.json()["template"]
    assert copy["replacements"] == template["replacements"] and copy["theme_color"] == "#123456"
    assert admin.get(f"/templates/{copy['id']}/assets/logo").content == logo
    assert admin.get(f"/templates/{copy['id']}/assets/favicon").content == favicon

    damaged = {**document, "template": {**document["template"], "name": name + "-damaged"},
               "assets": {"logo": {**document["assets"]["logo"], "content_base64": base64.b64encode(b"x").decode()}}}
    assert_error(admin.post("/templates/import", json=damaged), 400, "invalid_export")
    script = {**damaged, "assets": {"logo": {"content_base64": base64.b64encode(SVG_SCRIPT).decode()}}}
    assert_error(admin.post("/templates/import", json=script), 422, "invalid_image")
    assert not catalog.BrandingTemplate.select().where(catalog.BrandingTemplate.name == name + "-damaged").exists()
    assert_error(admin.post("/templates/import", json={"format": "zip", "template": {}}), 400, "invalid_export")


# -- presets ----------------------------------------------------------------------------------------------------

def test_presets(admin: httpx.Client, viewer: httpx.Client) -> None:
    name = unique("preset")
    settings = {"ENABLE_SIGNUP": False, "DEFAULT_USER_ROLE": "pending", "WEBUI_BANNERS": []}
    created = admin.post("/presets", json={"name": name, "settings": settings})
    assert created.status_code == 201, created.text
    preset = created.json()["preset"]
    assert preset["settings"] == settings
    assert viewer.get(f"/presets/{preset['id']}").json()["preset"] == preset
    assert preset in viewer.get("/presets").json()["presets"]

    unknown = assert_error(admin.post("/presets", json={"name": unique("p"), "settings": {"ENABLE_SINGUP": True}}),
                           400, "unknown_setting")
    assert "did you mean ENABLE_SIGNUP" in unknown["message"]
    assert_error(admin.post("/presets", json={"name": unique("p"), "settings": {"DEFAULT_USER_ROLE": "god"}}),
                 400, "invalid_setting")
    secret = canary("openai")
    assert_error(admin.post("/presets", json={"name": unique("p"), "settings": {"OPENAI_API_KEY": secret}}),
                 422, "secret_setting")
    assert_error(admin.post("/presets", json={"name": unique("p"), "settings": ["x"]}), 400)

    patched = admin.patch(f"/presets/{preset['id']}", json={"settings": {"ENABLE_SIGNUP": True}}).json()["preset"]
    assert patched["settings"] == {"ENABLE_SIGNUP": True}
    assert catalog.find_config_preset(name).settings == {"ENABLE_SIGNUP": True}
    assert admin.delete(f"/presets/{preset['id']}").status_code == 200
    assert_error(viewer.get(f"/presets/{preset['id']}"), 404)


# -- tokens and roles -------------------------------------------------------------------------------------------

def test_tokens_create_list_revoke(server: Server, admin: httpx.Client) -> None:
    created = admin.post("/tokens", json={"name": "ci", "role": "operator"})
    assert created.status_code == 201
    token, record = created.json()["token"], created.json()["api_token"]
    assert record["role"] == "operator" and record["revoked"] is False
    stored_hash = ApiToken.get_by_id(record["id"]).token_hash
    listed = admin.get("/tokens")
    assert token not in listed.text and stored_hash not in listed.text
    assert record["id"] in [t["id"] for t in listed.json()["tokens"]]
    assert set(listed.json()["tokens"][0]) == {"id", "name", "role", "created_at", "last_used_at", "revoked",
                                               "revoked_at"}

    with server.client(token=token) as operator:
        assert operator.get("/repositories").status_code == 200
        assert_error(operator.post("/repositories", json={"name": "x", "url": "https://a.example/r.git"}), 403)
        assert_error(operator.get("/tokens"), 403, "forbidden")
        assert admin.delete(f"/tokens/{record['id']}").json()["api_token"]["revoked"] is True
        assert_error(operator.get("/repositories"), 401, "unauthorized")
    assert_error(admin.delete(f"/tokens/{record['id']}"), 409, "already_revoked")
    assert_error(admin.post("/tokens", json={"name": "x", "role": "root"}), 400)
    assert_error(admin.post("/tokens", json={"name": "x", "role": "viewer", "token_hash": "0" * 64}), 400,
                 "unknown_field")


def test_the_last_admin_token_cannot_be_revoked(server: Server, admin: httpx.Client) -> None:
    token, record = create_token("second admin", "admin")
    with server.client(token=token) as second:
        assert second.delete(f"/tokens/{record.id}").status_code == 200  # another admin remains
    own = ApiToken.get(ApiToken.name == "test admin")
    assert_error(admin.delete(f"/tokens/{own.id}"), 409, "last_admin")
    assert admin.get("/tokens").status_code == 200


def test_roles_and_authentication(server: Server, viewer: httpx.Client) -> None:
    for path in ("/repositories", "/registries", "/templates", "/presets"):
        assert viewer.get(path).status_code == 200
        assert_error(viewer.post(path, json={"name": "x"}), 403, "forbidden")
    assert_error(viewer.post("/repositories/1/verify"), 403)
    assert_error(viewer.get("/templates/1/export"), 403)
    assert_error(viewer.post("/templates/import", json={}), 403)
    assert_error(viewer.post("/tokens", json={"name": "x", "role": "admin"}), 403)
    with server.client(None) as anonymous:
        response = anonymous.get("/repositories")
        assert_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"].startswith("Bearer")
    with server.client(token="fy_not-a-token") as wrong:
        assert_error(wrong.get("/presets"), 401)


def test_bad_requests_never_reach_500(admin: httpx.Client) -> None:
    for path in ("/repositories", "/registries", "/templates", "/presets"):
        assert_error(admin.get(f"{path}/{2**70}"), 404)
    for path in ("/repositories", "/registries", "/templates", "/presets", "/tokens"):
        assert_error(admin.post(path, content=b'{"name":', headers={"content-type": "application/json"}), 400,
                     "invalid_json")
        assert_error(admin.post(path, content=b"name=x", headers={"content-type": "text/plain"}), 415)
        assert_error(admin.post(path, json=["a list"]), 400)
        assert_error(admin.post(path, json={"name": 5}), 400)
        not_allowed = admin.put(path, json={})
        assert_error(not_allowed, 405)
        assert "POST" in not_allowed.headers["allow"]
    assert_error(admin.delete(f"/tokens/{2**70}"), 404)
    assert_error(admin.get("/repositories?limit=0"), 400)
    assert admin.get("/repositories?limit=1").json()["count"] <= 1

"""schemas/openapi.yaml against the code: the app's routes, the engine's names and the server's answers agree."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from starlette.routing import Mount, Route, WebSocketRoute

from api.app import create_app
from api.errors import ERROR_TYPES
from api.routes import dashboard
from api.translate import BUILD_REQUEST_FIELDS, CUSTOM_PARAMETERS, OUTPUT_TYPES
from runner.models import OUTPUT_TYPES as RECORD_OUTPUT_TYPES
from runner.models import RUN_STATUSES
from runner.steps import all_steps, get_step
from schemas import schema_path
from tests.services.api_server import ApiServer, api_server_fixture  # noqa: F401  (a fixture)

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
DOCUMENT_URI = "urn:forgeyard:openapi"
PUBLIC_OPERATIONS = {("get", "/api/health"), ("get", "/api/openapi.json")}
ROLE_BELOW = {"operator": "viewer", "admin": "operator"}


@cache
def document() -> dict[str, Any]:
    return yaml.safe_load(schema_path("openapi.yaml").read_text())


def app_routes() -> dict[str, set[str] | None]:
    """Every route of the API as {OpenAPI path: methods without HEAD}, None for a WebSocket; the dashboard's static
    files (/ and /ui/) are pages, not API (tests/test_dashboard_files.py)."""
    found: dict[str, set[str] | None] = {}

    def walk(routes, prefix: str) -> None:
        for route in routes:
            if route in dashboard.routes:
                continue
            if isinstance(route, Mount):
                walk(route.routes, prefix + route.path)
            elif isinstance(route, WebSocketRoute):
                found[prefix + route.path] = None
            elif isinstance(route, Route):
                found[prefix + route.path] = {m.lower() for m in route.methods or ()} - {"head"}

    walk(create_app().routes, "")
    return {re.sub(r"\{(\w+):\w+\}", r"{\1}", path): methods for path, methods in found.items()}


def operations() -> list[tuple[str, str, dict]]:
    return [(method, path, operation) for path, item in document()["paths"].items()
            for method, operation in item.items() if method in HTTP_METHODS]


def validator(pointer: str) -> jsonschema.Draft202012Validator:
    """A validator for the document's schema at `pointer`, its $refs resolved within the document."""
    resource = Resource.from_contents(document(), default_specification=DRAFT202012)
    registry = Registry().with_resource(DOCUMENT_URI, resource)
    return jsonschema.Draft202012Validator({"$ref": f"{DOCUMENT_URI}#{pointer}"}, registry=registry)


def schema_at(pointer: str) -> dict:
    node: Any = document()
    for part in pointer.strip("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def constraints(schema: dict) -> dict[str, list]:
    """The constraint keywords of a schema and of the schemas it combines ($ref, allOf, oneOf, anyOf)."""
    found: dict[str, list] = {}
    if "$ref" in schema:
        for key, values in constraints(schema_at(schema["$ref"].removeprefix("#"))).items():
            found.setdefault(key, []).extend(values)
    for key, value in schema.items():
        if key in ("allOf", "oneOf", "anyOf"):
            for part in value:
                for sub_key, values in constraints(part).items():
                    found.setdefault(sub_key, []).extend(values)
        elif key not in ("$ref", "description", "not", "default"):
            found.setdefault(key, []).append(value)
    return found


def types_of(found: dict[str, list]) -> set[str]:
    types = set()
    for value in found.get("type", []):
        types.update([value] if isinstance(value, str) else value)
    return types


# -- routes ↔ paths ---------------------------------------------------------------------------------------------

def test_every_route_is_documented_with_its_methods():
    paths = document()["paths"]
    for path, methods in app_routes().items():
        assert path in paths, f"{path} is served but not documented"
        documented = {m for m in paths[path] if m in HTTP_METHODS}
        if methods is None:  # a WebSocket: described on its path, no HTTP operation
            assert not documented and "WebSocket" in paths[path]["description"], path
        else:
            assert documented == methods, f"{path}: served {sorted(methods)}, documented {sorted(documented)}"


def test_every_documented_path_is_served():
    served = app_routes()
    assert sorted(set(document()["paths"]) - set(served)) == []


def test_path_parameters_are_declared_as_the_routes_name_them():
    for method, path, operation in operations():
        item = document()["paths"][path]
        declared = {p["name"] if "name" in p else schema_at(p["$ref"].removeprefix("#"))["name"]
                    for p in [*item.get("parameters", []), *operation.get("parameters", [])]
                    if p.get("in", "path") == "path" and ("name" in p or "/parameters/" in p.get("$ref", ""))}
        assert declared >= set(re.findall(r"\{(\w+)\}", path)), f"{method} {path}"


# -- operations ---------------------------------------------------------------------------------------------------

def test_every_operation_documents_auth_limits_and_the_error_shape():
    error_ref = "#/components/schemas/Error"
    for method, path, operation in operations():
        responses = operation["responses"]
        assert "429" in responses and operation.get("operationId"), f"{method} {path}"
        if (method, path) in PUBLIC_OPERATIONS:
            assert operation["security"] == []
            continue
        assert "security" not in operation and {"401", "405", "413"} <= set(responses), f"{method} {path}"
        assert operation["x-required-role"] in ("viewer", "operator", "admin")
        if operation["x-required-role"] != "viewer":
            assert "403" in responses, f"{method} {path}"
        if "requestBody" in operation:
            assert "415" in responses and "400" in responses
        for status, response in responses.items():
            response = schema_at(response["$ref"].removeprefix("#")) if "$ref" in response else response
            assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(response["headers"])
            if status.startswith("4"):
                assert response["content"]["application/json"]["schema"] == {"$ref": error_ref}, status


def test_every_documented_error_type_is_one_the_server_uses():
    documented = set(schema_at("/components/schemas/Error")["properties"]["error"]["enum"])
    assert set(ERROR_TYPES.values()) | {"Download error"} <= documented


def test_the_examples_fit_their_schemas():
    create = document()["paths"]["/api/pipelines/runs"]["post"]["requestBody"]["content"]["application/json"]
    body = validator("/components/schemas/CreateRunRequest")
    for name, example in create["examples"].items():
        assert not list(body.iter_errors(example["value"])), name
    error = validator("/components/schemas/Error")
    for _, _, operation in operations():
        for response in operation["responses"].values():
            for media in response.get("content", {}).values():
                if "example" in media and media["schema"] == {"$ref": "#/components/schemas/Error"}:
                    error.validate(media["example"])


@pytest.mark.parametrize(("body", "valid"), [
    ({"steps_to_execute": ["clone_repo", "create_zip"], "output_type": "zip"}, True),
    ({"steps_to_execute": ["clone_repo", "build_image", "push_registry"], "output_type": "docker_image",
      "registry_id": 1}, True),
    ({"steps_to_execute": ["clone_repo", "push_registry"], "output_type": "zip", "registry_id": 1}, False),
    ({"steps_to_execute": ["clone_repo", "build_image", "push_registry"], "output_type": "docker_image"}, False),
    ({"steps_to_execute": ["create_zip"], "output_type": "zip"}, False),
    ({"steps_to_execute": ["clone_repo", "create_zip"], "output_type": "both"}, False),
    ({"steps_to_execute": ["clone_repo", "create_zip"], "output_type": "zip", "custom_parameters": {"x": 1}}, False),
    ({"steps_to_execute": ["clone_repo", "create_zip"], "output_type": "zip",
      "custom_parameters": {"image_tag": "v1"}}, False),
    ({"steps_to_execute": ["clone_repo", "create_zip", "apply_branding"], "output_type": "zip"}, False),
    ({"steps_to_execute": ["clone_repo", "create_zip"], "output_type": "zip", "custom_parameters": {
        "ref": "${{ secrets.TOKEN }}"}}, False),
    ({"steps_to_execute": ["clone_repo", "create_zip"], "output_type": "zip", "status": "completed"}, False),
    ({"pipeline": "hello.yml", "inputs": {"who": "x"}}, True),
    ({"spec": "name: x", "pipeline": "hello.yml"}, False),
])
def test_the_request_schema_states_the_rules_the_server_checks(body: dict, valid: bool):
    assert (not list(validator("/components/schemas/CreateRunRequest").iter_errors(body))) is valid


# -- the document ↔ the engine's names ------------------------------------------------------------------------------

def test_enums_are_the_engines_names():
    schemas = document()["components"]["schemas"]
    assert schemas["StepKey"]["enum"] == [step.key for step in all_steps()]
    assert schemas["RunStatus"]["enum"] == list(RUN_STATUSES)
    assert schemas["OutputType"]["enum"] == list(OUTPUT_TYPES)
    assert schemas["BuildOutput"]["properties"]["output_type"]["enum"] == list(RECORD_OUTPUT_TYPES)
    assert set(schemas["BuildRequest"]["properties"]) == BUILD_REQUEST_FIELDS
    assert set(schemas["CustomParameters"]["properties"]) == set(CUSTOM_PARAMETERS)


@pytest.mark.parametrize("key", sorted(CUSTOM_PARAMETERS))
def test_each_custom_parameter_has_its_step_inputs_constraints(key: str):
    step, field = CUSTOM_PARAMETERS[key]
    expected = get_step(step).input_schema["properties"][field]
    documented = constraints(schema_at(f"/components/schemas/CustomParameters/properties/{key}"))
    if "type" in expected:
        wanted = {expected["type"]} if isinstance(expected["type"], str) else set(expected["type"])
        assert types_of(documented) == wanted, key
    for keyword in ("enum", "pattern", "minimum", "maximum", "minLength", "maxLength", "minItems", "uniqueItems",
                    "maxProperties"):  # the same limits: a stricter document would refuse what the server takes
        wanted = [expected[keyword]] if keyword in expected else []
        assert documented.get(keyword, []) == wanted, f"{key}: {keyword}"
    if "propertyNames" in expected:
        names = [schema.get("pattern") for schema in documented.get("propertyNames", [])]
        assert expected["propertyNames"]["pattern"] in names, f"{key}: propertyNames"
    for keyword in ("items", "additionalProperties"):
        if isinstance(expected.get(keyword), dict):
            inner = constraints(documented[keyword][0])
            assert types_of(inner) >= types_of({"type": [expected[keyword].get("type", [])]}), f"{key}: {keyword}"
            if "pattern" in expected[keyword]:
                assert expected[keyword]["pattern"] in inner.get("pattern", []), f"{key}: {keyword}"


# -- the document ↔ the running server ------------------------------------------------------------------------------

def test_the_server_serves_this_document(api_server: ApiServer):
    response = httpx.get(f"{api_server.base_url}/api/openapi.json", trust_env=False)
    assert response.status_code == 200 and response.json() == document()


def test_roles_are_as_documented(api_server: ApiServer):
    for method, path, operation in operations():
        role = operation.get("x-required-role")
        if role not in ROLE_BELOW:
            continue
        url = api_server.base_url + re.sub(r"\{\w+\}", "1", path)
        response = httpx.request(method, url, headers=api_server.headers(api_server.token(ROLE_BELOW[role])),
                                 json={}, trust_env=False)
        assert response.status_code == 403, f"{method} {path}: {response.status_code}"


def assert_conforms(response: httpx.Response, method: str, path: str) -> dict:
    """The response's status is documented for the operation and its JSON body fits the documented schema."""
    documented = document()["paths"][path][method]["responses"]
    assert str(response.status_code) in documented, f"{method} {path}: {response.status_code} is not documented"
    pointer = f"/paths/{path.replace('/', '~1')}/{method}/responses/{response.status_code}"
    entry = documented[str(response.status_code)]
    if "$ref" in entry:
        pointer = entry["$ref"].removeprefix("#")
    validator(f"{pointer}/content/application~1json/schema").validate(response.json())
    return response.json()


def test_token_revocation_answers_as_documented(api_server: ApiServer):
    """schemathesis leaves revocation out (it would revoke its own token); its answers are checked here."""
    client = api_server.client()
    created = assert_conforms(client.post("/tokens", json={"name": "to revoke", "role": "viewer"}), "post",
                              "/api/pipelines/tokens")
    token_id = created["api_token"]["id"]
    revoked = assert_conforms(client.delete(f"/tokens/{token_id}"), "delete", "/api/pipelines/tokens/{token_id}")
    assert revoked["api_token"]["revoked"] is True
    assert httpx.get(f"{api_server.api_url}/steps", headers=api_server.headers(created["token"]),
                     trust_env=False).status_code == 401
    again = assert_conforms(client.delete(f"/tokens/{token_id}"), "delete", "/api/pipelines/tokens/{token_id}")
    assert again["code"] == "already_revoked"
    assert_conforms(client.delete("/tokens/999999"), "delete", "/api/pipelines/tokens/{token_id}")
    tokens = assert_conforms(client.get("/tokens"), "get", "/api/pipelines/tokens")["tokens"]
    admins = [t["id"] for t in tokens if t["role"] == "admin" and not t["revoked"]]
    assert len(admins) == 1  # the server's first admin token, which this test uses
    last = assert_conforms(client.delete(f"/tokens/{admins[0]}"), "delete", "/api/pipelines/tokens/{token_id}")
    assert last["code"] == "last_admin"

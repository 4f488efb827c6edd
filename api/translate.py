"""JSON run requests of the REST API turned into pipeline YAML text; validation of the documented fields.

The API never runs a step itself: a request becomes YAML, stored on the run, and goes through the same
load → plan → execute path as `forgeyard run`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from api.errors import ApiError, validation
from runner.steps import all_steps

OUTPUT_TYPES = {"zip": ("create_zip",), "docker_image": ("build_image",), "both": ("create_zip", "build_image")}

# custom_parameters key → (step, `with:` input).
CUSTOM_PARAMETERS = {
    "ref": ("clone_repo", "ref"),
    "depth": ("clone_repo", "depth"),
    "branding_template": ("apply_branding", "template"),
    "license_exception": ("apply_branding", "license_exception"),
    "config_preset": ("apply_config", "preset"),
    "settings": ("apply_config", "settings"),
    "allow_unknown_settings": ("apply_config", "allow_unknown"),
    "reset_on_start": ("apply_config", "reset_on_start"),
    "zip_name": ("create_zip", "name"),
    "zip_level": ("create_zip", "level"),
    "build_mode": ("build_image", "mode"),
    "base_image": ("build_image", "base_image"),
    "image_name": ("build_image", "image"),
    "image_tag": ("build_image", "tag"),
    "build_args": ("build_image", "build_args"),
    "push_repository": ("push_registry", "repository"),
    "push_tags": ("push_registry", "tags"),
}
BUILD_REQUEST_FIELDS = {"steps_to_execute", "git_repository_id", "output_type", "registry_id", "custom_parameters"}


@dataclass
class BuildRequest:
    steps: list[str]
    output_type: str
    git_repository_id: int | None
    registry_id: int | None
    custom_parameters: dict[str, Any]


def parse_build_request(body: dict[str, Any]) -> BuildRequest:
    """The documented POST /runs body, checked field by field; ApiError(400) naming what is wrong."""
    unknown = sorted(set(body) - BUILD_REQUEST_FIELDS)
    if unknown:
        raise validation(f"unknown field(s): {', '.join(unknown)}", "unknown_field")
    steps = body.get("steps_to_execute")
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
        raise validation("steps_to_execute must be a non-empty list of step keys")
    registered = {step.key: step for step in all_steps()}  # in their order; each knows what it requires
    unknown_steps = sorted(set(steps) - set(registered))
    if unknown_steps:
        raise validation(f"unknown step(s): {', '.join(unknown_steps)}; available: {', '.join(registered)}",
                         "unknown_step")
    if len(set(steps)) != len(steps):
        raise validation("steps_to_execute lists a step twice")
    for step in steps:
        missing = [need for need in registered[step].requires if need not in steps]
        if missing:
            raise validation(f"{step} needs {' and '.join(missing)}", "step_dependency")
    if "clone_repo" not in steps:
        raise validation("clone_repo is required", "step_dependency")
    output_type = body.get("output_type")
    if not isinstance(output_type, str) or output_type not in OUTPUT_TYPES:
        raise validation("output_type must be one of zip, docker_image, both")
    missing = [step for step in OUTPUT_TYPES[output_type] if step not in steps]
    if missing:
        raise validation(f"output_type {output_type} needs the step(s) {', '.join(missing)}", "output_type")
    repository_id = _optional_id(body, "git_repository_id")
    registry_id = _optional_id(body, "registry_id")
    if "push_registry" in steps and registry_id is None:
        raise validation("registry_id is required when push_registry is included")
    parameters = {} if body.get("custom_parameters") is None else body["custom_parameters"]
    if not isinstance(parameters, dict):
        raise validation("custom_parameters must be an object")
    unknown = sorted(set(parameters) - set(CUSTOM_PARAMETERS))
    if unknown:
        raise validation(f"unknown custom_parameters: {', '.join(unknown)}; known: {', '.join(CUSTOM_PARAMETERS)}",
                         "unknown_parameter")
    _refuse_expressions(parameters)
    ordered = [step for step in registered if step in steps]
    return BuildRequest(ordered, output_type, repository_id, registry_id, parameters)


def _optional_id(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON has one number type: 1.0 is the integer 1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2**63 - 1:
        raise validation(f"{key} must be a positive integer or null")
    return value


def _refuse_expressions(value: Any) -> None:
    # Values become `with:` inputs; `${{` would make them expressions evaluated with the run's contexts.
    if isinstance(value, str) and "${{" in value:
        raise validation("custom_parameters may not contain ${{ expressions", "expression_not_allowed")
    if isinstance(value, dict):
        for item in value.values():
            _refuse_expressions(item)
    if isinstance(value, list):
        for item in value:
            _refuse_expressions(item)


def build_request_yaml(request: BuildRequest, name: str) -> str:
    """The pipeline a build request stands for: one job running the chosen steps in their order."""
    inputs: dict[str, dict[str, Any]] = {step: {} for step in request.steps}
    inputs["clone_repo"]["repository"] = request.git_repository_id or "official"
    if "push_registry" in inputs:
        inputs["push_registry"]["registry"] = request.registry_id
    for key, value in request.custom_parameters.items():
        step, field = CUSTOM_PARAMETERS[key]
        if step not in inputs:
            raise validation(f"custom_parameters.{key} is for {step}, which is not in steps_to_execute",
                             "unused_parameter")
        inputs[step][field] = value
    steps = [{"name": step, "uses": step, **({"with": inputs[step]} if inputs[step] else {})}
             for step in request.steps]
    pipeline = {"name": name, "on": ["api"], "jobs": {"build": {"name": "build", "steps": steps}}}
    return yaml.safe_dump(pipeline, sort_keys=False, allow_unicode=True)


def spec_error(error: Exception) -> ApiError:
    """A pipeline that does not load, as a 400 listing every diagnostic."""
    diagnostics = getattr(error, "diagnostics", None)
    if diagnostics:
        text = "; ".join(f"{d.line}:{d.col}: {d.message}" for d in diagnostics if d.severity == "error")
        return validation(f"invalid pipeline: {text}", "invalid_pipeline")
    return validation(f"invalid pipeline: {error}", "invalid_pipeline")

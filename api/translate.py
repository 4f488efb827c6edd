"""JSON run requests of the REST API turned into pipeline YAML text; validation of the documented fields.

The API never runs a step itself: a request becomes YAML, stored on the run, and goes through the same
load → plan → execute path as `forgeyard run`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import yaml

from api.errors import ApiError, validation
from runner.diagnostics import api_code
from runner.openwebui import looks_secret
from runner.steps import StepFailed, all_steps, build_image, push_registry

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
# The inputs that are parts of image references, with their checks (the linter uses the same for pipelines).
IMAGE_INPUTS = {"build_image": build_image.IMAGE_INPUTS, "push_registry": push_registry.IMAGE_INPUTS}
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
    _check_image_parameters(parameters)
    _refuse_secret_build_args(parameters)
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
    if isinstance(value, float) and not math.isfinite(value):  # JSON parsers take NaN; YAML would make it text
        raise validation("custom_parameters may not contain NaN or Infinity")
    if isinstance(value, dict):
        for item in value.values():
            _refuse_expressions(item)
    if isinstance(value, list):
        for item in value:
            _refuse_expressions(item)


def _check_image_parameters(parameters: dict[str, Any]) -> None:
    """400 invalid_image_ref for an image name, tag or repository docker would read as something else (`-t`)."""
    for key, value in parameters.items():
        step, field = CUSTOM_PARAMETERS[key]
        check = IMAGE_INPUTS.get(step, {}).get(field)
        strings = [item for item in (value if isinstance(value, list) else [value]) if isinstance(item, str)]
        for item in strings if check else []:  # other types are the step schema's to refuse
            try:
                check(item)
            except ValueError as error:
                raise validation(f"custom_parameters.{key}: {error}", "invalid_image_ref") from None


def _refuse_secret_build_args(parameters: dict[str, Any]) -> None:
    """400 secret_in_build_arg when a build argument carries a secret setting (docker history would show it).

    The build step refuses it too, with stored presets and `secrets` included; what a request shows is refused
    before a run exists.
    """
    settings, build_args = parameters.get("settings"), parameters.get("build_args")
    if not isinstance(settings, dict) or not isinstance(build_args, dict):
        return
    secrets = [value for name, value in settings.items() if isinstance(value, str) and looks_secret(name)]
    texts = {name: value for name, value in build_args.items() if isinstance(value, str)}
    try:
        build_image.refuse_secrets("build_arg", texts, secrets)
    except StepFailed as error:
        raise validation(f"custom_parameters.build_args: {error}", error.code or "secret_in_build_arg") from None


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
    return yaml.dump(pipeline, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


class _Dumper(yaml.SafeDumper):
    """safe_dump, double-quoting every string whose other styles would not read back as the same string.

    PyYAML quotes by YAML 1.1 rules; runner.yamlsource reads YAML 1.2 core with booleans in any case, so a plain
    `0o17` would become 15 and `tRuE` true. That loader resolves only plain scalars that are empty or start with
    one of `_RESOLVED_START`. And a line break other than \n (U+0085, U+2028) in a single-quoted string reads
    back as a space; double quotes escape every such character exactly.
    """


_RESOLVED_START = "~nNtTfF+-.0123456789"


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    exact = value and value[0] not in _RESOLVED_START and value.isprintable()
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=None if exact else '"')


_Dumper.add_representer(str, _represent_str)


def spec_error(error: Exception) -> ApiError:
    """A pipeline that does not load, as a 400 listing every diagnostic, with the catalogue's code if one applies."""
    errors = [d for d in getattr(error, "diagnostics", None) or [] if d.severity == "error"]
    if not errors:
        return validation(f"invalid pipeline: {error}", "invalid_pipeline")
    text = "; ".join(f"{d.line}:{d.col}: {d.message}" for d in errors)
    return validation(f"invalid pipeline: {text}", api_code(errors))

"""Built-in step apply_config: checks Open WebUI settings, writes the tree's .env and records them for the image.

It never logs a secret's value and never decides to bake a secret into an image: build_image reads
state["apply_config"], where secrets are kept apart and marked with the user's bake_secrets choice.
"""

from __future__ import annotations

from typing import Any

from runner import openwebui
from runner.steps import BuiltinStep, StepContext, StepFailed

KEY = "apply_config"
PERSISTENCE_TRAP = (
    "Note: Open WebUI keeps most settings in its database from the first start; env values are ignored "
    "afterwards unless ENABLE_PERSISTENT_CONFIG=False or RESET_CONFIG_ON_START=True — set reset_on_start: true "
    "to apply these on every start")


def run(context: StepContext) -> dict[str, Any]:
    tree = openwebui.checked_out_tree(context, KEY)
    inputs = context.inputs
    values = _requested_settings(context)
    settings = _checked(values, allow_unknown=inputs["allow_unknown"])
    given_secrets = {value for value in context.secrets.values() if value}
    # A secret is a setting named as one, or one whose value came from `secrets`.
    secret_names = {name for name in settings if openwebui.looks_secret(name)
                    or (isinstance(values[name], str) and values[name] in given_secrets)}
    for name in sorted(secret_names):
        if settings[name]:
            context.add_mask(settings[name])
    env = {name: value for name, value in settings.items() if name not in secret_names}
    secret_env = {name: value for name, value in settings.items() if name in secret_names}
    _log_settings(context, settings, secret_names, values, given_secrets)

    try:
        existing = openwebui.read_tree_file(tree, openwebui.ENV_FILE) or b""
        merged = openwebui.merge_env_file(existing.decode("utf-8", "replace"), settings)
        openwebui.write_tree_file(tree, openwebui.ENV_FILE, merged.encode(), mode=0o600)
    except openwebui.TreePathError as error:
        raise StepFailed(str(error), error.code) from None
    except ValueError as error:
        raise StepFailed(str(error)) from None
    context.log(f"Wrote {len(settings)} settings to {openwebui.ENV_FILE} in the tree (the ZIP carries it; "
                ".dockerignore keeps it out of images, which get the settings as ENV lines instead)")
    if secret_env:
        context.log(f"Secrets {', '.join(sorted(secret_env))} are in that .env, so they are inside the ZIP; "
                    + ("bake_secrets: true also bakes them into the image as ENV lines, readable by anyone who "
                       "can pull it" if inputs["bake_secrets"] else "they are not baked into an image"))
    context.log(PERSISTENCE_TRAP)
    context.state[KEY] = {"env": env, "secret_env": secret_env, "bake_secrets": inputs["bake_secrets"]}
    return {"settings": len(settings), "env_file": str(tree / openwebui.ENV_FILE)}


def _requested_settings(context: StepContext) -> dict[str, Any]:
    """The preset's settings overridden by `settings`, and RESET_CONFIG_ON_START when reset_on_start is set."""
    values: dict[str, Any] = {}
    if context.inputs.get("preset") is not None:
        values.update(_preset_settings(context.inputs["preset"]))
    values.update(context.inputs.get("settings") or {})
    if context.inputs["reset_on_start"]:
        if "RESET_CONFIG_ON_START" in values:
            context.log("reset_on_start: true overrides the RESET_CONFIG_ON_START setting")
        values["RESET_CONFIG_ON_START"] = True
    return values


def _preset_settings(ref: str | int) -> dict[str, Any]:
    from runner import catalog

    try:
        preset = catalog.find_config_preset(ref)
    except catalog.CatalogError as error:
        raise StepFailed(str(error)) from None
    if not isinstance(preset.settings, dict):
        raise StepFailed(f"configuration preset {preset.name!r} holds no settings map")
    return preset.settings


def _checked(values: dict[str, Any], *, allow_unknown: bool) -> dict[str, str]:
    """Every value normalised; StepFailed listing every unknown key (with a guess) and every bad value."""
    problems = []
    if not allow_unknown:
        for name in values:
            if name not in openwebui.SETTINGS:
                guess = openwebui.suggest_setting(name)
                hint = f" (did you mean {guess}?)" if guess else ""
                problems.append(f"unknown setting {name}{hint}")
        if problems:
            problems.append("set allow_unknown: true to pass settings Forgeyard does not know")
    settings = {}
    for name, value in values.items():
        if name not in openwebui.SETTINGS and not allow_unknown:
            continue
        if not name.isidentifier() or not name.isascii():
            problems.append(f"{name!r} is not a valid environment variable name")
            continue
        try:
            settings[name] = openwebui.normalize_setting(name, value)
        except ValueError as error:
            # A secret's bad value is not repeated: it may be the secret itself.
            problems.append(f"{name} has an invalid value" if openwebui.looks_secret(name) else str(error))
    if problems:
        raise StepFailed("; ".join(problems))
    return settings


def _log_settings(context: StepContext, settings: dict[str, str], secret_names: set[str],
                  values: dict[str, Any], given_secrets: set[str]) -> None:
    context.log(f"Settings ({len(settings)}):")
    for name, value in settings.items():
        known = openwebui.SETTINGS.get(name)
        shown = "*** (secret)" if name in secret_names else value
        context.log(f"  {name}={shown}" + (f"  — {known.description}" if known else "  — not a known setting"))
        if name in secret_names and value and values[name] not in given_secrets:
            context.log(f"  Warning: {name} is a secret written in the pipeline itself; "
                        "pass it as ${{ secrets.NAME }} instead")
    branding = context.state.get("apply_branding") or {}
    branded_name = (branding.get("env") or {}).get("WEBUI_NAME")
    if branded_name and settings.get("WEBUI_NAME", branded_name) != branded_name:
        context.log(f"Warning: WEBUI_NAME={settings['WEBUI_NAME']} overrides the branded name {branded_name!r}")


STEP = BuiltinStep(KEY, "Apply Configuration", "Apply configuration settings", 3, False, run,
                   requires=("clone_repo",))

"""Built-in step apply_branding: rebrands the checked-out Open WebUI tree; it never writes outside that tree.

Images come from one logo (and optional favicon/splash inputs), the name goes into the frontend files, and a
manifest lists every changed file with its sha256 before and after. The licence's branding clause is honoured.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Container, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import brandimages, openwebui
from runner.brandimages import BrandSource, ImageRejected
from runner.openwebui import ChangeLog, ImageVariant, TreePathError
from runner.steps import BuiltinStep, StepContext, StepFailed

KEY = "apply_branding"
MANIFEST = "branding-manifest.json"  # at the tree root, so the ZIP carries it too
SOURCE_INPUTS = ("logo", "favicon", "splash", "splash_dark")
_FAMILY_SIZES = {"favicon": (512, 512), "logo": (500, 500), "splash": (500, 500), "splash_dark": (500, 500)}
_MAX_TEXT_BYTES = 4 * 1024 * 1024  # replacements skip larger files


@dataclass
class Brand:
    name: str
    theme_color: str | None = None
    replacements: list[dict[str, Any]] = field(default_factory=list)
    license_exception: str | None = None
    template: str | None = None
    sources: dict[str, BrandSource] = field(default_factory=dict)


def run(context: StepContext) -> dict[str, Any]:
    tree = openwebui.checked_out_tree(context, KEY)
    missing = openwebui.missing_required(tree)
    if missing:
        raise StepFailed(f"the checked-out tree is not an Open WebUI tree: it lacks {', '.join(missing)}")
    brand = _brand(context)
    # Every glob is checked before anything changes: a refused one leaves the tree as it was.
    globs = [_glob_patterns(tree, rule["files"], number) for number, rule in enumerate(brand.replacements, 1)]
    clause = _check_licence(context, tree, brand)
    changes = ChangeLog(tree)
    try:
        images = _replace_images(context, tree, brand, changes)
        _set_name(context, tree, brand, changes)
        _remove_name_suffix(context, tree, brand, clause, changes)
        env_file = openwebui.read_tree_file(tree, openwebui.ENV_FILE) or b""
        changes.write(openwebui.ENV_FILE, openwebui.merge_env_file(
            env_file.decode("utf-8", "replace"), {"WEBUI_NAME": brand.name}).encode(), mode=0o600)
        for number, (rule, patterns) in enumerate(zip(brand.replacements, globs, strict=True), 1):
            _apply_replacement(context, tree, number, rule, patterns, changes)
    except TreePathError as error:
        raise StepFailed(str(error), error.code) from None
    except ValueError as error:  # a file of the tree that is not what an Open WebUI tree has there
        raise StepFailed(str(error)) from None
    manifest = _manifest(brand, clause, images, changes)
    openwebui.write_tree_file(tree, MANIFEST, manifest.encode())
    context.log(f"Branding manifest ({MANIFEST}):")
    context.log(manifest)
    context.state[KEY] = {
        "name": brand.name, "files": [entry["path"] for entry in changes.entries()],
        "env": {"WEBUI_NAME": brand.name}, "manifest": MANIFEST, "license_exception": brand.license_exception}
    context.log(f"Branded as {brand.name!r}: {len(changes.changes)} files changed")
    return {"name": brand.name, "manifest": str(tree / MANIFEST), "files": len(changes.changes)}


# -- inputs ------------------------------------------------------------------------------------------------

def _brand(context: StepContext) -> Brand:
    inputs = context.inputs
    brand = _from_template(inputs["template"]) if inputs.get("template") is not None else Brand(name="")
    brand.name = inputs.get("name") or brand.name
    brand.theme_color = inputs.get("theme_color") or brand.theme_color
    brand.license_exception = inputs.get("license_exception") or brand.license_exception
    if "replacements" in inputs:
        brand.replacements = inputs["replacements"]
    for kind in SOURCE_INPUTS:
        if inputs.get(kind):
            brand.sources[kind] = _load(kind, _read_input_file(context, inputs[kind], kind))
    if "logo" not in brand.sources:
        raise StepFailed("apply_branding needs a logo: with.logo, or a template with a logo image")
    for kind, source in brand.sources.items():
        context.log(f"{kind}: {source.kind.upper()} {source.raster.width}x{source.raster.height}"
                    f" sha256 {openwebui.sha256(source.data)}")
    return brand


def _from_template(ref: str | int) -> Brand:
    from runner import catalog

    try:
        template = catalog.find_branding_template(ref)
    except catalog.CatalogError as error:
        raise StepFailed(str(error)) from None
    exception = template.license_exception or None
    if exception is not None and exception not in openwebui.LICENSE_EXCEPTIONS:
        raise StepFailed(f"branding template {template.name!r} has an unknown license_exception {exception!r}")
    replacements = template.replacements or []
    _check_replacements(replacements, template.name)
    brand = Brand(name=template.app_name, theme_color=template.theme_color, replacements=replacements,
                  license_exception=exception, template=template.name)
    for kind in SOURCE_INPUTS:
        data = template.asset(kind)
        if data is not None:
            brand.sources[kind] = _load(kind, data)
    return brand


def _check_replacements(replacements: Any, template_name: str) -> None:
    import jsonschema

    schema = STEP.input_schema["properties"]["replacements"]
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(replacements))
    if error is not None:
        raise StepFailed(f"branding template {template_name!r} has invalid replacements: {error.message}")


def _load(kind: str, data: bytes) -> BrandSource:
    try:
        return brandimages.load_source(data, kind)
    except ImageRejected as error:
        raise StepFailed(str(error)) from None


def file_paths(inputs: dict[str, Any]) -> Iterator[tuple[tuple[str | int, ...], str, bool]]:
    """(place under `with:`, path, whether the step writes there) of every file path in `inputs` as written;
    parts of the wrong shape are skipped (the schema reports them)."""
    for kind in SOURCE_INPUTS:
        if isinstance(inputs.get(kind), str):
            yield (kind,), inputs[kind], False
    rules = inputs.get("replacements")
    for number, rule in enumerate(rules if isinstance(rules, list) else []):
        globs = rule.get("files") if isinstance(rule, dict) else None
        for index, glob in enumerate(globs if isinstance(globs, list) else []):
            if isinstance(glob, str):
                yield ("replacements", number, "files", index), glob, True


def _read_input_file(context: StepContext, given: str, label: str) -> bytes:
    """An input file relative to the pipeline's folder or the workspace; it must resolve inside one of them."""
    try:
        openwebui.check_tree_path(given, write=False)
    except TreePathError as error:
        raise StepFailed(f"{label}: {error}", error.code) from None
    escaped = False
    for base in (context.pipeline_dir, context.workspace):
        if base is None:
            continue
        base = base.resolve()
        real = (base / given).resolve()
        if not real.exists():
            continue
        if real != base and base not in real.parents:
            escaped = True
            continue
        return _read_regular_file(real, given, label)
    if escaped:
        raise StepFailed(f"{label} {given!r} resolves outside the pipeline's folder and the workspace",
                         "invalid_path")
    raise StepFailed(f"{label} {given!r} not found in the pipeline's folder or the workspace")


def _read_regular_file(path: Path, given: str, label: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        raise StepFailed(f"{label} {given!r} cannot be read: {error.strerror}") from None
    with os.fdopen(fd, "rb") as stream:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StepFailed(f"{label} {given!r} is not a file")
        data = stream.read(brandimages.MAX_INPUT_BYTES + 1)
    if len(data) > brandimages.MAX_INPUT_BYTES:
        raise StepFailed(f"{label} {given!r} is larger than {brandimages.MAX_INPUT_BYTES // (1024 * 1024)} MiB")
    return data


# -- licence -----------------------------------------------------------------------------------------------

def _check_licence(context: StepContext, tree: Path, brand: Brand) -> bool:
    """Whether the tree's LICENSE has the branding clause; StepFailed when it has and no exception is given."""
    try:
        text = (openwebui.read_tree_file(tree, openwebui.LICENSE) or b"").decode("utf-8", "replace")
    except ValueError as error:
        raise StepFailed(str(error)) from None
    if not openwebui.has_branding_clause(text):
        context.log("Licence: the tree's LICENSE has no branding clause; no licence exception is needed")
        return False
    exception = brand.license_exception
    if exception is None:
        raise StepFailed(
            "the tree's LICENSE (the Open WebUI License) forbids altering or replacing the \"Open WebUI\" "
            f"branding except: {openwebui.branding_conditions()}. Set license_exception to the one that "
            "applies to this deployment (with: or in the branding template)")
    context.log(f"Licence: the tree's LICENSE has the Open WebUI branding clause; rebranding under exception "
                f"{exception}: {openwebui.LICENSE_EXCEPTIONS[exception]}")
    return True


# -- images ------------------------------------------------------------------------------------------------

def _replace_images(context: StepContext, tree: Path, brand: Brand, changes: ChangeLog) -> list[dict[str, Any]]:
    rendered: dict[tuple[str, str, tuple[int, int]], bytes] = {}
    images = []
    context.log("Brand images:")
    for relative, variant in _image_targets(context, tree):
        source = brand.sources[source_kind(variant, brand.sources)]
        key = (source.label, variant.name.rsplit(".", 1)[-1].lower(), variant.size)
        if key not in rendered:
            rendered[key] = brandimages.render(source, variant.name, variant.size)
        existed = openwebui.tree_path(tree, relative).exists()
        changes.write(relative, rendered[key])
        width, height = variant.size
        images.append({"path": relative, "width": width, "height": height, "source": source.label})
        context.log(f"  {relative} {width}x{height} from {source.label} ({'replaced' if existed else 'added'})")
    return images


def source_kind(variant: ImageVariant, available: Container[str]) -> str:
    """Which input `variant` is drawn from, of the `available` ones (the logo always is): its own, else the one
    standing in for it. The API's template preview draws the same image from the same input."""
    return next(kind for kind in openwebui.SOURCE_FALLBACKS[variant.source] if kind in available)


def _image_targets(context: StepContext, tree: Path) -> list[tuple[str, ImageVariant]]:
    """Every brand image to write: all standard ones in static/static, what the tree has elsewhere."""
    targets = [(openwebui.ROOT_FAVICON, openwebui.ROOT_FAVICON_VARIANT)]
    for folder in (openwebui.FRONTEND_STATIC, openwebui.BACKEND_STATIC):
        path = openwebui.tree_path(tree, folder)
        if not path.is_dir() or path.is_symlink():
            context.log(f"  {folder}/ is not in this tree: nothing to replace there")
            continue
        present = {entry.name for entry in os.scandir(path) if not entry.is_dir(follow_symlinks=False)}
        for name in sorted(present | set(openwebui.IMAGE_VARIANTS)):
            relative = f"{folder}/{name}"
            variant = openwebui.IMAGE_VARIANTS.get(name)
            if variant is None:
                variant = _extra_variant(tree, relative, name)
            elif name not in present and folder == openwebui.BACKEND_STATIC:
                # Not invented: the backend copies build/static over this folder at start, so it arrives then.
                context.log(f"  {relative} is not in this tree: left absent")
                continue
            if variant is not None:
                targets.append((relative, variant))
    return targets


def _extra_variant(tree: Path, relative: str, name: str) -> ImageVariant | None:
    probe = openwebui.extra_variant(name, (0, 0))
    if probe is None:
        return None
    try:
        data = openwebui.read_tree_file(tree, relative, brandimages.MAX_INPUT_BYTES)
    except ValueError:  # a symlink or an oversized file: replaced at the family's usual size
        data = None
    size = (brandimages.image_size(data) if data else None) or _FAMILY_SIZES[probe.source]
    return openwebui.extra_variant(name, size)


# -- the name ----------------------------------------------------------------------------------------------

def _set_name(context: StepContext, tree: Path, brand: Brand, changes: ChangeLog) -> None:
    edits = [(openwebui.CONSTANTS_TS, lambda text: openwebui.set_app_name_constant(text, brand.name)),
             (openwebui.APP_HTML, lambda text: openwebui.set_page_title(text, brand.name, brand.theme_color))]
    for folder in (openwebui.FRONTEND_STATIC, openwebui.BACKEND_STATIC):
        edits.append((f"{folder}/{openwebui.WEBMANIFEST}",
                      lambda text: openwebui.set_manifest_name(text, brand.name, brand.theme_color)))
    for relative, edit in edits:
        data = openwebui.read_tree_file(tree, relative)
        if data is None:
            context.log(f"{relative} is not in this tree: name not set there")
            continue
        changes.write(relative, edit(data.decode("utf-8")).encode())
        context.log(f"Name set in {relative}")


def _remove_name_suffix(context: StepContext, tree: Path, brand: Brand, clause: bool, changes: ChangeLog) -> None:
    data = openwebui.read_tree_file(tree, openwebui.ENV_PY)
    reason = f"licence exception {brand.license_exception}" if clause else "the licence has no branding clause"
    updated = openwebui.remove_name_suffix(data.decode("utf-8"), reason) if data is not None else None
    if updated is None:
        context.log(f'{openwebui.ENV_PY} has no " (Open WebUI)" name suffix to remove')
        return
    changes.write(openwebui.ENV_PY, updated.encode())
    context.log(f'Removed the " (Open WebUI)" suffix of WEBUI_NAME in {openwebui.ENV_PY} ({reason})')


# -- replacements ------------------------------------------------------------------------------------------

def _apply_replacement(context: StepContext, tree: Path, number: int, rule: dict[str, Any],
                       globs: list[re.Pattern[str]], changes: ChangeLog) -> None:
    replace = rule["replace"]
    try:
        if rule.get("regex"):
            pattern = re.compile(rule["search"])
            pattern.sub(replace, "")  # compiles the replacement: a bad group reference fails here, not midway
        else:
            pattern, replace = re.compile(re.escape(rule["search"])), (lambda _match, text=replace: text)
    except re.error as error:
        raise StepFailed(f"replacement {number}: {error}") from None
    total, touched = 0, 0
    for relative in _matching_files(tree, globs):
        data = openwebui.read_tree_file(tree, relative, _MAX_TEXT_BYTES)
        if data is None:
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue  # binary files are never edited by text rules
        updated, count = pattern.subn(replace, text)
        if count:
            changes.write(relative, updated.encode())
            total, touched = total + count, touched + 1
    context.log(f"Replacement {number}: {total} occurrence(s) in {touched} file(s)"
                + ("" if total else " — warning: it matched nothing"))


def _glob_patterns(tree: Path, globs: list[str], number: int) -> list[re.Pattern[str]]:
    """The globs of replacement `number` as regexes; StepFailed (invalid_path, forbidden_path) for one that
    leaves the tree or names .git."""
    try:
        for glob in globs:
            openwebui.check_tree_path(glob)
            _check_literal_folders(tree, glob)
    except TreePathError as error:
        raise StepFailed(f"replacement {number}: {error}", error.code) from None
    return [_glob_regex(glob) for glob in globs]


def _matching_files(tree: Path, patterns: list[re.Pattern[str]]) -> list[str]:
    """Regular files of the tree (no symlinks followed, nothing under a .git) matching any of `patterns`."""
    found = []
    for folder, dirs, files in os.walk(tree):
        dirs[:] = sorted(d for d in dirs if d.lower() != ".git")
        for name in sorted(files):
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, tree)
            if relative == MANIFEST or not any(p.fullmatch(relative) for p in patterns):
                continue
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode) and info.st_size <= _MAX_TEXT_BYTES:  # no symlinks, no huge files
                found.append(relative)
    return found


def _check_literal_folders(tree: Path, glob: str) -> None:
    """Refuse a glob whose leading literal parts lead out of the tree through a symlink (`link/evil`, link -> ..).

    The walk never follows a link, so such a glob would only match nothing; saying why is clearer."""
    path = tree
    for part in glob.split("/"):
        if "*" in part or "?" in part:
            return
        path = path / part
        real = path.resolve()
        if real != tree and tree not in real.parents:
            relative = path.relative_to(tree).as_posix()
            raise TreePathError(f"{glob!r} leads outside the tree through the symlink {relative!r}")


def _glob_regex(glob: str) -> re.Pattern[str]:
    """A glob as a regex over tree-relative paths: ** spans folders, * and ? stay within one."""
    out, index = [], 0
    while index < len(glob):
        if glob.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
        elif glob.startswith("**", index):
            out.append(".*")
            index += 2
        else:
            char = glob[index]
            out.append("[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char))
            index += 1
    return re.compile("".join(out))


# -- manifest ----------------------------------------------------------------------------------------------

def _manifest(brand: Brand, clause: bool, images: list[dict[str, Any]], changes: ChangeLog) -> str:
    exception = brand.license_exception
    fields = {
        "name": brand.name,
        "theme_color": brand.theme_color,
        "template": brand.template,
        "license": {"branding_clause": clause, "exception": exception,
                    "condition": openwebui.LICENSE_EXCEPTIONS.get(exception or "")},
        "sources": {kind: {"format": source.kind, "sha256": openwebui.sha256(source.data)}
                    for kind, source in sorted(brand.sources.items())},
        "images": images,
        "files": changes.entries(),
    }
    # JSON with one line per field and per list entry: short enough to read in the log as well.
    lines = []
    for key, value in fields.items():
        if isinstance(value, list) and value:
            entries = ",\n".join(f"    {json.dumps(entry, ensure_ascii=False)}" for entry in value)
            text = f"[\n{entries}\n  ]"
        else:
            text = json.dumps(value, ensure_ascii=False)
        lines.append(f"  {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


STEP = BuiltinStep(KEY, "Apply Branding Template", "Apply selected branding template", 2, False, run,
                   requires=("clone_repo",))

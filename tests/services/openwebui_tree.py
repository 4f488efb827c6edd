"""A synthetic Open WebUI git repository laid out like upstream v0.11 (fixtures); it never fetches anything."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from runner import process

COMMIT_DATE = "2025-01-02T03:04:05+00:00"
COMMIT_TIME = 1735787045  # COMMIT_DATE as unix seconds
BRANCH = "main"
BASE_IMAGE_ARG = "BASE_IMAGE"  # the Dockerfile's build arg naming the (busybox-based) image to build FROM
LICENSES = ("openwebui", "bsd")
VARIANTS = ("upstream", "fork-extra-dark", "fork-missing-backend-apple")

# Every brand image of upstream static/static/ (mirrored in backend/open_webui/static/) and its size.
BRAND_IMAGES: dict[str, tuple[int, int]] = {
    "favicon.png": (512, 512),
    "favicon.svg": (512, 512),
    "favicon.ico": (32, 32),
    "favicon-96x96.png": (96, 96),
    "apple-touch-icon.png": (180, 180),
    "logo.png": (500, 500),
    "splash.png": (500, 500),
    "splash-dark.png": (500, 500),
    "web-app-manifest-192x192.png": (192, 192),
    "web-app-manifest-512x512.png": (512, 512),
}
EXTRA_DARK = ("favicon-dark.png", (256, 256))  # the fork-extra-dark variant's additional image, an unusual size
ORIGINAL_COLOR = (0, 0, 0)  # every original brand image is black, so a replaced one is easy to tell apart

_BSD = """\
Copyright (c) 2023-2025 Timothy Jaeryang Baek (Open WebUI)
All rights reserved.

Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice, this
   list of conditions and the following disclaimer.

2. Redistributions in binary form must reproduce the above copyright notice,
   this list of conditions and the following disclaimer in the documentation
   and/or other materials provided with the distribution.

3. Neither the name of the copyright holder nor the names of its
   contributors may be used to endorse or promote products derived from
   this software without specific prior written permission.
"""

_BRANDING_CLAUSE = """
4. Notwithstanding any other provision of this License, and as a material condition of
   the rights granted herein, licensees are strictly prohibited from altering, removing,
   obscuring, or replacing any "Open WebUI" branding, including but not limited to the
   name, logo, or any visual, textual, or symbolic identifiers that distinguish the
   software and its interfaces, in any deployment or distribution, regardless of the
   number of users, except as explicitly set forth in Clauses 5 and 6 below.

5. The branding restriction enumerated in Clause 4 shall not apply in the following
   limited circumstances: (i) deployments or distributions where the total number of
   end users (defined as individual natural persons with direct access to the
   application) does not exceed fifty (50) within any rolling thirty (30) day period;
   (ii) cases in which the licensee is an official contributor to the codebase—with a
   substantive code change successfully merged into the main branch of the official
   codebase maintained by the copyright holder—who has obtained specific prior written
   permission for branding adjustment from the copyright holder; or (iii) where the
   licensee has obtained a duly executed enterprise license expressly permitting such
   modification. For all other cases, any removal or alteration of the "Open WebUI"
   branding shall constitute a material breach of license.

6. All code, modifications, or derivative works incorporated into this project prior to
   the incorporation of this branding clause remain licensed under the BSD 3-Clause
   License, and prior contributions shall retain all original rights under that license.
"""

_DISCLAIMER = """
THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
AND ANY EXPRESS OR IMPLIED WARRANTIES ARE DISCLAIMED.
"""

_CONSTANTS_TS = """\
import { browser, dev } from '$app/environment';

export const APP_NAME = 'Open WebUI';

export const WEBUI_HOSTNAME = browser ? (dev ? `${location.hostname}:8080` : ``) : '';
export const WEBUI_BASE_URL = browser ? (dev ? `http://${WEBUI_HOSTNAME}` : ``) : ``;
export const WEBUI_API_BASE_URL = `${WEBUI_BASE_URL}/api/v1`;
"""

_APP_HTML = """\
<!doctype html>
<html lang="en">
	<head>
		<meta charset="utf-8" />
		<link rel="icon" type="image/png" href="/static/favicon.png" />
		<link rel="icon" type="image/png" href="/static/favicon-96x96.png" sizes="96x96" />
		<link rel="icon" type="image/svg+xml" href="/static/favicon.svg" />
		<link rel="shortcut icon" href="/static/favicon.ico" />
		<link rel="apple-touch-icon" sizes="180x180" href="/static/apple-touch-icon.png" />
		<meta name="apple-mobile-web-app-title" content="Open WebUI" />
		<link rel="manifest" href="/manifest.json" crossorigin="use-credentials" />
		<meta name="viewport" content="width=device-width, initial-scale=1, maximum-scale=1" />
		<title>Open WebUI</title>
		%sveltekit.head%
	</head>
	<body data-sveltekit-preload-data="hover">
		<div style="display: contents">%sveltekit.body%</div>
		<div id="splash-screen">
			<img id="logo" src="/static/splash.png" />
		</div>
	</body>
</html>
"""

_ENV_PY = """\
import os

####################################
# WEBUI_NAME
####################################

WEBUI_NAME = os.environ.get("WEBUI_NAME", "Open WebUI")
if WEBUI_NAME != "Open WebUI":
    WEBUI_NAME += " (Open WebUI)"

WEBUI_FAVICON_URL = "https://openwebui.com/favicon.png"

ENABLE_PERSISTENT_CONFIG = os.environ.get("ENABLE_PERSISTENT_CONFIG", "True").lower() == "true"
RESET_CONFIG_ON_START = os.environ.get("RESET_CONFIG_ON_START", "False").lower() == "true"
WEBUI_AUTH = os.environ.get("WEBUI_AUTH", "True").lower() == "true"
WEBUI_SECRET_KEY = os.environ.get("WEBUI_SECRET_KEY", "t0p-s3cr3t")
"""

_CONFIG_PY = """\
import json
import os

from open_webui.env import ENABLE_PERSISTENT_CONFIG, WEBUI_NAME  # noqa: F401


class PersistentConfig:
    def __init__(self, env_name, config_path, env_value):
        self.env_name, self.config_path, self.value = env_name, config_path, env_value


ENABLE_SIGNUP = PersistentConfig("ENABLE_SIGNUP", "ui.enable_signup",
                                 os.environ.get("ENABLE_SIGNUP", "True").lower() == "true")
DEFAULT_LOCALE = PersistentConfig("DEFAULT_LOCALE", "ui.default_locale", os.environ.get("DEFAULT_LOCALE", ""))
DEFAULT_USER_ROLE = PersistentConfig("DEFAULT_USER_ROLE", "ui.default_user_role",
                                     os.getenv("DEFAULT_USER_ROLE", "pending"))
DEFAULT_PROMPT_SUGGESTIONS = PersistentConfig("DEFAULT_PROMPT_SUGGESTIONS", "ui.prompt_suggestions",
                                              json.loads(os.environ.get("DEFAULT_PROMPT_SUGGESTIONS", "[]")))
OLLAMA_BASE_URL = os.environ.get("OLLAMA_BASE_URL", "")
OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "")
"""

_ENV_EXAMPLE = """\
# Ollama URL for the backend to connect
# The path '/ollama' will be redirected to the specified backend URL
OLLAMA_BASE_URL='http://localhost:11434'

OPENAI_API_BASE_URL=''
OPENAI_API_KEY=''

# DO NOT TRACK
SCARF_NO_ANALYTICS=true
DO_NOT_TRACK=true
ANONYMIZED_TELEMETRY=false
"""

_WEBMANIFEST = {
    "name": "Open WebUI",
    "short_name": "WebUI",
    "icons": [
        {"src": "/static/web-app-manifest-192x192.png", "sizes": "192x192", "type": "image/png",
         "purpose": "maskable"},
        {"src": "/static/web-app-manifest-512x512.png", "sizes": "512x512", "type": "image/png",
         "purpose": "maskable"},
    ],
    "theme_color": "#ffffff",
    "background_color": "#ffffff",
    "display": "standalone",
}

_SVG = """\
<svg xmlns="http://www.w3.org/2000/svg" width="512" height="512" viewBox="0 0 512 512">
  <rect width="512" height="512" fill="#000000"/>
  <circle cx="256" cy="256" r="160" fill="#ffffff"/>
</svg>
"""

# Two stages like upstream, but nothing to download: the "frontend build" is static/ plus the page shell.
DEFAULT_DOCKERFILE = f"""\
ARG {BASE_IMAGE_ARG}=open-webui-base:test
FROM ${{{BASE_IMAGE_ARG}}} AS build
COPY static /build/
COPY src/app.html /build/index.html

FROM ${{{BASE_IMAGE_ARG}}}
COPY --from=build /build /app/build
COPY backend /app/backend
WORKDIR /app/backend
"""


def _image_bytes(file_name: str, size: tuple[int, int]) -> bytes:
    if file_name.endswith(".svg"):
        return _SVG.encode()
    buffer = io.BytesIO()
    image = Image.new("RGBA", size, (*ORIGINAL_COLOR, 255))
    if file_name.endswith(".ico"):
        image.save(buffer, format="ICO", sizes=[(16, 16), size])
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def _brand_images(variant: str) -> dict[str, tuple[int, int]]:
    images = dict(BRAND_IMAGES)
    if variant == "fork-extra-dark":
        images[EXTRA_DARK[0]] = EXTRA_DARK[1]
    return images


def tree_files(*, license: str = "openwebui", variant: str = "upstream",
               dockerfile: str | None = None) -> dict[str, bytes]:
    """Every file of the synthetic tree by its tree-relative path."""
    if license not in LICENSES:
        raise ValueError(f"license must be one of {LICENSES}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}")
    manifest = (json.dumps(_WEBMANIFEST, indent="\t") + "\n").encode()
    files: dict[str, bytes] = {
        "LICENSE": (_BSD + (_BRANDING_CLAUSE if license == "openwebui" else "") + _DISCLAIMER).encode(),
        "README.md": b"# Open WebUI\n\nUser-friendly AI interface.\n",
        "package.json": b'{\n\t"name": "open-webui",\n\t"version": "0.11.0",\n\t"private": true\n}\n',
        "Dockerfile": (DEFAULT_DOCKERFILE if dockerfile is None else dockerfile).encode(),
        ".dockerignore": b".github\n.DS_Store\nnode_modules\n/build\n.env\n.env.*\n!.env.example\n",
        ".gitignore": b"node_modules\n/build\n.env\n",
        ".env.example": _ENV_EXAMPLE.encode(),
        "src/lib/constants.ts": _CONSTANTS_TS.encode(),
        "src/app.html": _APP_HTML.encode(),
        "static/favicon.png": _image_bytes("favicon.png", (512, 512)),
        "static/robots.txt": b"User-agent: *\nDisallow:\n",
        "static/opensearch.xml": (b'<OpenSearchDescription xmlns="http://a9.com/-/spec/opensearch/1.1/">'
                                  b"<ShortName>Open WebUI</ShortName></OpenSearchDescription>\n"),
        # Not a brand image: the step must leave it alone.
        "static/assets/images/background.png": _image_bytes("background.png", (64, 64)),
        "static/static/site.webmanifest": manifest,
        "backend/open_webui/__init__.py": b"",
        "backend/open_webui/env.py": _ENV_PY.encode(),
        "backend/open_webui/config.py": _CONFIG_PY.encode(),
        "backend/open_webui/static/site.webmanifest": manifest,
        "backend/requirements.txt": b"fastapi\nuvicorn\n",
    }
    for name, size in _brand_images(variant).items():
        data = _image_bytes(name, size)
        files[f"static/static/{name}"] = data
        if not (variant == "fork-missing-backend-apple" and name == "apple-touch-icon.png"):
            files[f"backend/open_webui/static/{name}"] = data
    return files


def _git(argv: list[str], cwd: Path) -> None:
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_DATE": COMMIT_DATE, "GIT_COMMITTER_DATE": COMMIT_DATE,
           "GIT_AUTHOR_NAME": "Open WebUI", "GIT_AUTHOR_EMAIL": "dev@openwebui.test",
           "GIT_COMMITTER_NAME": "Open WebUI", "GIT_COMMITTER_EMAIL": "dev@openwebui.test", "LANG": "C"}
    result, output = process.run_captured(["git", *argv], env=env, cwd=cwd, timeout=60)
    if result.exit_code != 0:
        raise RuntimeError(f"git {argv[0]} failed: {output}")


def make_openwebui_repo(path: Path, *, license: str = "openwebui", variant: str = "upstream",
                        dockerfile: str | None = None) -> Path:
    """Create at `path` a git repository (branch main, one commit at COMMIT_DATE) holding the synthetic tree.

    license: "openwebui" (LICENSE with the branding clause, v0.6.6+) or "bsd" (older releases).
    variant: "upstream", "fork-extra-dark" (an extra favicon-dark.png, 256², in both static folders) or
    "fork-missing-backend-apple" (no backend/open_webui/static/apple-touch-icon.png).
    dockerfile: the Dockerfile's text; default DEFAULT_DOCKERFILE (build with --build-arg BASE_IMAGE=<image>).
    """
    files = tree_files(license=license, variant=variant, dockerfile=dockerfile)
    path.mkdir(parents=True, exist_ok=True)
    for relative, data in files.items():
        target = path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    _git(["init", "--quiet", "--initial-branch", BRANCH, "."], path)
    _git(["add", "--all"], path)
    _git(["commit", "--quiet", "--no-gpg-sign", "--message", f"Open WebUI synthetic tree ({license}, {variant})"],
         path)
    return path


@pytest.fixture(scope="session", name="openwebui_repo_factory")
def openwebui_repo_factory_fixture(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """make_openwebui_repo with the same keyword arguments, made once per session per combination.

    The repositories are shared: clone or copy one before changing its files.
    """
    made: dict[tuple, Path] = {}

    def factory(*, license: str = "openwebui", variant: str = "upstream", dockerfile: str | None = None) -> Path:
        key = (license, variant, dockerfile)
        if key not in made:
            made[key] = make_openwebui_repo(tmp_path_factory.mktemp("openwebui"), license=license,
                                            variant=variant, dockerfile=dockerfile)
        return made[key]

    return factory


@pytest.fixture(scope="session", name="openwebui_repo")
def openwebui_repo_fixture(openwebui_repo_factory: Callable[..., Path]) -> Path:
    """The upstream layout with the Open WebUI licence (branding clause); shared, do not modify."""
    return openwebui_repo_factory()


def _checkout_stand_in(context) -> dict:
    # A test-only clone_repo: copies a local repository (the real step refuses local paths) into the workspace.
    import shutil

    source, target = Path(context.inputs["source"]), context.workspace / context.inputs["path"]
    shutil.copytree(source, target, symlinks=True)
    env = {"PATH": os.environ.get("PATH", os.defpath), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    result, commit = process.run_captured(["git", "rev-parse", "HEAD"], env=env, cwd=target)
    assert result.exit_code == 0, commit
    context.state["clone_repo"] = {"path": str(target), "url": "https://example.invalid/open-webui.git",
                                   "commit": commit.strip(), "ref": BRANCH, "commit_time": COMMIT_TIME,
                                   "repository_id": None}
    return {"commit": commit.strip(), "ref": BRANCH, "path": str(target)}


@pytest.fixture(name="checkout_stand_in")
def checkout_stand_in_fixture() -> Iterator[None]:
    """Replaces the clone_repo step, for one test, by one that copies `with: {source: <local repo>}`."""
    from runner.steps import BuiltinStep, all_steps, get_step, register, unregister

    all_steps()  # discover the real steps first, so they cannot replace the stand-in later
    real = get_step("clone_repo")
    register(BuiltinStep("clone_repo", "Clone (test stand-in)", "copies a local repository", 1, True,
                         _checkout_stand_in, schema={
                             "type": "object", "required": ["source"], "additionalProperties": False,
                             "properties": {"source": {"type": "string"},
                                            "path": {"type": "string", "default": "src"}}}))
    yield
    unregister("clone_repo")
    if real is not None:
        register(real)

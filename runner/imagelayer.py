"""An image made in Python on top of a local base image: a deterministic layer tar, the derived image config and the
docker-archive `docker load` takes; it runs no process (runner/docker.py does) and holds no step policy.

The archive carries only the new layer: the daemon's layer store already holds the base image's layers under
their chain ids, and `docker load` opens a layer's file only for a chain it lacks.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

LAYER_NAME = "layer.tar"
# History entries of instructions that only set config (classic builder: "/bin/sh -c #(nop)  ENV …").
_METADATA = re.compile(r"(?:/bin/sh -c #\(nop\)\s+)?(?:ENV|LABEL|CMD|ENTRYPOINT|EXPOSE|VOLUME|USER|WORKDIR|ARG|"
                       r"STOPSIGNAL|HEALTHCHECK|SHELL|ONBUILD|MAINTAINER)\b")


@dataclass(frozen=True)
class Image:
    """What `docker load` is handed: the config's bytes (the image id is their digest) and the new layer, if any."""

    config: bytes
    layer: bytes | None
    diff_ids: list[str]  # every layer's, the base image's first

    @property
    def id(self) -> str:
        return digest(self.config)


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: Mapping[str, bytes], mtime: int) -> bytes:
    """An uncompressed layer of `files` (absolute image path -> bytes) and their parent folders, as COPY lays them:
    owned by root, folders 0755, files 0644, every entry dated `mtime`, sorted: the same files give the same bytes.
    """
    folders: set[str] = set()
    for path in files:
        parts = PurePosixPath(path).parts
        if str(PurePosixPath(path)) != path or not path.startswith("/") or len(parts) < 2 or ".." in parts:
            raise ValueError(f"not an absolute, normalised file path: {path!r}")
        folders.update("/".join(parts[1:end]) for end in range(2, len(parts)))
    entries = {**{folder: None for folder in folders}, **{path.lstrip("/"): data for path, data in files.items()}}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):  # a folder sorts before what it holds: its name is their prefix
            data = entries[name]
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid = mtime, 0, 0
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            else:
                info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def base_history(rows: Iterable[Mapping[str, Any]], layer_count: int) -> list[dict[str, Any]]:
    """The base image's config history, oldest first, from `docker history --format '{{json .}}'` rows (newest first).

    The rows do not say which entries made a layer: one with a size did; of the rest, as many as the layers still
    unaccounted for count as layers too (a RUN that changed only folders), those that are not metadata first.
    """
    oldest_first = list(rows)[::-1]
    entries = [{"created": row.get("CreatedAt") or "1970-01-01T00:00:00Z",
                **{key: row[field] for key, field in (("created_by", "CreatedBy"), ("comment", "Comment"))
                   if row.get(field)}} for row in oldest_first]
    sized = [str(row.get("Size") or "0") != "0" for row in oldest_first]
    unsized = [i for i, has_size in enumerate(sized) if not has_size]
    unsized.sort(key=lambda i: bool(_METADATA.match(entries[i].get("created_by", ""))))  # stable: oldest first
    for i in unsized[max(0, layer_count - sum(sized)):]:
        entries[i]["empty_layer"] = True
    return entries


def derive(base: Mapping[str, Any], history: list[dict[str, Any]], *, layer: bytes | None, env: Mapping[str, str],
           labels: Mapping[str, str], created: str, steps: Iterable[tuple[str, bool]]) -> Image:
    """The image `base` (its `docker image inspect` JSON) becomes with `layer` on top and `env`/`labels` set.

    `history` is the base's (base_history); `steps` are the entries added after it: (created_by, makes the layer).
    Config keeps every setting of the base's (Cmd, Entrypoint, WorkingDir, User …); ENV replaces a variable in
    place or appends it, LABEL adds to the base's labels, as a Dockerfile's ENV and LABEL do.
    """
    diff_ids = list(base["RootFS"]["Layers"])
    if layer is not None:
        diff_ids.append(digest(layer))
    config = dict(base.get("Config") or {})
    config["Env"] = _merge_env(config.get("Env") or [], env)
    config["Labels"] = {**(config.get("Labels") or {}), **labels}
    added = [{"created": created, "created_by": created_by, **({} if makes_layer else {"empty_layer": True})}
             for created_by, makes_layer in steps]
    image = {"architecture": base["Architecture"], "os": base["Os"], "created": created, "config": config,
             "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": [*history, *added]}
    for key, field in (("variant", "Variant"), ("os.version", "OsVersion"), ("author", "Author")):
        if base.get(field):
            image[key] = base[field]
    return Image(json.dumps(image, separators=(",", ":")).encode(), layer, diff_ids)


def _merge_env(base: list[str], env: Mapping[str, str]) -> list[str]:
    """`base` (NAME=value entries) with `env` set: a variable it has keeps its place, a new one comes last."""
    merged = {entry.partition("=")[0]: entry for entry in base}
    merged.update({name: f"{name}={value}" for name, value in env.items()})
    return list(merged.values())


def write_archive(image: Image, tag: str, path: Path) -> None:
    """The docker-archive (`docker save` format) of `image` tagged `tag`, holding its config and new layer only."""
    config_name = image.id.removeprefix("sha256:") + ".json"
    # The base layers' files are named but absent: the loader finds their chains in the store and never opens them.
    layers = [f"{diff_id.removeprefix('sha256:')}/{LAYER_NAME}" for diff_id in image.diff_ids]
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": layers}]).encode()
    members = [(config_name, image.config), ("manifest.json", manifest)]
    if image.layer is not None:
        members.append((layers[-1], image.layer))
    with tarfile.open(path, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

"""runner/imagelayer: the layer tar, the base history rebuilt from `docker history`, the derived config, the archive."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from runner import imagelayer

BASE = {  # `docker image inspect` of an image built FROM an import, with RUN, ENV, COPY and LABEL (classic builder)
    "Id": "sha256:" + "f0" * 32, "Architecture": "amd64", "Os": "linux", "Size": 2013482, "Author": "",
    "Config": {"Env": ["PATH=/usr/bin:/bin", "A=1"], "Cmd": ["sh", "start.sh"], "WorkingDir": "/app/backend",
               "Entrypoint": None, "Labels": {"a": "b"}},
    "RootFS": {"Type": "layers", "Layers": ["sha256:" + "c3" * 32, "sha256:" + "1b" * 32, "sha256:" + "7a" * 32]},
}
HISTORY_ROWS = [  # its `docker history --no-trunc --human=false --format '{{json .}}'`, newest first
    {"CreatedAt": "2026-11-26T15:06:05Z", "CreatedBy": "/bin/sh -c #(nop)  LABEL a=b", "Size": "0", "Comment": ""},
    {"CreatedAt": "2026-11-26T15:06:05Z", "CreatedBy": "/bin/sh -c #(nop) COPY file:22e0 in /y ", "Size": "95"},
    {"CreatedAt": "2026-11-26T15:06:05Z", "CreatedBy": "/bin/sh -c mkdir /x", "Size": "0"},  # a layer, no bytes
    {"CreatedAt": "2026-11-26T15:06:04Z", "CreatedBy": "/bin/sh -c #(nop)  ENV A=1", "Size": "0"},
    {"CreatedAt": "2026-11-26T15:03:23Z", "CreatedBy": "", "Size": "2013387", "Comment": "Imported from -"},
]


def _members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


def test_a_layer_holds_the_files_and_their_folders_as_copy_lays_them():
    files = {"/app/build/static/logo.png": b"logo", "/app/build/favicon.png": b"icon", "/app/x-y/z": b""}
    layer = imagelayer.layer_tar(files, 1735787045)
    members = _members(layer)
    assert [m.name for m in members] == ["app", "app/build", "app/build/favicon.png", "app/build/static",
                                         "app/build/static/logo.png", "app/x-y", "app/x-y/z"]
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", 1735787045)}
    assert {m.name: (m.isdir(), m.mode) for m in members}["app/build"] == (True, 0o755)
    assert {m.name: (m.isfile(), m.mode) for m in members}["app/build/favicon.png"] == (True, 0o644)
    # The same files in another order give the same bytes: the same diff id, a layer the daemon already holds.
    assert imagelayer.layer_tar(dict(reversed(files.items())), 1735787045) == layer
    assert imagelayer.layer_tar(files, 1735787046) != layer


@pytest.mark.security
@pytest.mark.parametrize("path", ["app/relative", "/app/../etc/passwd", "/app/./x", "/", "/app//x", "/app/x/",
                                  "/app/x/.."])
def test_a_layer_refuses_paths_that_are_not_absolute_and_normalised(path):
    with pytest.raises(ValueError, match="not an absolute, normalised file path"):
        imagelayer.layer_tar({path: b"x"}, 0)


def test_the_base_history_marks_the_entries_that_made_no_layer():
    history = imagelayer.base_history(HISTORY_ROWS, len(BASE["RootFS"]["Layers"]))
    assert [entry.get("created_by", "") for entry in history] == [row["CreatedBy"] for row in HISTORY_ROWS[::-1]]
    assert [entry.get("empty_layer", False) for entry in history] == [False, True, False, False, True]
    assert history[0] == {"created": "2026-11-26T15:03:23Z", "comment": "Imported from -"}
    # Layers that only sized entries account for: every entry without a size made none.
    assert [e.get("empty_layer", False) for e in imagelayer.base_history(HISTORY_ROWS, 2)] == [
        False, True, True, False, True]


def test_the_derived_config_keeps_the_base_settings_and_adds_the_layer_env_and_labels():
    layer = imagelayer.layer_tar({"/app/build/favicon.png": b"icon"}, 0)
    image = imagelayer.derive(BASE, imagelayer.base_history(HISTORY_ROWS, 3), layer=layer,
                              env={"A": "2", "WEBUI_NAME": "Acme AI"}, labels={"org.x": "y"},
                              created="2026-11-27T10:00:00Z",
                              steps=[("COPY 1 file /", True), ("ENV A WEBUI_NAME", False)])
    config = json.loads(image.config)
    assert image.id == "sha256:" + hashlib.sha256(image.config).hexdigest()
    assert config["config"]["Env"] == ["PATH=/usr/bin:/bin", "A=2", "WEBUI_NAME=Acme AI"]  # replaced in place
    assert config["config"]["Labels"] == {"a": "b", "org.x": "y"}
    assert (config["config"]["Cmd"], config["config"]["WorkingDir"]) == (["sh", "start.sh"], "/app/backend")
    assert config["rootfs"]["diff_ids"] == [*BASE["RootFS"]["Layers"], imagelayer.digest(layer)]
    assert (config["architecture"], config["os"], config["created"]) == ("amd64", "linux", "2026-11-27T10:00:00Z")
    assert "author" not in config  # the base has none
    assert config["history"][-2:] == [
        {"created": "2026-11-27T10:00:00Z", "created_by": "COPY 1 file /"},
        {"created": "2026-11-27T10:00:00Z", "created_by": "ENV A WEBUI_NAME", "empty_layer": True}]
    # One history entry with a layer per layer, as `docker history` needs.
    assert sum(not entry.get("empty_layer") for entry in config["history"]) == len(config["rootfs"]["diff_ids"])
    assert BASE["Config"]["Env"] == ["PATH=/usr/bin:/bin", "A=1"]  # the base's own inspect is left as it was


def test_the_archive_carries_the_new_layer_only(tmp_path):
    layer = imagelayer.layer_tar({"/app/x": b"x"}, 0)
    image = imagelayer.derive(BASE, [], layer=layer, env={}, labels={}, created="2026-11-27T10:00:00Z", steps=[])
    path = tmp_path / "image.tar"
    imagelayer.write_archive(image, "acme/ui:v1", path)
    with tarfile.open(path) as tar:
        [manifest] = json.loads(tar.extractfile("manifest.json").read())
        names = tar.getnames()
        config = tar.extractfile(manifest["Config"]).read()
        new_layer = tar.extractfile(manifest["Layers"][-1]).read()
    assert manifest["RepoTags"] == ["acme/ui:v1"] and len(manifest["Layers"]) == 4
    assert config == image.config and new_layer == layer
    assert sorted(names) == sorted([manifest["Config"], "manifest.json", manifest["Layers"][-1]])
    without_layer = imagelayer.derive(BASE, [], layer=None, env={"A": "3"}, labels={}, created="x", steps=[])
    imagelayer.write_archive(without_layer, "acme/ui:v2", path)
    with tarfile.open(path) as tar:
        assert len(tar.getnames()) == 2 and len(json.loads(tar.extractfile("manifest.json").read())[0]["Layers"]) == 3

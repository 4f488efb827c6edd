"""Trigger filters as tables: GitHub's documented filter-pattern examples, branch/tag/path rules, trigger kinds."""

from __future__ import annotations

import pytest

from runner.spec import load_spec
from runner.triggers import PushEvent, accepts, match_push, selected

# (pattern, matching names, names that do not match) — the "Filter pattern cheat sheet" of GitHub's docs,
# plus the character class and escape rules.
PATTERNS = [
    ("feature/*", ["feature/my-branch", "feature/your-branch"], ["feature/a/b", "feature", "x/feature/a"]),
    ("feature/**", ["feature/beta-a/my-branch", "feature/your-branch", "feature/mona/the/octocat"], ["features/a"]),
    ("main", ["main"], ["main2", "a/main", "Main"]),
    ("releases/mona-the-octocat", ["releases/mona-the-octocat"], ["releases/mona"]),
    ("*", ["main", "releases"], ["releases/a", "a/b"]),
    ("**", ["all/branch", "every/tag/name", "main"], []),
    ("*feature", ["mona-feature", "feature", "ver-10-feature"], ["feature-x", "a/feature"]),
    ("v2*", ["v2", "v2.0", "v2.9"], ["v3", "v2/x"]),
    ("v[12].[0-9]+.[0-9]+", ["v1.10.1", "v2.0.0"], ["v3.0.0", "v1.x.1", "v1.0", "v1a0.0"]),
    ("*.jsx?", ["page.js", "page.jsx"], ["page.jsxx", "page.j", "a/page.js"]),
    ("*.js", ["app.js", "index.js"], ["js/index.js", "app.jsx"]),
    ("**.js", ["index.js", "js/index.js", "src/js/app.js"], ["index.jsx"]),
    ("docs/*", ["docs/README.md", "docs/file.txt"], ["docs/a/b.md", "docs"]),
    ("docs/**", ["docs/README.md", "docs/mona/octocat.txt"], ["doc/x", "README.md"]),
    ("docs/**/*.md", ["docs/README.md", "docs/mona/hello-world.md", "docs/a/markdown/file.md"], ["docs/a.txt"]),
    ("**/docs/**", ["docs/hello.md", "dir/docs/my-file.txt", "space/docs/plan/space.doc"], ["mydocs/x"]),
    ("**/README.md", ["README.md", "js/README.md"], ["README.mdx", "js/NOTREADME.md"]),
    ("**/*src/**", ["a/src/app.js", "my-src/code/js/app.js"], ["src.js", "a/srcs/x"]),
    ("**/*-post.md", ["my-post.md", "path/their-post.md"], ["post.md"]),
    ("**/migrate-*.sql", ["migrate-10909.sql", "db/migrate-v1.0.sql", "db/sept/migrate-v1.sql"], ["db/x.sql"]),
    ("[CB]at", ["Cat", "Bat"], ["Hat", "cat", "CBat"]),
    ("[1-2]00", ["100", "200"], ["300", "1-00"]),
    ("ab+c", ["abc", "abbbc"], ["ac", "ab+c"]),
    ("a\\+b", ["a+b"], ["ab", "aab"]),
    ("v1.0", ["v1.0"], ["v1x0"]),
]


@pytest.mark.parametrize(("pattern", "matching", "other"), PATTERNS, ids=[row[0] for row in PATTERNS])
def test_filter_pattern(pattern: str, matching: list[str], other: list[str]) -> None:
    assert [name for name in matching if not selected(name, [pattern])] == []
    assert [name for name in other if selected(name, [pattern])] == []


# Ordered patterns with `!`: a later negative match removes, a later positive match adds again.
ORDERED = [
    (["releases/**", "!releases/**-alpha"], "releases/10", True),
    (["releases/**", "!releases/**-alpha"], "releases/beta/3-alpha", False),
    (["*.md", "!README.md"], "hello.md", True),
    (["*.md", "!README.md"], "README.md", False),
    (["*.md", "!README.md"], "docs/hello.md", False),
    (["*.md", "!README.md", "README*"], "README.md", True),
    (["*.md", "!README.md", "README*"], "README.doc", True),
    (["!main"], "main", False),
]


@pytest.mark.parametrize(("patterns", "name", "expected"), ORDERED)
def test_ordered_patterns_with_negation(patterns: list[str], name: str, expected: bool) -> None:
    assert selected(name, patterns) is expected


def _on(on_yaml: str) -> dict:
    """The normalised `on:` of a pipeline written with `on_yaml`, through the real loader and schema."""
    return load_spec(f"on: {on_yaml}\njobs:\n  a:\n    steps:\n      - run: 'true'\n").data["on"]


BRANCH, TAG = "refs/heads/", "refs/tags/"
PUSHES = [
    # no filter: every branch and every tag
    ("push", BRANCH + "main", (), True),
    ("push", TAG + "v1", (), True),
    ("{push: null}", BRANCH + "a/b", (), True),
    ("[push, api]", TAG + "x/y", (), True),
    ("[api, manual]", BRANCH + "main", (), False),
    ("{push: {}}", "refs/notes/commits", (), False),
    # branches (GitHub's example) — and a push of a tag does not run a branches-only pipeline
    ("{push: {branches: [main, 'mona/octocat', 'releases/**']}}", BRANCH + "main", (), True),
    ("{push: {branches: [main, 'mona/octocat', 'releases/**']}}", BRANCH + "mona/octocat", (), True),
    ("{push: {branches: [main, 'mona/octocat', 'releases/**']}}", BRANCH + "releases/10/x", (), True),
    ("{push: {branches: [main, 'mona/octocat', 'releases/**']}}", BRANCH + "feature", (), False),
    ("{push: {branches: [main, 'mona/octocat', 'releases/**']}}", TAG + "main", (), False),
    ("{push: {branches: main}}", BRANCH + "main", (), True),
    # tags (GitHub's example) — and a branch push does not run a tags-only pipeline
    ("{push: {tags: [v2, 'v1.*']}}", TAG + "v2", (), True),
    ("{push: {tags: [v2, 'v1.*']}}", TAG + "v1.9.1", (), True),
    ("{push: {tags: [v2, 'v1.*']}}", TAG + "v1", (), False),
    ("{push: {tags: [v2, 'v1.*']}}", BRANCH + "v2", (), False),
    # branches-ignore and tags-ignore (GitHub's examples)
    ("{push: {branches-ignore: ['mona/octocat', 'releases/**-alpha']}}", BRANCH + "main", (), True),
    ("{push: {branches-ignore: ['mona/octocat', 'releases/**-alpha']}}", BRANCH + "releases/beta/3-alpha", (),
     False),
    ("{push: {branches-ignore: ['mona/octocat', 'releases/**-alpha']}}", BRANCH + "mona/octocat", (), False),
    ("{push: {branches-ignore: ['mona/octocat', 'releases/**-alpha']}}", TAG + "v1", (), False),
    ("{push: {tags-ignore: [v2, 'v1.*']}}", TAG + "v2", (), False),
    ("{push: {tags-ignore: [v2, 'v1.*']}}", TAG + "v3", (), True),
    ("{push: {tags-ignore: [v2, 'v1.*']}}", BRANCH + "main", (), False),
    # both kinds declared: each filters its own kind of ref
    ("{push: {branches: [main], tags: ['v*']}}", BRANCH + "main", (), True),
    ("{push: {branches: [main], tags: ['v*']}}", TAG + "v1", (), True),
    ("{push: {branches: [main], tags: ['v*']}}", TAG + "release", (), False),
    ("{push: {branches: [main], tags-ignore: ['v*']}}", TAG + "release", (), True),
    # negation in branches (GitHub's example)
    ("{push: {branches: ['releases/**', '!releases/**-alpha']}}", BRANCH + "releases/10", (), True),
    ("{push: {branches: ['releases/**', '!releases/**-alpha']}}", BRANCH + "releases/beta/3-alpha", (), False),
    # paths (GitHub's examples): at least one changed file must match
    ("{push: {paths: ['**.js']}}", BRANCH + "main", ("src/app.js", "README.md"), True),
    ("{push: {paths: ['**.js']}}", BRANCH + "main", ("README.md",), False),
    ("{push: {paths: ['sub-project/**', '!sub-project/docs/**']}}", BRANCH + "main", ("sub-project/src/a.py",),
     True),
    ("{push: {paths: ['sub-project/**', '!sub-project/docs/**']}}", BRANCH + "main", ("sub-project/docs/a.md",),
     False),
    # paths-ignore: skipped only when every changed file is ignored
    ("{push: {paths-ignore: ['docs/**']}}", BRANCH + "main", ("docs/a.md", "docs/b/c.md"), False),
    ("{push: {paths-ignore: ['docs/**']}}", BRANCH + "main", ("docs/a.md", "src/b.py"), True),
    # branches and paths together: both must hold
    ("{push: {branches: [main], paths: ['src/**']}}", BRANCH + "main", ("src/a.py",), True),
    ("{push: {branches: [main], paths: ['src/**']}}", BRANCH + "main", ("docs/a.md",), False),
    ("{push: {branches: [main], paths: ['src/**']}}", BRANCH + "dev", ("src/a.py",), False),
    # path filters are not evaluated for tags; unknown changed paths let path filters pass
    ("{push: {paths: ['src/**']}}", TAG + "v1", ("docs/a.md",), True),
    ("{push: {tags: ['v*'], paths: ['src/**']}}", TAG + "v1", ("docs/a.md",), True),
    ("{push: {paths: ['src/**']}}", BRANCH + "main", None, True),
]


@pytest.mark.parametrize(("on_yaml", "ref", "paths", "expected"), PUSHES)
def test_match_push(on_yaml: str, ref: str, paths: tuple[str, ...] | None, expected: bool) -> None:
    assert match_push(_on(on_yaml), PushEvent(ref, "a" * 40, "b" * 40, paths)) is expected


KINDS = [
    ("[api, manual]", {"api": True, "manual": True, "push": False, "schedule": False}),
    ("push", {"api": False, "manual": False, "push": True, "schedule": False}),
    ("{schedule: [{cron: '0 3 * * *'}], manual: null}", {"api": False, "manual": True, "push": False,
                                                         "schedule": True}),
]


@pytest.mark.parametrize(("on_yaml", "expected"), KINDS)
def test_accepts_the_declared_trigger_kinds(on_yaml: str, expected: dict[str, bool]) -> None:
    on = _on(on_yaml)
    assert {kind: accepts(on, kind) for kind in expected} == expected


def test_a_pipeline_without_on_runs_when_asked_never_by_itself() -> None:
    on = load_spec("jobs:\n  a:\n    steps:\n      - run: 'true'\n").data["on"]
    assert [kind for kind in ("api", "manual", "push", "schedule") if accepts(on, kind)] == ["api", "manual"]
    assert not match_push(on, PushEvent(BRANCH + "main", "a" * 40))
    with pytest.raises(ValueError, match="unknown trigger kind"):
        accepts(on, "webhook")

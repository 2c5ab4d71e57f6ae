"""Glob semantics for watch patterns and the directories they imply."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.process.globs import GlobSet, compile_glob


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("*.py", "a.py", True),
        ("*.py", "src/a.py", False),  # slash-less patterns are anchored at the root
        ("*.py", ".hidden.py", True),
        ("**/*.py", "a.py", True),
        ("**/*.py", "x/y/z/a.py", True),
        ("**/*.py", "x/a.pyc", False),
        ("src/**/*.py", "src/a.py", True),  # ** matches zero segments
        ("src/**/*.py", "src/x/y/a.py", True),
        ("src/**/*.py", "srcx/a.py", False),
        ("src/**/*.py", "lib/src/a.py", False),
        ("src/**", "src/a", True),
        ("src/**", "src/a/b/c.txt", True),
        ("src/**", "src", False),
        ("a/**/b/*.txt", "a/b/x.txt", True),
        ("a/**/b/*.txt", "a/q/r/b/x.txt", True),
        ("a/**/b/*.txt", "a/q/r/bb/x.txt", False),
        ("x**y", "xay", True),  # '**' inside a segment is just '*'
        ("x**y", "xa/y", False),
        ("?.py", "a.py", True),
        ("?.py", "ab.py", False),
        ("?", "/", False),
        ("[abc].py", "b.py", True),
        ("[abc].py", "d.py", False),
        ("[a-c].py", "b.py", True),
        ("[!a-c].py", "d.py", True),
        ("[!a-c].py", "a.py", False),
        ("[^a].py", "b.py", True),
        ("[]].py", "].py", True),
        ("a[/]b", "a/b", False),  # classes never match '/'
        ("[abc", "[abc", True),  # unclosed: literal
        ("*.{py,toml}", "a.py", True),
        ("*.{py,toml}", "pyproject.toml", True),
        ("*.{py,toml}", "a.txt", False),
        ("{src,lib}/**/*.py", "lib/x/a.py", True),
        ("{src,lib}/**/*.py", "app/a.py", False),
        ("{src/*.py,tests/**}", "tests/a/b", True),
        ("{src/*.py,tests/**}", "src/a/b.py", False),
        ("*.{py,{yml,yaml}}", "a.yaml", True),  # nested braces
        ("{a}", "{a}", True),  # no comma: literal
        ("{a,b", "{a,b", True),  # unbalanced: literal
        ("\\*.py", "*.py", True),
        ("\\*.py", "a.py", False),
        ("a.b+c(d)", "a.b+c(d)", True),  # regex metacharacters are literal
        ("a.py", "aXpy", False),
    ],
)
def test_compile_glob(pattern: str, path: str, expected: bool) -> None:
    assert (compile_glob(pattern).match(path) is not None) is expected


@pytest.mark.parametrize(
    ("patterns", "path", "expected"),
    [
        (["**/*.py"], "src/a.py", True),
        (["**/*.py"], ".git/hooks/x.py", False),
        (["**/*.py"], "src/__pycache__/a.py", False),
        (["**/*.py"], "node_modules/x/a.py", False),
        (["**/*.py"], ".venv/lib/a.py", False),
        (["**/*.py"], "venv/lib/a.py", False),
        (["**/*.py"], "dist/a.py", False),
        (["**/*.py"], "build/lib/a.py", False),
        (["**/*.py"], ".mypy_cache/a.py", False),
        (["**/*.py"], ".iii/state/a.py", False),
        (["**/*.py"], "src/build_tools/a.py", True),  # only whole segments are ignored
        (["build/**"], "build/x", False),  # ignored dirs win even over explicit patterns
        (["**/*"], "src/.a.py.swp", False),
        (["**/*"], "src/a.py~", False),
        (["**/*"], "src/.#a.py", False),
        (["**/*"], "src/4913", False),
        (["**/*"], "src/a.py", True),
        (["app.py"], "app.py", True),
        (["app.py"], "app.pyc", False),
        (["src"], "src/deep/x.txt", True),  # a literal directory covers its subtree
        (["src/"], "src/x.txt", True),
        (["./src/*.py"], "src/a.py", True),
        (["lib/../src/*.py"], "src/a.py", True),
        (["*.md", "src/*.py"], "src/a.py", True),
        ([], "src/a.py", False),
    ],
)
def test_globset_matches(tmp_path: Path, patterns: list[str], path: str, expected: bool) -> None:
    assert GlobSet(patterns, tmp_path).matches(path) is expected


def test_globset_absolute_and_outside_root(tmp_path: Path) -> None:
    root = tmp_path / "app"
    shared = tmp_path / "shared"
    gs = GlobSet(["src/*.py", f"{shared}/**/*.py", "../other/*.toml"], root)
    assert gs.matches(root / "src" / "a.py")
    assert gs.matches(str(root.resolve() / "src" / "a.py"))
    assert gs.matches(shared / "x" / "y.py")
    assert not gs.matches(shared / "node_modules" / "y.py")
    assert gs.matches(tmp_path / "other" / "c.toml")
    assert not gs.matches(tmp_path / "elsewhere" / "a.py")


def test_root_containing_glob_characters_is_literal(tmp_path: Path) -> None:
    root = tmp_path / "my[1]{a,b}*proj"
    root.mkdir()
    gs = GlobSet(["*.py"], root)
    assert gs.matches(root / "a.py")
    assert not gs.matches(tmp_path / "my1aXproj" / "a.py")


def test_root_under_an_ignored_name_still_works(tmp_path: Path) -> None:
    root = tmp_path / "build" / "app"  # only segments below the root are checked
    root.mkdir(parents=True)
    assert GlobSet(["**/*.py"], root).matches(root / "a.py")


def test_roots(tmp_path: Path) -> None:
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "lib").mkdir()
    (tmp_path / "app.py").write_text("")
    real = tmp_path.resolve()

    def roots(*patterns: str) -> list[Path]:
        return GlobSet(list(patterns), tmp_path).roots()

    assert roots("src/**/*.py") == [real / "src"]
    assert roots("src/pkg/*.py", "lib/*.py") == [real / "lib", real / "src" / "pkg"]
    assert roots("src/pkg/*.py", "src/**/*.py") == [real / "src"]  # nested roots merge
    assert roots("*.py") == [real]
    assert roots("app.py") == [real]  # a file: watch its directory (editors rename over it)
    assert roots("src") == [real / "src"]
    assert roots("gen/out/**/*.py") == [real]  # missing: nearest existing ancestor
    assert roots("src/gen/*.py") == [real / "src"]
    assert roots("{src,lib}/*.py") == [real]
    assert roots("src/pkg/*.py", "**/*.py") == [real]
    assert roots() == []


def test_may_contain(tmp_path: Path) -> None:
    gs = GlobSet(["*.toml", "src/*/*.py", "lib/**/*.py", "conf/app.yaml"], tmp_path)
    assert gs.may_contain(tmp_path / "src")
    assert gs.may_contain(tmp_path / "src" / "pkg")
    assert not gs.may_contain(tmp_path / "src" / "pkg" / "deep")  # src/*/*.py can't reach it
    assert gs.may_contain(tmp_path / "lib" / "a" / "b" / "c")
    assert gs.may_contain("conf")
    assert not gs.may_contain(tmp_path / "data")  # *.toml is top level only
    assert not gs.may_contain(tmp_path / "lib" / "node_modules" / "x")
    assert GlobSet(["**/*.py"], tmp_path).may_contain("data/x")


def test_roots_refuses_filesystem_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="whole filesystem"):
        GlobSet(["/no-such-dir-iii/**/*.py"], tmp_path).roots()


def test_empty_pattern_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        GlobSet(["  "], tmp_path)

"""Glob patterns for `watch:` config: which changed files should restart a worker.

Semantics (matched on POSIX paths, relative patterns anchored at the app root):
  *  ?  [abc] [!abc]   within one path segment (never match "/")
  **                   as a whole segment: any number of segments, including zero
                       (`src/**/*.py` matches `src/a.py` and `src/x/y/a.py`)
  {a,b}                alternation; alternatives may hold wildcards and nest
  \\x                   a literal x
A pattern without wildcards names a file, or a directory and everything in it.
A slash-less pattern is anchored at the root like any other: `*.py` matches
only top-level files, use `**/*.py` for "anywhere".

Never matched, whatever the patterns say: anything with a segment (below the
root) in IGNORED_DIRS, and editor temp files (`*.swp`, `*.swo`, `*.swx`, `*~`,
`.#*`, and vim's `4913` write probe). Without this, saving in vim or a pip
install into .venv would restart workers.
"""

from __future__ import annotations

import os
import re
from itertools import pairwise
from pathlib import Path

IGNORED_DIRS = frozenset(
    {
        ".git",
        ".venv",
        "venv",
        "node_modules",
        "__pycache__",
        "dist",
        "build",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".iii",
    }
)
_MAGIC = frozenset("*?[{\\")


def is_editor_temp(name: str) -> bool:
    """Files editors create while saving; never a reason to restart."""
    return name.endswith(("~", ".swp", ".swo", ".swx")) or name.startswith(".#") or name == "4913"


def compile_glob(pattern: str) -> re.Pattern[str]:
    """Compile a glob (see module doc) into a regex matching whole POSIX paths."""
    return re.compile(r"(?s:" + _translate(pattern, True) + r")\Z")


def _translate(pat: str, at_seg_start: bool) -> str:
    out: list[str] = []
    i, n = 0, len(pat)
    while i < n:
        c = pat[i]
        seg_start = pat[i - 1] == "/" if i else at_seg_start
        if c == "*":
            j = i
            while j < n and pat[j] == "*":
                j += 1
            if j - i >= 2 and seg_start and j < n and pat[j] == "/":
                out.append("(?:[^/]+/)*")  # "**/": zero or more whole segments
                j += 1
            elif j - i >= 2 and seg_start and j == n:
                out.append(".+")  # trailing "**": everything below
            else:
                out.append("[^/]*")
            i = j
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            i = _class(pat, i, out)
        elif c == "{":
            i = _braces(pat, i, seg_start, out)
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(pat[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def _class(pat: str, i: int, out: list[str]) -> int:
    """Translate `[...]` at pat[i]; an unclosed bracket is a literal '['."""
    j = i + 1
    negate = j < len(pat) and pat[j] in "!^"
    if negate:
        j += 1
    if j < len(pat) and pat[j] == "]":
        j += 1  # a leading ']' is a member
    end = pat.find("]", j)
    if end < 0:
        out.append(re.escape("["))
        return i + 1
    body = pat[i + 1 + negate : end]
    members = "".join(ch if ch == "-" else re.escape(ch) for ch in body)
    out.append(f"[^/{members}]" if negate else f"(?!/)[{members}]")
    return end + 1


def _braces(pat: str, i: int, seg_start: bool, out: list[str]) -> int:
    """Translate `{a,b}` at pat[i]; unbalanced or comma-less braces are literal."""
    depth, j, cuts = 0, i, []
    while j < len(pat):
        ch = pat[j]
        if ch == "\\":
            j += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                break
        elif ch == "," and depth == 1:
            cuts.append(j)
        j += 1
    if j >= len(pat) or not cuts:
        out.append(re.escape("{"))
        return i + 1
    alts = [_translate(pat[a + 1 : b], seg_start) for a, b in pairwise([i, *cuts, j])]
    out.append("(?:" + "|".join(alts) + ")")
    return j + 1


def _split_static(pattern: str) -> tuple[str, str]:
    """Split at the last '/' before the first wildcard: (static dir part, glob rest)."""
    first = next((k for k, ch in enumerate(pattern) if ch in _MAGIC), None)
    if first is None:
        return pattern, ""
    cut = pattern.rfind("/", 0, first)
    if cut < 0:
        return "", pattern
    return pattern[: cut + 1], pattern[cut + 1 :]


class _Glob:
    __slots__ = ("base", "rest", "regex")

    def __init__(self, base: str, rest: str) -> None:
        self.base = base  # absolute, normalised, no trailing slash
        self.rest = rest
        self.regex = compile_glob(rest) if rest else None  # None: literal path (and its subtree)

    def may_contain(self, directory: str) -> bool:
        """Could anything below `directory` match? (cheap over-approximation)"""
        if _within(self.base, directory):
            return True  # our whole base lies inside it
        if not _within(directory, self.base):
            return False
        if self.regex is None or "**" in self.rest:
            return True
        depth = directory[len(self.base) :].count("/")
        return self.rest.count("/") >= depth

    def match(self, abspath: str) -> bool:
        if self.regex is None:
            return abspath == self.base or abspath.startswith(self.base.rstrip("/") + "/")
        prefix = self.base.rstrip("/") + "/"
        return abspath.startswith(prefix) and self.regex.match(abspath[len(prefix) :]) is not None


class GlobSet:
    """A set of watch globs anchored at `root` (absolute patterns are allowed too)."""

    def __init__(self, patterns: list[str], root: Path) -> None:
        self.root = Path(os.path.abspath(root)).resolve()
        self._root = self.root.as_posix()
        self.patterns = list(patterns)
        self._globs: list[_Glob] = []
        for pattern in patterns:
            if not pattern.strip():
                raise ValueError("empty watch pattern")
            static, rest = _split_static(pattern.strip())
            if not static.startswith("/"):
                static = self._root + "/" + static
            base = os.path.normpath(static)  # lexical: "./", "a/../b", trailing "/"
            self._globs.append(_Glob(base, rest))

    def _abs(self, path: Path | str) -> str:
        p = os.fspath(path)
        if not os.path.isabs(p):
            p = os.path.join(self._root, p)
        return os.path.normpath(p)

    def may_contain(self, directory: Path | str) -> bool:
        """Could files below this (new) directory match? False for ignored dirs.

        Lets the watcher skip scanning directories no pattern can reach, e.g.
        everything npm creates inside node_modules.
        """
        d = self._abs(directory)
        if d.startswith(self._root + "/") and _has_ignored(d[len(self._root) :]):
            return False
        return any(g.may_contain(d) for g in self._globs)

    def matches(self, path: Path | str) -> bool:
        """Does a changed path (absolute, or relative to root) match any pattern?"""
        p = self._abs(path)
        if is_editor_temp(os.path.basename(p)):
            return False
        globs = [g for g in self._globs if g.match(p)]
        if not globs:
            return False
        if p.startswith(self._root + "/"):
            return not _has_ignored(p[len(self._root) :])
        # Outside root: only segments below the pattern's own static base count.
        return any(not _has_ignored(p[len(g.base) :]) for g in globs)

    def roots(self) -> list[Path]:
        """Directories to watch recursively: one per pattern, nested ones merged.

        Each is the pattern's static prefix (a literal pattern's directory, or its
        parent if it names a file), or its nearest existing ancestor while that
        doesn't exist yet, so creating it later is still seen.
        """
        dirs: set[str] = set()
        for g in self._globs:
            d = g.base if g.regex is not None or os.path.isdir(g.base) else os.path.dirname(g.base)
            while not os.path.isdir(d):
                d = os.path.dirname(d)
            if d == os.path.dirname(d):
                raise ValueError(f"refusing to watch the whole filesystem for pattern {g.base!r}")
            dirs.add(d)
        kept = [d for d in dirs if not any(d != o and d.startswith(o.rstrip("/") + "/") for o in dirs)]
        return sorted(Path(d) for d in kept)


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _has_ignored(rel: str) -> bool:
    return any(seg in IGNORED_DIRS for seg in rel.split("/"))

"""Loading ``config.yaml``: env expansion, the module list, and the app's data folder.

The file keeps the seed format (``port`` and ``modules: [{class, config}]``). ``${VAR}`` and
``${VAR:default}`` work anywhere a value can stand, flow style too (``{port: ${PORT}}``): each
``${...}`` is swapped for a YAML-safe placeholder before parsing and expanded after, so an error
names the YAML path, and comments are never expanded (unlike the original). A value that is
exactly one ``${...}`` takes the YAML type of what it expands to, so ``port: ${PORT:3111}`` is an
integer. ``$${`` is a literal ``${``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from supervisor.errors import ConfigError

DEFAULT_PORT = 49134
DEFAULT_CONFIG_NAME = "config.yaml"
_VAR = re.compile(r"\$(\$?)\{([^}:]*)(?::([^}]*))?\}")
_TOP_KEYS = {"port", "host", "modules", "workers", "data_dir", "worker_token", "worker_compression", "http_functions"}
DEFAULT_HOST = "127.0.0.1"  # the worker port takes registrations: not on every interface by default


@dataclasses.dataclass(frozen=True)
class ModuleEntry:
    class_name: str
    config: Any
    path: str  # e.g. "modules[2]", for error messages


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    port: int  # the worker WebSocket port; 0 = any free port
    modules: list[ModuleEntry]
    base_dir: Path  # the folder of the config file (or the cwd): relative paths resolve here
    data_dir: Path  # where modules keep data on disk, per app
    source: Path | None  # None = embedded defaults
    host: str = DEFAULT_HOST
    worker_token: str | None = None  # when set, worker connections must send `Authorization: Bearer <token>`
    http_functions: Any = None  # raw `http_functions:` mapping, parsed by the engine (HttpFunctionsConfig)
    # permessage-deflate on the worker port when a client offers it (the iii-sdk clients do). Off by
    # default: deflating every small frame cost ~0.5 ms per round trip with the Python iii-sdk here.
    worker_compression: bool = False


def default_modules() -> list[ModuleEntry]:
    """What runs without a config file: the modules that need nothing installed."""
    return [ModuleEntry("modules::api::RestApiModule", None, "defaults.modules[0]")]


def load_config(path: str | os.PathLike[str] | None, *, env: Mapping[str, str] | None = None) -> EngineConfig:
    """Load ``path`` (or ``./config.yaml``); without a file, the embedded defaults."""
    env = os.environ if env is None else env
    explicit = path is not None
    file = Path(path if path is not None else DEFAULT_CONFIG_NAME)
    if not file.exists():
        if explicit:
            raise ConfigError(f"config file {str(file)!r} does not exist")
        base = Path.cwd()
        return EngineConfig(DEFAULT_PORT, default_modules(), base, base / ".iii" / "data", None)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(file)!r}: {exc.strerror}") from None
    return parse_config(text, base_dir=file.resolve().parent, source=file, env=env)


def parse_config(text: str, *, base_dir: Path, source: Path | None, env: Mapping[str, str]) -> EngineConfig:
    where = str(source) if source else "config"
    tokens: list[str] = []

    def protect(m: re.Match[str]) -> str:
        tokens.append(m.group(0))
        return f"{_PLACEHOLDER}{len(tokens) - 1}__"

    try:
        raw = yaml.safe_load(_VAR.sub(protect, text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where} is not valid YAML{at}: {problem}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping with 'port' and 'modules'")
    raw = expand_env(_restore(raw, tokens), env, "")
    for key in raw:
        if key not in _TOP_KEYS:
            raise ConfigError(f"unknown top-level key {key!r} (valid keys: {', '.join(sorted(_TOP_KEYS))})",
                              str(key))
    port = raw.get("port", DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"must be a port number 0-65535, got {port!r}", "port")
    entries: list[ModuleEntry] = []
    for section in ("modules", "workers"):
        items = raw.get(section) or []
        if not isinstance(items, list):
            raise ConfigError("must be a list of {class, config} entries", section)
        for i, item in enumerate(items):
            entries.append(_module_entry(item, f"{section}[{i}]"))
    data_dir_raw = raw.get("data_dir", ".iii/data")
    if not isinstance(data_dir_raw, str) or not data_dir_raw:
        raise ConfigError("must be a folder path", "data_dir")
    data_dir = (base_dir / data_dir_raw).resolve()
    host = raw.get("host", DEFAULT_HOST)
    if not isinstance(host, str) or not host:
        raise ConfigError("must be an address to listen on, e.g. 127.0.0.1 or 0.0.0.0", "host")
    token = raw.get("worker_token")
    if token is not None and not isinstance(token, str):
        raise ConfigError("must be a string (e.g. ${III_TOKEN}); leave it out or empty for no token", "worker_token")
    http_functions = raw.get("http_functions")
    if http_functions is not None and not isinstance(http_functions, dict):
        raise ConfigError("must be a mapping, e.g. {allow_private: true}", "http_functions")
    compression = raw.get("worker_compression", False)
    if not isinstance(compression, bool):
        raise ConfigError("must be true or false", "worker_compression")
    token = token.strip() if token else None  # `${III_TOKEN:}` expanding to "" means no token
    return EngineConfig(port, entries, base_dir, data_dir, source, host, token or None, http_functions,
                        compression)


def _module_entry(item: Any, path: str) -> ModuleEntry:
    if not isinstance(item, dict):
        raise ConfigError("must be a mapping with 'class' and optional 'config'", path)
    for key in item:
        if key not in ("class", "config"):
            raise ConfigError(f"unknown key {key!r} (valid keys: class, config)", f"{path}.{key}")
    cls = item.get("class")
    if not isinstance(cls, str) or not cls:
        raise ConfigError("missing 'class' (e.g. modules::api::RestApiModule)", f"{path}.class")
    return ModuleEntry(cls, item.get("config"), path)


_PLACEHOLDER = "__iii_env_"
_PLACEHOLDER_RE = re.compile(r"__iii_env_(\d+)__")


def _restore(value: Any, tokens: list[str]) -> Any:
    """Put the ``${...}`` texts back where their placeholders landed in the parsed tree."""
    if not tokens:
        return value
    if isinstance(value, dict):
        return {_restore(k, tokens): _restore(v, tokens) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v, tokens) for v in value]
    if isinstance(value, str) and _PLACEHOLDER in value:
        return _PLACEHOLDER_RE.sub(lambda m: tokens[int(m.group(1))], value)
    return value


def expand_env(value: Any, env: Mapping[str, str], path: str) -> Any:
    """Expand ``${VAR}``/``${VAR:default}`` in every string of a parsed YAML tree."""
    if isinstance(value, dict):
        return {k: expand_env(v, env, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        return _expand_string(value, env, path)
    return value


def _expand_string(text: str, env: Mapping[str, str], path: str) -> Any:
    def substitute(m: re.Match[str]) -> str:
        escaped, name, default = m.group(1), m.group(2), m.group(3)
        if escaped:
            return m.group(0)[1:]
        name = name.strip()
        if not name:
            raise ConfigError("empty variable name in '${}'", path)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"environment variable {name!r} is not set and has no default "
                          f"(write ${{{name}:default}} to give one)", path)

    whole = _VAR.fullmatch(text)
    expanded = _VAR.sub(substitute, text)
    if whole and not whole.group(1):
        return _typed_scalar(expanded)
    return expanded


_SCALAR_TAGS = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool"}


def _typed_scalar(text: str) -> Any:
    """The YAML type of a plain scalar (``3111`` -> int, ``true`` -> bool), else the text unchanged.

    Only the tag is resolved, so ``#`` in a secret is never read as a comment and ``0123`` stays
    a string rather than becoming octal."""
    tag = yaml.resolver.Resolver().resolve(yaml.ScalarNode, text, (True, False))
    if tag not in _SCALAR_TAGS or text.startswith("0") and text.strip("0") and text[1:2].isdigit():
        return text
    return yaml.safe_load(text)

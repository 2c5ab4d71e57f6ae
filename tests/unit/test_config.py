"""config.yaml loading (env expansion, errors with YAML paths), typed module configs, module plan."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from modules.api.config import CorsConfig, RestApiConfig
from modules.shell.config import ExecConfig
from supervisor.config import (
    DEFAULT_PORT,
    EngineConfig,
    ModuleEntry,
    expand_env,
    load_config,
    parse_config,
)
from supervisor.config_schema import parse_dataclass
from supervisor.engine import Engine
from supervisor.errors import ConfigError
from supervisor.logview import make_log_view


def parse(text: str, env: dict[str, str] | None = None, base: Path = Path("/app")) -> EngineConfig:
    return parse_config(text, base_dir=base, source=None, env=env or {})


# -- env expansion ------------------------------------------------------------------------------


def test_var_is_expanded_in_strings() -> None:
    assert expand_env({"a": "x-${NAME}-y"}, {"NAME": "v"}, "") == {"a": "x-v-y"}


def test_default_used_when_unset() -> None:
    assert expand_env({"a": "${NAME:fallback}"}, {}, "") == {"a": "fallback"}


def test_env_wins_over_default() -> None:
    assert expand_env({"a": "${NAME:fallback}"}, {"NAME": "set"}, "") == {"a": "set"}


def test_empty_env_value_is_used_not_the_default() -> None:
    assert expand_env({"a": "pre${NAME:dflt}"}, {"NAME": ""}, "") == {"a": "pre"}


def test_default_containing_colons() -> None:
    out = expand_env({"url": "${REDIS_URL:redis://h:1/0}"}, {}, "")
    assert out == {"url": "redis://h:1/0"}


def test_empty_default() -> None:
    assert expand_env({"a": "${NAME:}"}, {}, "") == {"a": ""}


def test_spaces_around_name_are_ignored() -> None:
    assert expand_env({"a": "${ NAME }"}, {"NAME": "v"}, "") == {"a": "v"}


def test_dollar_dollar_is_a_literal() -> None:
    assert expand_env({"a": "$${X}", "b": "cost $${X} and ${X}"}, {"X": "1"}, "") == {
        "a": "${X}", "b": "cost ${X} and 1"}


def test_literal_is_not_looked_up_even_when_unset() -> None:
    assert expand_env({"a": "$${NOPE}"}, {}, "") == {"a": "${NOPE}"}


def test_whole_value_takes_yaml_type() -> None:
    out = expand_env({"port": "${P:3111}", "on": "${F:true}", "ratio": "${R:0.5}", "s": "${S:hello}"}, {}, "")
    assert out == {"port": 3111, "on": True, "ratio": 0.5, "s": "hello"}
    assert type(out["port"]) is int


def test_whole_value_from_env_is_typed() -> None:
    assert expand_env({"port": "${P}"}, {"P": "8080"}, "") == {"port": 8080}


def test_partial_value_stays_a_string() -> None:
    assert expand_env({"a": "${P:3111}0", "b": "x${F:true}"}, {}, "") == {"a": "31110", "b": "xtrue"}


def test_whole_value_that_is_not_a_scalar_stays_a_string() -> None:
    assert expand_env({"a": "${V}"}, {"V": "k: v"}, "") == {"a": "k: v"}
    assert expand_env({"a": "${V}"}, {"V": "[1, 2]"}, "") == {"a": "[1, 2]"}


def test_whole_value_invalid_yaml_stays_a_string() -> None:
    assert expand_env({"a": "${V}"}, {"V": "[unclosed"}, "") == {"a": "[unclosed"}


def test_non_strings_and_lists_pass_through() -> None:
    tree = {"n": 1, "b": False, "none": None, "l": [1, "${A:x}", {"k": "${A:y}"}]}
    assert expand_env(tree, {}, "") == {"n": 1, "b": False, "none": None, "l": [1, "x", {"k": "y"}]}


def test_unset_without_default_names_var_and_path() -> None:
    with pytest.raises(ConfigError) as info:
        expand_env({"modules": [{"class": "A"}, {"class": "B", "config": {"port": "${MY_PORT}"}}]}, {}, "")
    assert info.value.path == "modules[1].config.port"
    assert "MY_PORT" in str(info.value)
    assert "modules[1].config.port" in str(info.value)


def test_empty_variable_name_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        expand_env({"a": "${}"}, {}, "")
    assert info.value.path == "a"


@pytest.mark.parametrize("value", ["abc #1", "#secret"])
def test_whole_value_env_with_hash_is_not_truncated(value: str) -> None:
    assert expand_env({"password": "${PW}"}, {"PW": value}, "") == {"password": value}


# -- parse_config -------------------------------------------------------------------------------


def test_full_config() -> None:
    text = """
port: ${ENGINE_PORT:4000}
modules:
  - class: modules::api::RestApiModule
    config:
      port: ${API_PORT:3111}
      host: ${HOST:127.0.0.1}
  - class: modules::shell::ExecModule
    config:
      exec: ["python worker.py"]
"""
    cfg = parse(text, {"API_PORT": "9000"})
    assert cfg.port == 4000
    assert cfg.modules == [
        ModuleEntry("modules::api::RestApiModule", {"port": 9000, "host": "127.0.0.1"}, "modules[0]"),
        ModuleEntry("modules::shell::ExecModule", {"exec": ["python worker.py"]}, "modules[1]"),
    ]
    assert cfg.base_dir == Path("/app")
    assert cfg.data_dir == Path("/app/.iii/data")
    assert cfg.source is None


def test_workers_section_follows_modules() -> None:
    cfg = parse("modules:\n  - class: A\nworkers:\n  - class: B\n    config: {x: 1}\n")
    assert [(m.class_name, m.path) for m in cfg.modules] == [("A", "modules[0]"), ("B", "workers[0]")]


def test_comments_are_not_expanded() -> None:
    cfg = parse("# uses ${UNSET_IN_COMMENT}\nport: 5000  # ${ALSO_UNSET}\n")
    assert cfg.port == 5000


def test_empty_file_gives_defaults_port_and_no_modules() -> None:
    cfg = parse("")
    assert cfg.port == DEFAULT_PORT
    assert cfg.modules == []


def test_unset_var_in_module_config_names_path() -> None:
    text = "modules:\n  - class: A\n  - class: B\n    config:\n      port: ${NOT_SET_ANYWHERE}\n"
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert "NOT_SET_ANYWHERE" in str(info.value)
    assert "modules[1].config.port" in str(info.value)


def test_unknown_top_level_key_is_named() -> None:
    with pytest.raises(ConfigError) as info:
        parse("port: 1\nmodulez: []\n")
    assert "modulez" in str(info.value)
    assert info.value.path == "modulez"
    assert "modules" in str(info.value)  # lists the valid keys


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="mapping"):
        parse("- a\n- b\n")


@pytest.mark.parametrize("port", ["70000", "-1", "abc", "true", "1.5"])
def test_bad_port(port: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(f"port: {port}\n")
    assert info.value.path == "port"


def test_modules_must_be_a_list() -> None:
    with pytest.raises(ConfigError) as info:
        parse("modules: {class: A}\n")
    assert info.value.path == "modules"


def test_module_entry_without_class() -> None:
    with pytest.raises(ConfigError) as info:
        parse("modules:\n  - class: A\n  - config: {port: 1}\n")
    assert info.value.path == "modules[1].class"
    assert "class" in str(info.value)


def test_module_entry_with_empty_class() -> None:
    with pytest.raises(ConfigError) as info:
        parse("modules:\n  - class: ''\n")
    assert info.value.path == "modules[0].class"


def test_module_entry_not_a_mapping() -> None:
    with pytest.raises(ConfigError) as info:
        parse("modules:\n  - just-a-string\n")
    assert info.value.path == "modules[0]"


def test_module_entry_unknown_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse("modules:\n  - class: A\n    conifg: {}\n")
    assert info.value.path == "modules[0].conifg"


def test_bad_yaml_reports_line() -> None:
    text = "port: 1\nmodules:\n  - class: A\n    config: {a: [1, 2}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, base_dir=Path("/app"), source=Path("my.yaml"), env={})
    msg = str(info.value)
    assert "my.yaml" in msg
    assert "not valid YAML" in msg
    assert "line 4" in msg


def test_data_dir_relative_to_base() -> None:
    cfg = parse("data_dir: state/here\n", base=Path("/srv/app"))
    assert cfg.data_dir == Path("/srv/app/state/here")


def test_data_dir_absolute() -> None:
    cfg = parse("data_dir: /var/lib/iii\n", base=Path("/srv/app"))
    assert cfg.data_dir == Path("/var/lib/iii")


def test_data_dir_from_env() -> None:
    cfg = parse("data_dir: ${DATA:/tmp/d}\n")
    assert cfg.data_dir == Path("/tmp/d")


@pytest.mark.parametrize("value", ["''", "5", "[a]"])
def test_bad_data_dir(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(f"data_dir: {value}\n")
    assert info.value.path == "data_dir"


# -- load_config --------------------------------------------------------------------------------


def test_load_explicit_file_relative_data_dir(tmp_path: Path) -> None:
    folder = tmp_path / "proj"
    folder.mkdir()
    file = folder / "engine.yaml"
    file.write_text("port: ${P:1234}\ndata_dir: data\nmodules:\n  - class: X\n", encoding="utf-8")
    cfg = load_config(file, env={})
    assert cfg.port == 1234
    assert cfg.source == file
    assert cfg.base_dir == folder.resolve()
    assert cfg.data_dir == folder.resolve() / "data"
    assert cfg.modules == [ModuleEntry("X", None, "modules[0]")]


def test_load_default_file_from_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config.yaml").write_text("port: 2222\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, env={})
    assert cfg.port == 2222
    assert cfg.base_dir == tmp_path.resolve()
    assert cfg.data_dir == tmp_path.resolve() / ".iii" / "data"


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing, env={})
    assert "nope.yaml" in str(info.value)
    assert "does not exist" in str(info.value)


def test_no_file_no_path_gives_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, env={})
    assert cfg.source is None
    assert cfg.port == DEFAULT_PORT
    assert [m.class_name for m in cfg.modules] == ["modules::api::RestApiModule"]
    assert cfg.base_dir == Path.cwd()
    assert cfg.data_dir == Path.cwd() / ".iii" / "data"


def test_load_uses_os_environ_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("port: ${III_TEST_PORT_XYZ}\n", encoding="utf-8")
    monkeypatch.setenv("III_TEST_PORT_XYZ", "4567")
    assert load_config(str(file)).port == 4567


def test_unreadable_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path, env={})  # a folder exists but cannot be read as a file


# -- parse_dataclass with the real module configs ------------------------------------------------


def test_exec_config_minimal_defaults() -> None:
    cfg = parse_dataclass(ExecConfig, {"exec": ["python w.py"]}, "modules[0].config")
    assert cfg.exec == ["python w.py"]
    assert cfg.watch == []
    assert cfg.restart == "on-failure"
    assert cfg.name is None


def test_exec_config_full() -> None:
    data: dict[str, Any] = {
        "exec": ["npm i", "node w.js"], "watch": ["src/**/*.js"], "name": "w", "cwd": "sub",
        "env": {"A": "1", "B": 2}, "restart": "always", "max_restarts": -1, "stable_after_s": 3,
        "drain_timeout": 1.5,
    }
    cfg = parse_dataclass(ExecConfig, data, "p")
    assert cfg.env == {"A": "1", "B": "2"}  # str fields accept numbers as text
    assert cfg.restart == "always"
    assert cfg.stable_after_s == 3.0 and isinstance(cfg.stable_after_s, float)
    assert cfg.max_restarts == -1


def test_unknown_key_names_path_and_lists_valid_keys() -> None:
    with pytest.raises(ConfigError) as info:
        parse_dataclass(ExecConfig, {"exec": ["x"], "wacth": []}, "modules[2].config")
    assert info.value.path == "modules[2].config.wacth"
    msg = str(info.value)
    assert "'wacth'" in msg
    for key in ("exec", "watch", "restart", "max_frame_bytes"):
        assert key in msg


def test_missing_required_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_dataclass(ExecConfig, {"watch": []}, "modules[0].config")
    assert info.value.path == "modules[0].config"
    assert "'exec'" in str(info.value)


def test_none_data_means_all_defaults() -> None:
    assert parse_dataclass(RestApiConfig, None, "x") == RestApiConfig()


def test_data_not_a_mapping() -> None:
    with pytest.raises(ConfigError) as info:
        parse_dataclass(RestApiConfig, ["port"], "modules[0].config")
    assert info.value.path == "modules[0].config"
    assert "a list" in str(info.value)


@pytest.mark.parametrize(("data", "path", "words"), [
    ({"port": "80"}, "c.port", "integer"),
    ({"port": True}, "c.port", "integer"),
    ({"host": ["a"]}, "c.host", "string"),
    ({"host": False}, "c.host", "string"),
    ({"cors": "yes"}, "c.cors", "mapping"),
    ({"cors": {"allowed_origins": "*"}}, "c.cors.allowed_origins", "list"),
    ({"cors": {"allowed_origins": ["ok", 5, {}]}}, "c.cors.allowed_origins[2]", "string"),
])
def test_wrong_types_name_the_path(data: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_dataclass(RestApiConfig, data, "c")
    assert info.value.path == path
    assert words in str(info.value)


@pytest.mark.parametrize(("data", "path"), [
    ({"exec": "python w.py"}, "c.exec"),
    ({"exec": ["x"], "env": ["A=1"]}, "c.env"),
    ({"exec": ["x"], "env": {"A": None}}, "c.env.A"),
    ({"exec": ["x"], "stop_timeout": "5"}, "c.stop_timeout"),
    ({"exec": ["x"], "stop_timeout": True}, "c.stop_timeout"),
    ({"exec": ["x"], "name": []}, "c.name"),
])
def test_exec_wrong_types(data: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_dataclass(ExecConfig, data, "c")
    assert info.value.path == path


def test_bool_field_rejects_non_bool() -> None:
    from dataclasses import dataclass

    @dataclass
    class Flags:
        on: bool = False

    assert parse_dataclass(Flags, {"on": True}, "f").on is True
    with pytest.raises(ConfigError, match="true or false"):
        parse_dataclass(Flags, {"on": "yes"}, "f")


def test_literal_rejects_other_values() -> None:
    with pytest.raises(ConfigError) as info:
        parse_dataclass(ExecConfig, {"exec": ["x"], "restart": "sometimes"}, "m.config")
    assert info.value.path == "m.config.restart"
    msg = str(info.value)
    assert "'on-failure'" in msg and "'always'" in msg and "'never'" in msg and "'sometimes'" in msg


def test_optional_accepts_null() -> None:
    cfg = parse_dataclass(ExecConfig, {"exec": ["x"], "name": None}, "c")
    assert cfg.name is None


def test_nested_cors_config() -> None:
    cfg = parse_dataclass(RestApiConfig, {"cors": {"allowed_origins": ["http://a"],
                                                   "allowed_methods": ["get", "post"]}}, "c")
    assert cfg.cors == CorsConfig(["http://a"], ["GET", "POST"])


def test_nested_cors_null_is_none() -> None:
    assert parse_dataclass(RestApiConfig, {"cors": None}, "c").cors is None


def test_nested_unknown_key_path() -> None:
    with pytest.raises(ConfigError) as info:
        parse_dataclass(RestApiConfig, {"cors": {"origins": []}}, "modules[0].config")
    assert info.value.path == "modules[0].config.cors.origins"
    assert "allowed_origins" in str(info.value)


def test_nested_post_init_error_has_nested_path() -> None:
    with pytest.raises(ConfigError) as info:
        parse_dataclass(RestApiConfig, {"cors": {"allowed_methods": ["FETCH"]}}, "modules[0].config")
    assert info.value.path == "modules[0].config.cors"
    assert "FETCH" in str(info.value)


@pytest.mark.parametrize(("data", "words"), [
    ({"port": 70000}, "port must be"),
    ({"default_timeout": 0}, "default_timeout"),
    ({"concurrency_request_limit": -1}, "concurrency_request_limit"),
])
def test_post_init_value_error_becomes_config_error(data: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_dataclass(RestApiConfig, data, "modules[3].config")
    assert info.value.path == "modules[3].config"
    assert words in str(info.value)
    assert str(info.value).startswith("modules[3].config: ")


@pytest.mark.parametrize("data", [
    {"exec": []},
    {"exec": ["ok", "  "]},
    {"exec": ["x"], "stop_timeout": -1},
    {"exec": ["x"], "max_frame_bytes": 10},
])
def test_exec_post_init_errors(data: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_dataclass(ExecConfig, data, "modules[1].config")
    assert info.value.path == "modules[1].config"


# -- engine plan ------------------------------------------------------------------------------------


def _engine(entries: list[ModuleEntry]) -> Engine:
    cfg = EngineConfig(DEFAULT_PORT, entries, Path("/app"), Path("/app/.iii/data"), None)
    return Engine(cfg, make_log_view("json", "error", io.StringIO()))


def test_plan_unknown_module_class_names_path() -> None:
    engine = _engine([ModuleEntry("modules::api::RestApiModule", None, "modules[0]"),
                      ModuleEntry("modules::nope::Nope", None, "modules[1]")])
    with pytest.raises(ConfigError) as info:
        engine._plan()
    assert info.value.path == "modules[1].class"
    assert "modules::nope::Nope" in str(info.value)
    assert "modules::api::RestApiModule" in str(info.value)  # lists the known classes


def test_plan_planned_module_is_not_available_yet() -> None:
    engine = _engine([ModuleEntry("modules::observability::OtelModule", {}, "modules[0]")])
    with pytest.raises(ConfigError) as info:
        engine._plan()
    assert info.value.path == "modules[0].class"
    assert "not available" in str(info.value)


def test_plan_validates_module_config() -> None:
    engine = _engine([ModuleEntry("modules::api::RestApiModule", {"prot": 1}, "modules[0]")])
    with pytest.raises(ConfigError) as info:
        engine._plan()
    assert info.value.path == "modules[0].config.prot"


def test_plan_builds_typed_configs() -> None:
    engine = _engine([ModuleEntry("modules::api::RestApiModule", {"port": 0}, "modules[0]"),
                      ModuleEntry("modules::shell::ExecModule", {"exec": ["true"]}, "workers[0]")])
    plans = engine._plan()
    assert [p[2] for p in plans] == ["modules[0]", "workers[0]"]
    assert plans[0][0].class_name == "modules::api::RestApiModule"
    assert plans[0][1] == RestApiConfig(port=0)
    assert isinstance(plans[1][1], ExecConfig)


def test_env_in_flow_style_mappings_and_quoted_strings() -> None:
    from pathlib import Path as _P

    from supervisor.config import parse_config as _parse

    text = (
        "modules:\n"
        "  - class: modules::api::RestApiModule\n"
        "    config: {port: ${FLOW_PORT:3111}, host: \"h-${FLOW_HOST}-x\"}  # ${NOT_EXPANDED}\n"
    )
    cfg = _parse(text, base_dir=_P("/tmp"), source=None, env={"FLOW_HOST": "a b"})
    assert cfg.modules[0].config == {"port": 3111, "host": "h-a b-x"}


@pytest.mark.parametrize("config, fragment", [
    ({"exec": ["python \0 x"]}, "exec[0] contains a NUL"),
    ({"exec": ["python w.py"], "env": {"A=B": "1"}}, "'A=B' is not a valid environment variable"),
    ({"exec": ["python w.py"], "env": {"A": "x\0y"}}, "'A' is not a valid environment variable"),
])
def test_exec_commands_and_env_that_cannot_be_spawned_are_config_errors(config, fragment) -> None:
    from modules.shell.config import ExecConfig
    from supervisor.config_schema import parse_dataclass
    from supervisor.errors import ConfigError as _ConfigError

    with pytest.raises(_ConfigError) as info:
        parse_dataclass(ExecConfig, config, "modules[1].config")
    assert fragment in str(info.value) and "modules[1].config" in str(info.value)


def test_worker_compression_is_off_by_default_and_must_be_a_boolean(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("modules: []\n")
    assert load_config(file, env={}).worker_compression is False
    file.write_text("worker_compression: true\nmodules: []\n")
    assert load_config(file, env={}).worker_compression is True
    file.write_text("worker_compression: gzip\nmodules: []\n")
    with pytest.raises(ConfigError) as info:
        load_config(file, env={})
    assert info.value.path == "worker_compression"

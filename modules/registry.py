"""Module classes by their config name, imported only when a config uses them."""

from __future__ import annotations

import importlib

from modules.base import Module
from supervisor.errors import ConfigError

MODULE_CLASSES: dict[str, str] = {
    "modules::api::RestApiModule": "modules.api.module:RestApiModule",
    "modules::shell::ExecModule": "modules.shell.module:ExecModule",
    "modules::state::StateModule": "modules.state.module:StateModule",
    "modules::stream::StreamModule": "modules.stream.module:StreamModule",
    "modules::pubsub::PubSubModule": "modules.pubsub.module:PubSubModule",
    "modules::cron::CronModule": "modules.cron.module:CronModule",
    "modules::queue::QueueModule": "modules.queue.module:QueueModule",
}

# Classes of the original engine that later work will add; named so the error says so plainly.
PLANNED = {
    "modules::observability::OtelModule",
}


def module_class(name: str, path: str) -> type[Module]:
    target = MODULE_CLASSES.get(name)
    if target is None:
        known = ", ".join(sorted(MODULE_CLASSES))
        if name in PLANNED:
            raise ConfigError(f"module class {name!r} is not available in this version yet (available: {known})",
                              f"{path}.class")
        raise ConfigError(f"unknown module class {name!r} (known classes: {known})", f"{path}.class")
    module_path, _, attr = target.partition(":")
    cls: type[Module] = getattr(importlib.import_module(module_path), attr)
    return cls

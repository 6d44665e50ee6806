"""One plugin manager per daemon: built-ins by short name, entry points, blocking, isolation."""

from __future__ import annotations

import importlib
import importlib.metadata
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pluggy

from agentwatch import hookspecs
from agentwatch.logs import get_logger
from agentwatch.model import Format
from agentwatch.plugins import BUILTIN_PLUGINS

if TYPE_CHECKING:
    from agentwatch.config import Config
    from agentwatch.subscriptions import Topic
    from agentwatch.watch import WatchMethod

log = get_logger(__name__)

ENTRY_POINT_GROUP = "agentwatch"


class PluginError(Exception):
    """A plugin cannot be loaded or is wrong; the message names it and says what to do."""


class Plugins:
    """The daemon's plugins: registration, isolated hook dispatch and per-plugin error counts."""

    def __init__(self, disable: Iterable[str] = (), *, entry_points: bool = True) -> None:
        self.manager = pluggy.PluginManager("agentwatch")
        self.manager.add_hookspecs(hookspecs)
        self.errors: Counter[str] = Counter()
        disable = list(disable)
        for name in disable:
            self.manager.set_blocked(name)
        for name, path in BUILTIN_PLUGINS.items():
            if not self.manager.is_blocked(name):
                module, _, factory = path.partition(":")
                plugin = importlib.import_module(module)
                self.manager.register(getattr(plugin, factory)() if factory else plugin, name=name)
        installed = self._load_entry_points() if entry_points else set()
        unknown = sorted(set(disable) - set(BUILTIN_PLUGINS) - installed)
        if unknown:
            known = ", ".join(sorted(set(BUILTIN_PLUGINS) | installed))
            raise PluginError(f"plugins.disable names {', '.join(map(repr, unknown))}, which no plugin is called; known plugins: {known}")
        try:
            self.manager.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {exc.plugin!r} is invalid: {exc}") from None

    def _load_entry_points(self) -> set[str]:
        names = set()
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            names.add(entry_point.name)
            if self.manager.is_blocked(entry_point.name) or self.manager.has_plugin(entry_point.name):
                continue
            try:
                plugin = entry_point.load()
                self.manager.register(plugin, name=entry_point.name)
            except Exception as exc:
                raise PluginError(
                    f"plugin {entry_point.name!r} ({entry_point.value}) failed to load: {exc!r}; "
                    f"fix or uninstall it, or add it to plugins.disable"
                ) from exc
        return names

    @property
    def hook(self) -> Any:
        """The raw pluggy hook relay, for ``firstresult`` calls whose failure is fatal."""
        return self.manager.hook

    def names(self) -> list[str]:
        """The names of every registered plugin."""
        return sorted(name for name, plugin in self.manager.list_name_plugin() if name and plugin is not None)

    def record_error(self, plugin: str, where: str) -> None:
        """Log the exception being handled as a plugin's failure and count it."""
        self.errors[plugin] += 1
        log.exception("plugin_error", plugin=plugin, hook=where, errors=self.errors[plugin])

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call every implementation of a hook, each isolated: one that raises is logged and counted."""
        for impl in reversed(getattr(self.manager.hook, hook_name).get_hookimpls()):
            try:
                impl.function(*[kwargs[name] for name in impl.argnames])
            except Exception:
                self.record_error(impl.plugin_name, hook_name)

    def first(self, hook_name: str, **kwargs: Any) -> Any:
        """The first result that is not None of a ``firstresult`` hook whose failure is fatal (such as
        ``agentwatch_open_store``); an implementation that raises is a PluginError naming it."""
        for impl in reversed(getattr(self.manager.hook, hook_name).get_hookimpls()):
            try:
                result = impl.function(*[kwargs[name] for name in impl.argnames])
            except Exception as exc:
                self.record_error(impl.plugin_name, hook_name)
                raise PluginError(
                    f"plugin {impl.plugin_name!r} failed in {hook_name}: {exc!r}; fix or uninstall it, or add it to plugins.disable"
                ) from None
            if result is not None:
                return result
        return None

    def check_config(self, config: Config) -> None:
        """Ask every plugin whether it accepts ``config``; the first refusal raises PluginError."""
        for impl in reversed(self.manager.hook.agentwatch_check_config.get_hookimpls()):
            try:
                impl.function(config)
            except ValueError as exc:
                raise PluginError(f"plugin {impl.plugin_name!r} refuses the configuration: {exc}") from None
            except Exception as exc:
                self.record_error(impl.plugin_name, "agentwatch_check_config")
                raise PluginError(f"plugin {impl.plugin_name!r} failed checking the configuration: {exc!r}") from None

    def formats(self) -> dict[str, tuple[Format, str]]:
        """Every registered format by name, with the name of the plugin that registered it."""
        return self._collect("agentwatch_register_formats", "format", lambda fmt: (fmt.name, fmt))

    def watch_methods(self) -> dict[str, tuple[WatchMethod, str]]:
        """Every registered ``/v1/watch`` method by name, with its plugin's name."""
        return self._collect(
            "agentwatch_register_watch_methods", "watch method", lambda name, handler: (name, handler)
        )

    def topics(self) -> dict[str, tuple[Topic, str]]:
        """Every registered ``subscribe`` topic by name, with its plugin's name."""
        return self._collect("agentwatch_register_topics", "topic", lambda name, topic: (name, topic))

    def _collect(
        self, hook_name: str, what: str, entry: Callable[..., tuple[str, Any]]
    ) -> dict[str, tuple[Any, str]]:
        """Call a ``register_*`` hook; each registered thing's name must be unique."""
        found: dict[str, tuple[Any, str]] = {}
        for impl in reversed(getattr(self.manager.hook, hook_name).get_hookimpls()):

            def register(*args: Any, plugin: str = impl.plugin_name) -> None:
                name, thing = entry(*args)
                if name in found:
                    raise PluginError(f"{what} {name!r} is registered by both {found[name][1]!r} and {plugin!r}; disable one")
                found[name] = (thing, plugin)

            try:
                impl.function(register)
            except PluginError:
                raise
            except Exception:
                self.record_error(impl.plugin_name, hook_name)
        return found

"""Run a callback right after a module is imported, so probes can patch libraries imported after ``start()``.

A :class:`importlib.abc.MetaPathFinder` at the front of ``sys.meta_path`` lets the normal finders locate the
module, then wraps the loader's ``exec_module`` to call the callbacks once the module body has run. Only names
a probe asked for are touched, so every other import pays one function call. Callbacks never raise into the
importing code.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
from collections.abc import Callable
from types import ModuleType

log = logging.getLogger("loopprof")

Matcher = Callable[[str], bool]
Callback = Callable[[ModuleType], None]

_hooks: list[tuple[Matcher, Callback]] = []


def _notify(module: ModuleType) -> None:
    for matcher, callback in list(_hooks):
        try:
            if matcher(module.__name__):
                callback(module)
        except Exception:  # a probe must never break an import
            log.debug("loopprof: post-import callback failed for %s", module.__name__, exc_info=True)


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader) -> None:
        self._inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._inner.exec_module(module)
        _notify(module)

    def __getattr__(self, name: str) -> object:  # get_resource_reader, is_package, get_code ...
        return getattr(self._inner, name)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
        if not any(matcher(fullname) for matcher, _ in _hooks):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            try:
                spec = finder.find_spec(fullname, path, target)
            except Exception:
                continue
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


_finder = _Finder()


def when_imported(matcher: Matcher, callback: Callback) -> Callable[[], None]:
    """Call ``callback(module)`` for every loaded module matching now, and for each one imported later.

    Returns a function that removes the hook again (and the finder once no hook is left).
    """
    entry = (matcher, callback)
    _hooks.append(entry)
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
    for name, module in list(sys.modules.items()):
        if module is not None and matcher(name):
            try:
                callback(module)
            except Exception:
                log.debug("loopprof: callback failed for loaded module %s", name, exc_info=True)

    def remove() -> None:
        if entry in _hooks:
            _hooks.remove(entry)
        if not _hooks and _finder in sys.meta_path:
            sys.meta_path.remove(_finder)

    return remove


def installed() -> bool:
    """True while any hook is registered (tests check that ``stop()`` leaves none behind)."""
    return _finder in sys.meta_path

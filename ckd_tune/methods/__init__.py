"""Distillation methods as plug-ins: one module per method, registered by decorator.

Importing this package imports every module in it, so a new method is its own module here
(a :class:`Method` subclass with ``@register``), its YAML space and its test: nothing else
lists methods. See :mod:`ckd_tune.methods.base` for the interface.
"""

from __future__ import annotations

import importlib
import pkgutil

from ckd_tune.methods.base import (
    METHODS,
    Method,
    MethodParams,
    Term,
    get_method,
    register,
    total,
)

__all__ = ["METHODS", "Method", "MethodParams", "Term", "get_method", "register", "total"]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

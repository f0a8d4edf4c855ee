"""Save a component as ``config.yaml`` + ``model.safetensors`` and rebuild it from that directory.

``config.yaml`` is the same ``class_path`` / ``init_args`` form LightningCLI reads, so a trained component can be
pasted into a training config. Loading imports only classes that subclass the expected interface, and weights are
read with safetensors (nothing is unpickled).
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any, TypeVar

import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = ["ConfigCapture", "component_config", "build_component", "save_pretrained", "load_pretrained"]

CONFIG_NAME = "config.yaml"
WEIGHTS_NAME = "model.safetensors"
T = TypeVar("T", bound=nn.Module)


class ConfigCapture:
    """Mixin that records the arguments a module was built with (in ``_init_args``), for :func:`save_pretrained`."""

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        try:
            bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)
            bound.apply_defaults()
            init_args = dict(list(bound.arguments.items())[1:])
        except TypeError:
            init_args = dict(kwargs)
        object.__setattr__(obj, "_init_args", init_args)
        return obj


def _to_plain(value: Any) -> Any:
    if isinstance(value, nn.Module):
        return component_config(value)
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    return value


def component_config(module: nn.Module) -> dict:
    """``{"class_path": ..., "init_args": {...}}`` of a module built with :class:`ConfigCapture`."""
    if not hasattr(module, "_init_args"):
        raise TypeError(f"{type(module).__name__} does not record its init arguments (inherit ConfigCapture)")
    cls = type(module)
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": _to_plain(module._init_args)}


def _import_class(class_path: str) -> type:
    module_name, _, name = class_path.rpartition(".")
    if not module_name.startswith("moss_components."):
        raise ValueError(f"refusing to import {class_path!r}: only moss_components classes can be loaded")
    return getattr(importlib.import_module(module_name), name)


def build_component(config: dict, base: type | None = None) -> nn.Module:
    """Instantiate a ``class_path`` / ``init_args`` dict (nested dicts with a ``class_path`` are built first)."""
    if not isinstance(config, dict) or "class_path" not in config:
        raise ValueError(f"expected a dict with 'class_path' and 'init_args', got {config!r}")
    cls = _import_class(config["class_path"])
    if base is not None and not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(f"{config['class_path']} is not a {base.__name__}")

    def build(v):
        if isinstance(v, dict) and "class_path" in v:
            return build_component(v)
        if isinstance(v, list):
            return [build(x) for x in v]
        return v

    return cls(**{k: build(v) for k, v in (config.get("init_args") or {}).items()})


def save_pretrained(module: nn.Module, path: str | Path, extra: dict | None = None) -> Path:
    """Write ``path/config.yaml`` and ``path/model.safetensors``; returns ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = component_config(module)
    if extra:
        cfg["extra"] = extra
    (path / CONFIG_NAME).write_text(yaml.safe_dump(cfg, sort_keys=False))
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    save_file(state, str(path / WEIGHTS_NAME))
    return path


def load_pretrained(path: str | Path, base: type[T] = nn.Module, map_location: str = "cpu") -> T:
    """Rebuild a component saved by :func:`save_pretrained`; ``base`` is the interface it must implement."""
    path = Path(path)
    cfg_file = path / CONFIG_NAME
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{path}: no {CONFIG_NAME} (expected a directory written by save_pretrained)")
    cfg = yaml.safe_load(cfg_file.read_text())
    module = build_component(cfg, base)
    weights = path / WEIGHTS_NAME
    if weights.is_file():
        state = load_file(str(weights), device=map_location)
        missing, unexpected = module.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if not k.startswith("_")]:
            raise RuntimeError(
                f"{weights}: weights do not match the config: missing {missing}, unexpected {unexpected}"
            )
    module.eval()
    return module


def _device_of(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")

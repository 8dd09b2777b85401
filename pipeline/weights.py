"""Module weights as safetensors: tensors plus the constructor arguments, no pickle.

A loadable class is registered with `@loadable`; its constructor arguments (JSON values only)
are recorded when it is built and written into the file's metadata. Loading looks the class up
in the registry by name, builds it from those arguments and loads the state dict strictly, so a
weights file can only ever produce one of our own modules.
"""

from __future__ import annotations

import enum
import functools
import importlib
import inspect
import json
from pathlib import Path

import torch
from pydantic import BaseModel
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from pipeline.errors import UserError

_REGISTRY: dict[str, type[nn.Module]] = {}
_CLASS, _ARGS = "ecomrl.class", "ecomrl.init_args"
# The modules defining loadable classes, imported before a load so that their classes are
# registered whatever the caller imported. A fixed list: nothing else can ever be built.
_DEFINING_MODULES = (
    "pipeline.simulator.networks",
    "pipeline.simulator.gmm",
    "pipeline.rerank.generator",
    "pipeline.rerank.evaluator",
)


def loadable(cls: type[nn.Module]) -> type[nn.Module]:
    """Register `cls` and record its constructor arguments on every instance (`init_args`)."""
    init = cls.__init__
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapped(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        self.init_args = {k: v for k, v in bound.arguments.items() if k != "self"}
        init(self, *args, **kwargs)

    cls.__init__ = wrapped
    _REGISTRY[cls.__name__] = cls
    return cls


def save_module(module: nn.Module, path: Path) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    meta = {_CLASS: type(module).__name__, _ARGS: json.dumps(module.init_args, default=_json)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=meta)


def _json(value):
    """Typed configs and enums among constructor arguments, as JSON (constructors take them
    back from plain values)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"constructor argument {value!r} is not JSON")


def _tuples(value):
    """JSON lists back to the tuples the constructors were given."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def load_module(path: Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a registered module from `path`; any problem is a `UserError` naming the file."""
    for module_name in _DEFINING_MODULES:
        importlib.import_module(module_name)
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            meta = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path}: corrupt or unreadable weights file ({exc})") from exc
    name = meta.get(_CLASS)
    if name not in _REGISTRY:
        raise UserError(f"{path}: weights of unknown class {name!r}")
    try:
        module = _REGISTRY[name](**_tuples(json.loads(meta.get(_ARGS, "{}"))))
        module.load_state_dict(state, strict=True)
    except (TypeError, RuntimeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: weights do not fit {name} ({exc})") from exc
    return module.to(device).eval()

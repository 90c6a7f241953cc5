"""The model registry: builders register under a name, `create_model` builds one by name.

The shape of timm's `_registry.py` and torchvision's `models/_api.py`: a decorator files a plain,
keyword-only builder function under its name and refuses a name that is taken; `create_model`
fills in the registry's defaults, checks the arguments, calls the builder and notes on the model
how it was made, so a checkpoint can rebuild it with `create_model(name, **model_args)`.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cnnlab.errors import ModelError, first_line
from cnnlab.models.args import COMMON_ARGS
from cnnlab.models.catalog import name_matches
from cnnlab.models.init import check_init
from cnnlab.models.shapes import InputTooSmallError


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one model: its builder and the input it is made for."""

    name: str
    builder: Callable[..., nn.Module]
    input_shape: tuple[int, int, int]  # default input (C, H, W)
    num_classes: int  # default number of classes
    description: str  # one line, for `cnnlab models`
    seed: str  # the seed document it comes from, "000".."004", "torchvision"; "" if none
    # parameters of the default model when known without building it (torchvision's metadata)
    parameters: int | None = None


_MODELS: dict[str, ModelInfo] = {}
# your own models (own.py), filed under FILE.py:Name or module:Name: what each name was built
# from, and which were given as objects from Python (never imported again in this process)
_TARGETS: dict[str, Callable[..., nn.Module]] = {}
_GIVEN: set[str] = set()
# The families of built-in models: each registers its builders when imported. The seed ones cost
# nothing. The torchvision one imports torchvision (1-2 s, more from a cold disk) to register
# its builders (80), so it is imported only when a question needs it: a tv_ name, the list of all
# models, or a name nobody knows (its "did you mean" may be a tv_ one). Building or training a
# seed model never pays for torchvision.
SEED_FAMILIES = ("cifar", "cifar2", "fast", "lenet", "mnist")
TORCHVISION_FAMILY = "torchvision_models"


PLUGIN_GROUP = "cnnlab.models"  # entry points of installed packages that register models
_plugins_loaded = False
_BROKEN_PLUGINS: list[str] = []  # said when a name is not found: it may be one of theirs


def _register_builtin_models(*, torchvision: bool) -> None:
    families = (*SEED_FAMILIES, TORCHVISION_FAMILY) if torchvision else SEED_FAMILIES
    for family in families:  # imported once; later calls are dictionary look-ups
        importlib.import_module(f"cnnlab.models.{family}")
    if torchvision:  # asked for everything: the installed packages' models too
        _load_plugins()


def _load_plugins() -> None:
    """Import the modules that installed packages name under the `cnnlab.models` entry point
    group (`[project.entry-points."cnnlab.models"] mine = "mypackage.models"`), whose
    @register_model builders then file themselves, as pytest finds its plugins."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for entry in entry_points(group=PLUGIN_GROUP):
        try:
            entry.load()
        except Exception as err:  # a broken plugin must not hide every other model
            _BROKEN_PLUGINS.append(
                f"{entry.name} ({entry.value}) failed to load: {type(err).__name__}: "
                f"{first_line(err, 120)}"
            )


def register_object(target: Callable[..., nn.Module]) -> str:
    """File an nn.Module class or a builder function given from Python under its import name
    (own.object_spec) and return that name, which a run records to build it again."""
    from cnnlab.models import own

    if not callable(target):
        raise ModelError(
            f"model must be a name, an nn.Module, an nn.Module class or a function returning "
            f"one, got {type(target).__name__}"
        )
    own.check_builds_a_model(target, getattr(target, "__qualname__", repr(target)))
    key = own.canonical_model_name(own.object_spec(target))
    _MODELS[key], _TARGETS[key] = _own_info(key, target), target
    _GIVEN.add(key)
    return key


def _own_info(key: str, target: Callable[..., nn.Module]) -> ModelInfo:
    from cnnlab.models import own

    input_shape, classes = own.default_input(target)
    builder = own.builder_for(target, key.rpartition(":")[2])
    return ModelInfo(key, builder, input_shape, classes, own.description_of(target, key), "")


def register_model(
    *,
    input_shape: tuple[int, int, int],
    num_classes: int,
    description: str = "",
    seed: str = "",
    name: str | None = None,
    parameters: int | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: file a builder under `name` (default: the function's name); names are unique.

    A builder takes the keyword arguments `num_classes`, `in_channels`, `image_size` ((H, W))
    and `init`, plus its own, and returns an nn.Module; `input_shape` and `num_classes` are
    what it builds when nothing says otherwise. `description`: one line for `cnnlab models`
    (default: the docstring's first line). `seed`: the tutorial it comes from ("000".."004",
    "torchvision"), empty for your own. `parameters`: the default model's count, if known
    without building it.

        @cnnlab.register_model(input_shape=(1, 28, 28), num_classes=10)
        def small_net(*, num_classes, in_channels, image_size, init="default", width=32): ...
    """

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or builder.__name__
        if key in _MODELS:
            raise ModelError(
                f"a model named {key!r} is already registered by "
                f"{_MODELS[key].builder.__module__}; register this one under another name"
            )
        if ":" in key:
            raise ModelError(f"a model name has no colon, got {key!r} (FILE.py:Name is a file's)")
        text = description or (inspect.getdoc(builder) or "").strip().partition("\n")[0]
        _MODELS[key] = ModelInfo(
            key, builder, tuple(input_shape), num_classes, text, seed, parameters
        )
        return builder

    return decorator


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style `pattern` ("net*", "tv_*"), sorted."""
    _register_builtin_models(torchvision=True)
    # FILE.py:Name and module:Name entries are your own models' code, filed on first use
    return sorted(name for name in _MODELS if ":" not in name and name_matches(name, pattern))


def model_info(name: str) -> ModelInfo:
    """The registry entry of `name`; a ModelError naming close matches if there is none."""
    if not isinstance(name, str):
        raise ModelError(
            f"a model name is a string, got {name!r}; run `cnnlab models` to list them"
        )
    if ":" in name:  # your own: FILE.py:Name or package.module:Name
        return _spec_info(name)
    _register_builtin_models(torchvision=False)
    if name not in _MODELS:  # a tv_ name, or one whose close matches may be tv_ ones
        _register_builtin_models(torchvision=True)
    if name in _MODELS:
        return _MODELS[name]
    query = name.lower()
    # "resnet" → tv_resnet18 by containment, shortest names first; "lenett", "LeNet" → lenet by
    # similarity
    contain = [known for known in _MODELS if query and query in known]
    close = sorted(contain, key=lambda known: (len(known), known))[:3]
    close = close or difflib.get_close_matches(query, sorted(_MODELS), n=3, cutoff=0.7)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    broken = f" (a plugin {_BROKEN_PLUGINS[0]})" if _BROKEN_PLUGINS else ""
    raise ModelError(f"unknown model {name!r}; {hint}run `cnnlab models` to list them{broken}")


def _spec_info(name: str) -> ModelInfo:
    """The entry of FILE.py:Name or package.module:Name, imported on first use."""
    from cnnlab.models import own

    spec = own.parse_model_spec(name)
    assert spec is not None
    key = spec.text
    if key in _GIVEN:  # given from Python in this process: never imported again
        return _MODELS[key]
    if spec.module == "__main__":
        raise ModelError(
            f"{name} was defined in a notebook or an interactive session, which alone can "
            "build it; there, give the class again (cnnlab.train(model=...)), or put it in "
            "a file and use --model FILE.py:Name"
        )
    target = own.resolve(spec)  # a file is imported again only when its content changed
    if key not in _MODELS or _TARGETS.get(key) is not target:
        _MODELS[key], _TARGETS[key] = _own_info(key, target), target
    return _MODELS[key]


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
    image_size: int | tuple[int, int] | None = None,
    init: str = "default",
    **kwargs: Any,
) -> nn.Module:
    """Build the model registered as `name`; None takes the registry's default for that model.

    `image_size` is an int (square) or (H, W); `init` is "default", "xavier" or "kaiming";
    `kwargs` are the model's own arguments (`n_chans1=32`, `pretrained=True`). The model keeps
    `model.model_name` and `model.model_args` (every builder argument, defaults included), and
    `create_model(model.model_name, **model.model_args)` builds the same architecture again.
    """
    info = model_info(name)
    _check_own_kwargs(info, kwargs)
    check_init(init)
    channels, height, width = info.input_shape
    args = {
        "num_classes": check_int(
            "num_classes", info.num_classes if num_classes is None else num_classes
        ),
        "in_channels": check_int("in_channels", channels if in_channels is None else in_channels),
        "image_size": _image_size((height, width) if image_size is None else image_size),
        "init": init,
        **kwargs,
    }
    model = info.builder(**args)
    bound = inspect.signature(info.builder).bind(**args)
    bound.apply_defaults()
    model.model_name = info.name
    model.model_args = _flat(bound)
    return model


def _flat(bound: inspect.BoundArguments) -> dict[str, Any]:
    """Bound arguments as keywords again: a builder's **kwargs spread among the named ones."""
    arguments = dict(bound.arguments)
    for param in bound.signature.parameters.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            arguments.update(arguments.pop(param.name, {}))
    return arguments


def min_input_size(name: str, **kwargs: Any) -> int:
    """The smallest side s such that model `name` (with these arguments) takes s×s images."""
    kwargs.pop("image_size", None)
    for weights in ("pretrained", "weights_file"):  # weights do not change the sizes it takes
        kwargs.pop(weights, None)
    with torch.device("meta"):  # builds without allocating or initialising any weights
        try:
            create_model(name, image_size=1, **kwargs)
        except InputTooSmallError as err:
            return err.min_size
    return 1


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """The number of parameters of `model`; one shared by several layers counts once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def check_int(what: str, value: Any, minimum: int = 1) -> int:
    """`value` if it is an int >= `minimum`, else a ModelError naming `what`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ModelError(f"{what} must be an integer of at least {minimum}, got {value!r}")
    return value


def check_widths(widths: Any, example: str, count: int | None = None) -> tuple[int, ...]:
    """`widths` as a tuple of channel counts (a list, as a TOML `--model-arg widths=[...]`
    gives it), else a ModelError showing `example`; `count`: how many it must have."""
    if not isinstance(widths, (tuple, list)) or not widths:
        raise ModelError(f"widths must be a list of channel counts, like {example}, got {widths!r}")
    if count is not None and len(widths) != count:
        raise ModelError(
            f"widths takes {count} numbers, one per stage, like {example}, got {len(widths)}"
        )
    return tuple(check_int("widths", width) for width in widths)


def _image_size(value: Any) -> tuple[int, int]:
    """An int, or an (H, W) tuple or list (as a JSON checkpoint gives it back), as (H, W)."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        height, width = value
        return check_int("image_size", height), check_int("image_size", width)
    if isinstance(value, int) and not isinstance(value, bool):
        side = check_int("image_size", value)
        return side, side
    raise ModelError(f"image_size must be an int or (height, width), got {value!r}")


def _check_own_kwargs(info: ModelInfo, kwargs: dict[str, Any]) -> None:
    """A ModelError listing what the builder accepts, rather than a TypeError from the call."""
    params = inspect.signature(info.builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return  # it takes any keyword
    own = [p for p in params if p not in COMMON_ARGS]
    unknown = [key for key in kwargs if key not in own]
    if unknown:
        accepted = ", ".join([*COMMON_ARGS, *own])
        raise ModelError(f"{info.name} does not take {', '.join(unknown)}; it takes {accepted}")

"""Your own model: `--model path/to/my_net.py:MyNet`, `--model package.module:MyNet`, or the
class, function or module itself given to `cnnlab.train(model=...)`.

A model is named the way uvicorn and gunicorn name an app: where its code is, a colon, and a
class or a function that returns an nn.Module. The registry (registry.py) files it under that
name like any built-in, so building, checkpoints, evaluation, export and the report treat it the
same way. A run records where the code was (the file's absolute path and SHA-256, or the
module) in `model_source`, and rebuilding its model checks that the code is still there and
still the same: one line says which file it needs when it is not.

Only an nn.Module class, or a function annotated `-> nn.Module` (or a subclass), is called: a
checkpoint names the code that rebuilds its model, with the arguments, and opening a run folder
must not call whatever it names. Importing the file or module does run its top-level code, as
any import does: open runs you trust, as with any code.

The model gets the data's facts as keyword arguments when its signature names them
(`num_classes`, `in_channels`, `image_size`: an int for square images, else (H, W)), plus the
run's `--model-arg`s; `init` is cnnlab's (--init), applied to what it returns.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import inspect
import site
import sys
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import ModelError, first_line
from cnnlab.files import sha256_of
from cnnlab.models.args import COMMON_ARGS, architecture_args
from cnnlab.models.init import init_weights

SPEC_FORMS = "path/to/file.py:Name or package.module:Name"
DEFAULT_INPUT = (3, 32, 32)  # what `cnnlab summary FILE.py:Name` feeds a model that names none
DEFAULT_CLASSES = 10
# module objects given to cnnlab.train in this process whose class alone does not rebuild them
# (check_recorded): by the token their run records
_INSTANCES: dict[str, nn.Module] = {}


@dataclass(frozen=True)
class ModelSpec:
    """A model named by where its code is: a .py file (absolute) or a module, and a name in it."""

    file: Path | None
    module: str | None
    attr: str

    @property
    def text(self) -> str:
        """The canonical name: what config.json and every checkpoint record."""
        return f"{self.file or self.module}:{self.attr}"

    @property
    def where(self) -> str:
        return str(self.file) if self.file else f"module {self.module}"


def parse_model_spec(name: str) -> ModelSpec | None:
    """`FILE.py:Name` or `package.module:Name` read (a file's path made absolute); None for a
    registry name (no colon)."""
    target, colon, attr = name.rpartition(":")
    if not colon:
        return None
    if not target or not attr.replace(".", "_").isidentifier():
        raise ModelError(f"--model {name!r} names no class or function; give {SPEC_FORMS}")
    if target.endswith(".py"):
        return ModelSpec(Path(target).expanduser().resolve(), None, attr)
    if not all(part.isidentifier() for part in target.split(".")):
        raise ModelError(
            f"--model {name!r}: {target!r} is neither a .py file nor a module; give {SPEC_FORMS}"
        )
    return ModelSpec(None, target, attr)


def canonical_model_name(name: str) -> str:
    """A file spec with its absolute path (so a run rebuilds from any folder); other names as
    they are."""
    spec = parse_model_spec(name)
    return spec.text if spec else name


def model_source(name: str) -> dict[str, Any] | None:
    """What a run records about where its model's code is: the file and its SHA-256, or the
    module; None for a built-in or registered model."""
    spec = parse_model_spec(name)
    if spec is None:
        return None
    if spec.file is not None:
        return {"file": str(spec.file), "sha256": file_sha256(spec.file)}
    return {"module": spec.module}


def build_recorded(
    name: str, model_args: dict[str, Any], source: dict[str, Any] | None, run: str | Path
) -> nn.Module:
    """The architecture a saved run (a checkpoint or a model card) records, to load its
    weights into: from the registry, from your own code once `check_recorded` has seen that it
    is the code the run trained with, or a copy of the module object given in this process."""
    from cnnlab.models.registry import create_model

    check_recorded(name, source, run)
    if source and source.get("hidden_args"):
        return copy.deepcopy(_INSTANCES[source["instance"]])
    return create_model(name, **architecture_args(model_args))


def check_recorded(name: str, source: dict[str, Any] | None, run: str | Path) -> None:
    """A saved run names the code that builds its model; before anything of it is imported:
    the name must be one cnnlab wrote (an absolute path, the source recorded with it), and the
    code must be where it was, and the same. One line naming the file otherwise."""
    spec = parse_model_spec(name)
    if spec is None:
        return  # a registered name
    recorded = source or {}
    written_by_cnnlab = spec.text == name and (
        recorded.get("file") == str(spec.file) and "sha256" in recorded
        if spec.file
        else recorded.get("module") == spec.module
    )
    if not written_by_cnnlab:
        raise ModelError(
            f"{run} names its model {name} without the source cnnlab records with it; it was "
            "not saved by cnnlab or is damaged, so its code is not run"
        )
    if recorded.get("hidden_args"):
        if recorded.get("instance") in _INSTANCES:
            return
        raise ModelError(
            f"{run}: its model was given to cnnlab.train as an object, {recorded['hidden_args']}, "
            "whose arguments cnnlab cannot see to build it again; train with the class and its "
            "arguments (cnnlab.train(model=MyNet, model_args={...}) or --model FILE.py:MyNet "
            "--model-arg k=v) to rebuild it outside that session"
        )
    if spec.file is None:
        return
    if not spec.file.is_file():
        raise ModelError(
            f"{run} needs its model's code, {spec.file}, which is not there any more; put the "
            f"file back at that path (sha256 {recorded['sha256'][:12]}…) to rebuild {name}"
        )
    digest = file_sha256(spec.file)
    if digest != recorded["sha256"]:
        raise ModelError(
            f"{run} needs {spec.file} as it was when the run trained (sha256 "
            f"{recorded['sha256'][:12]}…), but the file has changed since (sha256 "
            f"{digest[:12]}…); restore that version"
        )


def keep_instance(module: nn.Module) -> str:
    """Keep a module object given in Python for this process's rebuilds of its run; the token
    its run records (another process cannot rebuild it: check_recorded says so)."""
    token = uuid.uuid4().hex
    _INSTANCES[token] = module
    return token


def file_sha256(path: Path) -> str:
    try:
        return sha256_of(path)
    except OSError as err:
        raise ModelError(f"cannot read the model file {path}: {err.strerror}") from None


def resolve(spec: ModelSpec) -> Callable[..., Any]:
    """The class or function `spec` names, imported (a file once per content)."""
    if spec.file is not None and _installed(spec.file):
        raise ModelError(
            f"{spec.file} is part of the Python installation; name an installed model by its "
            "module, package.module:Name"
        )
    module = _import_file(spec.file) if spec.file else _import_module(spec.module or "")
    target: Any = module
    for part in spec.attr.split("."):  # Outer.Inner works too
        if not hasattr(target, part):
            found = ", ".join(_model_like(module)) or "none"
            raise ModelError(
                f"{spec.where} has no {spec.attr}; the classes and functions it defines: {found}"
            )
        target = getattr(target, part)
    defined = inspect.isclass(target) or inspect.isfunction(target)
    if defined and target.__module__ != module.__name__:
        raise ModelError(
            f"{spec.text} is defined in {target.__module__}, not in "
            f"{spec.where}; name it where it is defined"
        )
    check_builds_a_model(target, spec.text)
    return target


def check_builds_a_model(target: Any, name: str) -> None:
    """What cnnlab calls to build a model: an nn.Module class, or a function of your own (not
    of an installed package) whose return annotation is one. A checkpoint names the code that
    rebuilds its model, with its arguments: were any callable allowed, opening a run folder
    could call `os:system`, or a function of torch's that runs the text it is given."""
    if inspect.isclass(target) and issubclass(target, nn.Module):
        return
    if not inspect.isfunction(target):
        raise ModelError(
            f"{name} is {type(target).__name__}, not an nn.Module class or a function that "
            "returns one"
        )
    try:
        returns = typing.get_type_hints(target).get("return")
    except Exception:  # an annotation that does not resolve says nothing
        returns = None
    if not (inspect.isclass(returns) and issubclass(returns, nn.Module)):
        raise ModelError(
            f"{name} is a function that does not say it returns an nn.Module; annotate it "
            f"(def {target.__name__}(...) -> nn.Module:), as cnnlab calls only functions that "
            "say they build a model (a checkpoint names the code that rebuilds it)"
        )
    code_file = inspect.getsourcefile(target)
    if code_file is None or _installed(Path(code_file)):
        raise ModelError(
            f"{name} is a function of an installed package; cnnlab calls functions of your own "
            "code only (a checkpoint names what rebuilds it): name the nn.Module class it builds"
        )


def _installed(path: Path) -> bool:
    """Whether `path` is in the Python installation (the standard library, site-packages):
    code there is not your own model's."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    roots.update([*site.getsitepackages(), site.getusersitepackages()])
    resolved = path.resolve()
    return any(resolved.is_relative_to(Path(root).resolve()) for root in roots if root)


def object_spec(target: Callable[..., Any]) -> str:
    """The name an nn.Module class or a builder function given from Python is filed under:
    `package.module:Name`, its file's path for a script's own (__main__) classes, or
    `__main__:Name` for one defined in a notebook, which only that session can rebuild."""
    module = inspect.getmodule(target)
    qualname = target.__qualname__
    if "<locals>" in qualname:
        return f"{target.__module__}:{qualname.replace('<locals>.', '')}"
    if module is None or module.__name__ == "__main__":
        file = getattr(module, "__file__", None)
        return f"{Path(file).resolve()}:{qualname}" if file else f"__main__:{qualname}"
    return f"{module.__name__}:{qualname}"


def builder_for(target: Callable[..., Any], name: str) -> Callable[..., nn.Module]:
    """A registry builder around the user's class or function: keyword-only COMMON_ARGS plus
    its own arguments (its signature says which), so the registry checks and records them as it
    does a built-in's."""
    params = inspect.signature(target).parameters
    own = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in params.values()
        if p.name not in COMMON_ARGS
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    extra = [p for p in params.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
    common = [
        inspect.Parameter(arg, inspect.Parameter.KEYWORD_ONLY, default=default)
        for arg, default in zip(COMMON_ARGS, (None, None, None, "default"), strict=True)
    ]

    def build(*, num_classes, in_channels, image_size, init="default", **kwargs) -> nn.Module:
        facts = {"num_classes": num_classes, "in_channels": in_channels,
                 "image_size": _side_or_pair(image_size)}  # fmt: skip
        given = {key: value for key, value in facts.items() if key in params}
        try:
            model = target(**given, **kwargs)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ModelError(
                f"{name}({_call_text(given, kwargs)}) failed: {first_line(err)}"
            ) from None
        if not isinstance(model, nn.Module):
            raise ModelError(f"{name} returned {type(model).__name__}, not an nn.Module")
        return init_weights(model, init)

    build.__signature__ = inspect.Signature([*common, *own, *extra])  # type: ignore[attr-defined]
    build.__name__ = getattr(target, "__name__", name)
    build.__module__ = getattr(target, "__module__", None) or __name__
    return build


def default_input(target: Callable[..., Any]) -> tuple[tuple[int, int, int], int]:
    """((C, H, W), classes) a model is built for when no data says: its own defaults for
    in_channels, image_size and num_classes where its signature has them."""
    params = inspect.signature(target).parameters

    def default(arg: str, fallback: Any) -> Any:
        value = params[arg].default if arg in params else inspect.Parameter.empty
        return fallback if value is inspect.Parameter.empty or value is None else value

    channels = default("in_channels", DEFAULT_INPUT[0])
    size = default("image_size", DEFAULT_INPUT[1:])
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return (channels, height, width), default("num_classes", DEFAULT_CLASSES)


def description_of(target: Callable[..., Any], spec: str) -> str:
    # its own docstring: inspect.getdoc would hand a class without one nn.Module's
    doc = inspect.cleandoc(target.__doc__ or "")
    line = doc.strip().splitlines()[0] if doc.strip() else ""
    return line or f"your own model, {spec}"


@torch.no_grad()
def check_output(model: nn.Module, name: str, input_shape, num_classes: int, device) -> None:
    """Refuse, before training, a model whose output does not fit the data: one line naming
    the shapes. Runs one batch of two blank images in eval mode (no batch-norm statistics,
    dropout or random numbers touched), then puts the mode back."""
    batch = torch.zeros((2, *input_shape), device=device)
    shape = "×".join(map(str, batch.shape))
    was_training = model.training
    model.eval()
    try:
        output = model(batch)
    except Exception as err:  # whatever the user's forward raises, said in one line
        raise ModelError(
            f"{name} cannot take this data's images: a batch of shape {shape} gave "
            f"{type(err).__name__}: {first_line(err, 160)}; check its input channels "
            f"({input_shape[0]}) and image size ({input_shape[1]}×{input_shape[2]})"
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(output, torch.Tensor):
        raise ModelError(
            f"{name} returned {type(output).__name__} for a batch of shape {shape}; it must "
            f"return one tensor of logits, (2, {num_classes})"
        )
    if output.ndim != 2 or output.shape[0] != 2:
        raise ModelError(
            f"{name} turned a batch of shape {shape} into {tuple(output.shape)}, not (N, K) "
            f"logits (2, {num_classes}); flatten the features before the last Linear layer"
        )
    if output.shape[1] != num_classes:
        raise ModelError(
            f"{name} gives {output.shape[1]} outputs per image but the data has {num_classes} "
            f"classes; make its last layer output {num_classes} (cnnlab passes num_classes "
            "to a model that takes it)"
        )


def _import_file(path: Path | None) -> Any:
    """Import a .py file as a module of its own (its folder on sys.path while it loads, so it
    can import the files beside it), once per content."""
    assert path is not None
    digest = file_sha256(path) if path.is_file() else ""
    if not digest:
        raise ModelError(f"model file {path} does not exist; give --model {SPEC_FORMS}")
    module_name = f"cnnlab_own_{path.stem}_{digest[:12]}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise ModelError(f"{path} cannot be imported as Python; give --model {SPEC_FORMS}")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module  # dataclasses and pickling look a class's module up
    sys.path.insert(0, str(path.parent))
    try:
        loader_spec.loader.exec_module(module)
    except Exception as err:  # the user's code: any error it raises, in one line
        del sys.modules[module_name]
        raise ModelError(
            f"importing {path} failed: {type(err).__name__}: {first_line(err, 160)}"
        ) from None
    finally:
        sys.path.remove(str(path.parent))
    return module


def _import_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except Exception as err:  # ImportError, or whatever the module raises as it loads
        raise ModelError(
            f"cannot import module {name} ({type(err).__name__}: {first_line(err, 120)}); "
            f"install it, or give the file: --model path/to/file.py:Name"
        ) from None


def _model_like(module: Any) -> list[str]:
    """The names a module defines that could be models: nn.Module classes and functions."""
    names = []
    for key, value in vars(module).items():
        if key.startswith("_") or getattr(value, "__module__", None) != module.__name__:
            continue
        if (inspect.isclass(value) and issubclass(value, nn.Module)) or inspect.isfunction(value):
            names.append(key)
    return names


def _side_or_pair(image_size: Any) -> Any:
    """(H, W) as the registry keeps it; a square's side as an int, the way models take it."""
    if isinstance(image_size, (tuple, list)) and len(image_size) == 2:
        height, width = image_size
        return height if height == width else (height, width)
    return image_size


def _call_text(given: dict[str, Any], kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in {**given, **kwargs}.items())

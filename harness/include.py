"""Code outside the package: `--include PATH` and the grid key `include: [paths]`.

Like lm-evaluation-harness's `--include_path` and fairseq's `--user-dir`: a user's Python file or
folder is imported before anything is looked up, so that the tasks (`tasks.base.register_task`) and
reward strategies (`rewards.base.register_reward`) it registers can be named in grids and on the
command line. A path is
  - a `.py` file: imported as a module of its own;
  - a folder with `__init__.py`: imported as a package under the folder's name (its modules may
    import each other, absolutely or relatively), without touching `sys.path`;
  - any other folder: every `.py` file in it, in name order, each a module of its own (code they
    share belongs in a package: add an `__init__.py`).
Plain modules get private names (`_harness_include_<stem>_<path digest>`), so a user's `utils.py`
never shadows or is shadowed by an installed module.

Each file is imported at most once per process, however often it is named (directly, through its
folder, from the command line and the grid file): registering the same name twice would fail. The
pool's workers and Ray's tasks call `load` with the same resolved paths before their first run
(`harness.grid.scheduler`), so the registries there match the driver's.
"""
from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Iterable

from harness.config import ConfigError

# Every file or package folder imported in this process -> the module it became.
_IMPORTED: dict[Path, str] = {}


def load(paths: Iterable[str | Path], where: str = "--include") -> list[str]:
    """Imports every path not imported yet in this process; returns all of them resolved (absolute).

    `where` starts error messages (the option, or the grid file and key): a missing path, a folder
    without Python files or a module that fails to import is a `ConfigError` naming the path.
    """
    resolved = []
    for given in paths:
        path = Path(given).expanduser()
        if not path.exists():
            raise ConfigError(f"{where}: {given}: no such file or folder")
        path = path.resolve()
        if path.is_file() and path.suffix != ".py":
            raise ConfigError(f"{where}: {given}: not a Python file (.py) or a folder")
        if path.is_dir() and (path / "__init__.py").exists():
            _import_package(path, where)
        else:
            files = sorted(path.glob("*.py")) if path.is_dir() else [path]
            if not files:
                raise ConfigError(f"{where}: {given}: the folder holds no .py file")
            for file in files:
                _import_file(file, where)
        resolved.append(str(path))
    return resolved


def _import_file(file: Path, where: str) -> None:
    if file in _IMPORTED or _inside_imported_package(file):
        return
    digest = hashlib.sha256(str(file).encode()).hexdigest()[:8]
    name = f"_harness_include_{file.stem.replace('-', '_')}_{digest}"
    _execute(name, importlib.util.spec_from_file_location(name, file), file, where)


def _import_package(folder: Path, where: str) -> None:
    if folder in _IMPORTED or _inside_imported_package(folder):
        return
    name = folder.name
    taken = sys.modules.get(name)
    if taken is not None:
        raise ConfigError(f"{where}: {folder}: a package named {name!r} is already imported (from "
                          f"{getattr(taken, '__file__', None) or 'a built-in module'}); rename the folder")
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    _execute(name, spec, folder, where)


def _execute(name: str, spec: importlib.machinery.ModuleSpec | None, path: Path, where: str) -> None:
    """Runs the module, registered in sys.modules first (dataclasses and relative imports need it)."""
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 - any error in the user's code is reported with its place
        sys.modules.pop(name, None)
        raise ConfigError(f"{where}: {path}: importing it failed{_place(err, path)}: "
                          f"{type(err).__name__}: {err}") from err
    _IMPORTED[path] = name


def _place(err: Exception, path: Path) -> str:
    """`at FILE line N`: the innermost line of the included code that the error passed through."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if Path(f.filename).is_relative_to(path)]
    return f" at {frames[-1].filename} line {frames[-1].lineno}" if frames else ""


def _inside_imported_package(path: Path) -> bool:
    return any(path.is_relative_to(done) for done in _IMPORTED if done.is_dir())

"""Atomic file writes (a reader sees the old file or the new one, never part of one) and the
YAML dialect of recipes and model cards."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from seedzoo.errors import SeedzooError


@contextmanager
def atomic_write_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to. When the block succeeds the temporary
    file replaces ``path``; when it fails the temporary file is removed and ``path`` is left as
    it was. The name holds the process id, so concurrent writers never share a temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def exclusive_lock(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing) for the block; a
    :class:`SeedzooError` naming ``what`` when another process holds it. Released when the block
    ends or the process dies."""
    import fcntl  # POSIX only; imported where used so the rest of the module stays portable

    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise SeedzooError(f"{what} is in use by {holder}; wait for it to finish or stop it, "
                               "or choose another folder.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_output_path(path: str | os.PathLike, *, folder: bool = False) -> Path:
    """``path`` as a place a file (or with ``folder``, a folder) can be written, checked before
    any work: not an existing folder (file) in its way, and a writable folder above it."""
    path = Path(path)
    what = "folder" if folder else "file"
    if path.exists() and path.is_dir() != folder:
        raise SeedzooError(f"Cannot write the output {what} {path}: a "
                           f"{'file' if folder else 'folder'} of that name exists; choose "
                           "another path.")
    parent = next(p for p in [path.parent, *path.parent.parents] if p.exists())
    if not parent.is_dir():
        raise SeedzooError(f"Cannot write the output {what} {path}: {parent} is a file, not a "
                           "folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SeedzooError(f"Cannot write the output {what} {path}: {parent} is not writable; "
                           "choose another path.")
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; returns ``path``."""
    with atomic_write_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that ``1e-4`` is a float (as in YAML 1.2 and Python), not
    the string PyYAML's YAML 1.1 rules make of it."""


class _YamlDumper(yaml.SafeDumper):
    """PyYAML's safe dumper with the same rule, so that the string ``"1e-4"`` is quoted."""


for _yaml_class in (_YamlLoader, _YamlDumper):
    _yaml_class.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"))


def load_yaml(text: str):
    """Parse a recipe or ``--set`` value (see :class:`_YamlLoader`)."""
    return yaml.load(text, Loader=_YamlLoader)


def dump_yaml(data) -> str:
    """YAML text that :func:`load_yaml` reads back as ``data``, keys in their order."""
    return yaml.dump(data, Dumper=_YamlDumper, sort_keys=False)


def replace_marked_block(path: str | os.PathLike, name: str, content: str) -> None:
    """Replace what lies between ``<!-- name -->`` and ``<!-- /name -->`` in the text file
    ``path`` (a README's generated table) by ``content``."""
    path = Path(path)
    text = path.read_text()
    marker = re.escape(name)
    block = re.compile(rf"(<!-- {marker} -->\n).*?(<!-- /{marker} -->)", re.DOTALL)
    if not block.search(text):
        raise SeedzooError(f"{path} has no <!-- {name} --> ... <!-- /{name} --> block to fill; "
                           "add the two markers where the generated text belongs.")
    write_text_atomic(path, block.sub(lambda match: match[1] + content + match[2], text))

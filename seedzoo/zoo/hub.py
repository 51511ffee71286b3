"""Publish encoder folders to a Hugging Face Hub and fetch them back, online or from the cache.

The real client is ``huggingface_hub``; the endpoint is the public Hub unless ``endpoint=`` (or
``HF_ENDPOINT`` when the client was imported) names another server speaking its protocol.
Only ``config.json``, ``model.safetensors`` and ``README.md`` are uploaded or downloaded:
nothing pickled is ever read from a hub.

Offline use: ``HF_HUB_OFFLINE=1`` (read at call time, not only when ``huggingface_hub`` was
imported) or ``offline=True`` loads from the local cache without any request; with the network
down the cache is used as well. A model that is not cached ends in one error saying so.

Without a hub (no endpoint and token), :func:`publish` writes the folder into the local cache in
the Hub's own layout, so that ``seedzoo.load("hf-hub:org/name")`` and plain
``timm.create_model("hf-hub:org/name", pretrained=True)`` find it offline.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from seedzoo.errors import ModelNotFoundError, SeedzooError
from seedzoo.files import atomic_write_path, write_text_atomic
from seedzoo.zoo.layout import (
    CARD_NAME,
    CONFIG_NAME,
    HUB_FILES,
    WEIGHTS_NAME,
    encoder_folder,
)
from seedzoo.zoo.pretrained import load_pretrained_folder, read_config

HUB_PREFIX = "hf-hub:"
DEFAULT_BRANCH = "main"
_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")
_COMMIT_SHA = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class Publication:
    """Where a model was published: ``location`` is ``"hub"`` or ``"local cache"``."""

    repo_id: str
    revision: str
    location: str
    url: str

    @property
    def spec(self) -> str:
        """The pinned spec that loads exactly this publication."""
        return hub_spec(self.repo_id, self.revision)


def hub_spec(repo_id: str, revision: str | None = None) -> str:
    """``"hf-hub:org/name"``, with ``@revision`` when given: the spec :func:`parse_hub_id` reads."""
    return f"{HUB_PREFIX}{repo_id}" + (f"@{revision}" if revision else "")


def split_revision(hub_id: str) -> tuple[str, str | None]:
    """``"org/name@rev"`` -> ``("org/name", "rev")``; the revision is None without ``@rev``.
    Unchecked: :func:`parse_hub_id` also validates the name."""
    repo_id, _, revision = hub_id.partition("@")
    return repo_id, revision or None


def parse_hub_id(spec: str) -> tuple[str, str | None]:
    """``"hf-hub:org/name@rev"`` (prefix optional) -> ``("org/name", "rev")``; the name is
    checked against the Hub's naming rules (huggingface_hub's ``validate_repo_id``)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    body = spec.removeprefix(HUB_PREFIX)
    repo_id, revision = split_revision(body)
    usage = "use hf-hub:org/name or hf-hub:org/name@revision (a branch, tag or commit sha)."
    if not _REPO_ID.fullmatch(repo_id) or (revision is None and "@" in body):
        raise ModelNotFoundError(f"{spec!r} is not a hub id: {usage}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ModelNotFoundError(f"{spec!r} is not a hub id ({str(error).rstrip('.')}); "
                                 f"{usage}") from None
    return repo_id, revision


def publish_target(repo_id: str) -> str:
    """The ``org/name`` to publish ``repo_id`` (``hf-hub:`` prefix allowed) as; a revision in it
    is refused, since the branch is given separately."""
    bare, revision = parse_hub_id(repo_id)
    if revision is not None:
        raise SeedzooError(f"{repo_id!r} names a revision, but a publish target is org/name: "
                           f"publish to {bare} and give the branch with revision={revision!r} "
                           f"(CLI: --revision {revision}).")
    return bare


def offline_mode() -> bool:
    """Whether Hub requests are disabled: ``HF_HUB_OFFLINE`` as set now, or at client import."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return constants.HF_HUB_OFFLINE or flag in ("1", "ON", "YES", "TRUE")


def hub_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The Hugging Face cache folder in use (``HF_HUB_CACHE``)."""
    from huggingface_hub import constants

    return Path(cache_dir or constants.HF_HUB_CACHE)


def _checked_folder(folder_or_run) -> Path:
    """The encoder folder, after checking that its config and weights load together."""
    folder = encoder_folder(folder_or_run)
    load_pretrained_folder(folder)
    options = read_config(folder).get("seedzoo")
    if options and any(options.values()):
        warnings.warn(f"{folder} uses seedzoo architecture options {options} that timm cannot "
                      "rebuild: it will load with seedzoo.load but not with plain "
                      "timm.create_model.", stacklevel=3)
    return folder


def _network_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        import httpx2

        errors.append(httpx2.TransportError)
    except ImportError:
        pass
    try:
        import requests

        errors.append(requests.exceptions.ConnectionError)
    except ImportError:
        pass
    return tuple(errors)


def push(folder_or_run: str | os.PathLike, repo_id: str, *, endpoint: str | None = None,
         token: str | None = None, revision: str | None = None, private: bool = False,
         commit_message: str | None = None):
    """Upload an encoder folder to ``repo_id`` on a hub; returns huggingface_hub's ``CommitInfo``.

    The repo is created if needed (``private`` applies then) and so is the branch ``revision``.
    Only config, safetensors weights and model card are uploaded, after checking that they load.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    repo_id = publish_target(repo_id)
    folder = _checked_folder(folder_or_run)
    api = HfApi(endpoint=endpoint, token=token)
    where = api.endpoint
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision not in (None, DEFAULT_BRANCH):
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        message = commit_message or f"Upload {folder.name} with seedzoo"
        return api.upload_folder(repo_id=repo_id, folder_path=folder, revision=revision,
                                 allow_patterns=list(HUB_FILES), commit_message=message)
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status in (401, 403):
            raise SeedzooError(
                f"The hub at {where} refused to publish {repo_id} (HTTP {status}). Give a token "
                "with write access to that namespace: --token, HF_TOKEN or `hf auth login`.") \
                from None
        raise SeedzooError(f"The hub at {where} refused to publish {repo_id}: "
                           f"{str(error).splitlines()[0]}") from None
    except _network_errors() as error:
        raise SeedzooError(
            f"Cannot reach the hub at {where} ({type(error).__name__}: {error}). Check the "
            "endpoint and the network, or publish to the local cache instead (--to cache).") \
            from None


def _link_or_copy(blob: Path, link: Path) -> None:
    with atomic_write_path(link) as tmp:
        tmp.unlink(missing_ok=True)  # left by a killed writer: symlink_to cannot overwrite
        try:
            tmp.symlink_to(os.path.relpath(blob, link.parent))
        except OSError:  # file systems without symlinks: the cache holds a copy instead
            tmp.write_bytes(blob.read_bytes())


def publish_to_cache(folder_or_run: str | os.PathLike, repo_id: str, *,
                     cache_dir: str | os.PathLike | None = None,
                     revision: str = DEFAULT_BRANCH) -> Publication:
    """Write an encoder folder into the local Hugging Face cache as ``repo_id`` at ``revision``.

    The files go where ``huggingface_hub`` puts downloads (``blobs/``, ``snapshots/<commit>/``,
    ``refs/<revision>``), under a commit id derived from their contents, so that offline loads
    by hub id find them. Nothing leaves the machine.
    """
    from huggingface_hub.file_download import repo_folder_name

    repo_id = publish_target(repo_id)
    folder = _checked_folder(folder_or_run)
    storage = hub_cache_dir(cache_dir) / repo_folder_name(repo_id=repo_id, repo_type="model")
    files = {name: (folder / name).read_bytes() for name in HUB_FILES if (folder / name).is_file()}
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    commit = hashlib.sha1("".join(f"{n}:{d}\n" for n, d in sorted(digests.items()))
                          .encode()).hexdigest()
    snapshot = storage / "snapshots" / commit
    for sub in (storage / "blobs", snapshot, storage / "refs"):
        sub.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = storage / "blobs" / digests[name]
        if not blob.is_file() or blob.stat().st_size != len(data):
            with atomic_write_path(blob) as tmp:
                tmp.write_bytes(data)
        _link_or_copy(blob, snapshot / name)
    write_text_atomic(storage / "refs" / revision, commit)
    return Publication(repo_id, commit, "local cache", str(snapshot))


def publish(folder_or_run: str | os.PathLike, repo_id: str, *, endpoint: str | None = None,
            token: str | None = None, revision: str | None = None, private: bool = False,
            commit_message: str | None = None,
            cache_dir: str | os.PathLike | None = None) -> Publication:
    """Publish to the hub at ``endpoint`` when both ``endpoint`` and ``token`` are given,
    otherwise to the local cache; the returned :class:`Publication` says which."""
    repo_id = publish_target(repo_id)
    if endpoint and token:
        info = push(folder_or_run, repo_id, endpoint=endpoint, token=token, revision=revision,
                    private=private, commit_message=commit_message)
        return Publication(repo_id, info.oid, "hub", info.commit_url)
    return publish_to_cache(folder_or_run, repo_id, cache_dir=cache_dir,
                            revision=revision or DEFAULT_BRANCH)


def _not_cached_message(spec: str, cache: Path, reason: str, offline: bool) -> str:
    return (f"{spec} is not in the local Hugging Face cache ({cache}) and {reason}. To get it, "
            f"run `seedzoo pull {spec}` where the hub is reachable (pass --endpoint for a hub "
            "other than huggingface.co) and use the same HF_HUB_CACHE here"
            + (", or unset HF_HUB_OFFLINE." if offline else "."))


def download(repo_id: str, *, revision: str | None = None, endpoint: str | None = None,
             token: str | None = None, cache_dir: str | os.PathLike | None = None,
             offline: bool | None = None, force_download: bool = False,
             files: tuple[str, ...] = HUB_FILES) -> Path:
    """The cached snapshot folder of ``repo_id`` at ``revision``, downloading what is missing.

    ``offline=None`` follows ``HF_HUB_OFFLINE``. When the hub cannot be reached (or does not know
    the repo) a cached snapshot is used; when there is none, a ``ModelNotFoundError`` says so.
    """
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = offline_mode() if offline is None else offline
    spec = f"{HUB_PREFIX}{repo_id}" + (f"@{revision}" if revision else "")
    where = (endpoint or constants.ENDPOINT).rstrip("/")
    cache = hub_cache_dir(cache_dir)

    def fetch(local_only: bool) -> str:
        return snapshot_download(repo_id, revision=revision, endpoint=endpoint, token=token,
                                 cache_dir=cache, allow_patterns=list(files),
                                 local_files_only=local_only, force_download=force_download)

    pinned = revision is not None and _COMMIT_SHA.fullmatch(revision) and not force_download
    try:
        snapshot = fetch(True) if pinned else None  # a commit never changes: try the cache first
    except LocalEntryNotFoundError:
        snapshot = None
    try:
        snapshot = snapshot or fetch(offline)
    except RevisionNotFoundError:
        raise ModelNotFoundError(f"{repo_id} on {where} has no revision {revision!r}; use a "
                                 "branch, tag or commit sha that it has.") from None
    except RepositoryNotFoundError:
        try:
            snapshot = fetch(True)
        except LocalEntryNotFoundError:
            raise ModelNotFoundError(
                f"{spec}: the hub at {where} has no repository {repo_id} visible with this token "
                "(private repos need --token or HF_TOKEN), and it is not in the local cache "
                f"({cache}).") from None
    except LocalEntryNotFoundError as error:
        cause = str(error).splitlines()[0].removeprefix("Got: ")
        reason = ("the hub cannot be reached: offline mode is on (HF_HUB_OFFLINE=1)" if offline
                  else f"the hub at {where} cannot be reached ({cause})")
        raise ModelNotFoundError(_not_cached_message(spec, cache, reason, offline)) from None
    except _network_errors() as error:  # the connection broke during the download
        try:
            snapshot = fetch(True)
        except LocalEntryNotFoundError:
            reason = f"the hub at {where} cannot be reached ({type(error).__name__}: {error})"
            raise ModelNotFoundError(_not_cached_message(spec, cache, reason, offline)) from None
    except HfHubHTTPError as error:
        raise SeedzooError(f"The hub at {where} answered an error for {spec}: "
                           f"{str(error).splitlines()[0]}") from None
    snapshot = Path(snapshot)
    missing = [name for name in files if name != CARD_NAME and not (snapshot / name).is_file()]
    if missing:
        raise ModelNotFoundError(
            f"{spec} (commit {snapshot.name}) has no {' or '.join(missing)}. seedzoo reads only "
            f"{CONFIG_NAME} and safetensors weights ({WEIGHTS_NAME}) from a hub, never pickled "
            "files; if a download was interrupted, run it again with access to the hub.")
    damaged = [name for name in files if not _matches_its_blob_name(snapshot / name)]
    if damaged:
        raise ModelNotFoundError(
            f"{spec} (commit {snapshot.name}): the cached {' and '.join(damaged)} does not match "
            f"its hash (truncated or altered in {cache}). Download it again: seedzoo pull "
            f"{spec} --force.")
    return snapshot


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob: how the Hub names a regular (non-LFS) file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _matches_its_blob_name(path: Path) -> bool:
    """Whether a cached file's content hashes to the name of the blob it links to (sha256 for
    LFS files and seedzoo's own cache, git's sha1 for regular files); True when the name is no
    hash (nothing to check) or the file is absent."""
    if not path.is_file():
        return True
    name = path.resolve().name
    if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", name):
        return True
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest() if len(name) == 64 else git_blob_sha1(data)
    return digest == name

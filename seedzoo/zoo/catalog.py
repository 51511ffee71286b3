"""The catalog: models this project trained and evaluated with its own code.

Entries live in ``seedzoo/zoo/catalog.json`` (or the file named by ``SEEDZOO_CATALOG``). Each
one is made by :func:`add_entry` from a real run: the encoder folder, the evaluation JSON of
``seedzoo eval`` (one per dataset) and optionally the ONNX latency JSON of ``seedzoo bench``;
figures are copied from those files, never typed in. :func:`add_entry` also regenerates the
entry's card in ``<cards_dir>/<name>/README.md`` (default ``model_cards/`` of the current
folder: run it from the repository root). From the command line::

    seedzoo catalog add NAME RUN_DIR --eval EVAL.json [--eval ...] [--bench BENCH.json]
        [--repo-id ORG/NAME --revision SHA [--endpoint URL] --public] [--cards DIR]
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from seedzoo.errors import ModelNotFoundError, SeedzooError
from seedzoo.files import dump_yaml, write_text_atomic
from seedzoo.zoo.card import gather_facts, model_card
from seedzoo.zoo.hub import (
    download,
    hub_cache_dir,
    hub_spec,
    publish_target,
    publish_to_cache,
)
from seedzoo.zoo.layout import HUB_FILES

CATALOG_ENV = "SEEDZOO_CATALOG"
PACKAGE_CATALOG = Path(__file__).with_name("catalog.json")
DEFAULT_CARDS_DIR = Path("model_cards")  # relative to the current folder
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
NOT_PUBLIC = "not published on a public hub"


@dataclass(frozen=True)
class ModelEntry:
    """One trained and evaluated model.

    ``evaluations`` maps a dataset name to the flat metrics of its evaluation JSON (k-NN, linear,
    few-shot top-1/top-5); ``onnx`` holds the measured latency and the setting it was measured
    in; ``hub`` holds ``repo_id``, ``revision`` (a commit sha), ``endpoint`` (None for
    huggingface.co) and ``public``.
    """

    name: str
    architecture: str
    method: str | None
    teacher: str | None
    params: int
    input_size: list[int]
    evaluations: dict[str, dict[str, float]]
    hub: dict
    recipe: str | None
    command: str | None
    onnx: dict | None = None
    model_args: dict = field(default_factory=dict)
    card: str | None = None

    @property
    def public(self) -> bool:
        return bool(self.hub.get("public"))

    @property
    def where(self) -> str:
        """Where the weights are published, in words."""
        if not self.public:
            return NOT_PUBLIC
        endpoint = self.hub.get("endpoint") or "https://huggingface.co"
        return f"{endpoint}/{self.hub['repo_id']} @ {self.hub['revision'][:12]}"

    @property
    def hub_spec(self) -> str:
        return hub_spec(self.hub["repo_id"], self.hub["revision"])

    def top1(self, dataset: str, protocol: str) -> float | None:
        """k-NN (``"knn"``, k=20 when present) or linear (``"linear"``) top-1 on ``dataset``."""
        metrics = self.evaluations.get(dataset, {})
        if protocol == "linear":
            return metrics.get("linear_top1")
        knn = sorted((k for k in metrics if k.startswith("knn_top1@")),
                     key=lambda k: (k != "knn_top1@20", int(k.split("@")[1])))
        return metrics[knn[0]] if knn else None

    def to_dict(self) -> dict:
        return asdict(self)


def catalog_path() -> Path:
    """The catalog file in use: ``$SEEDZOO_CATALOG`` or the one shipped with the package."""
    return Path(os.environ.get(CATALOG_ENV) or PACKAGE_CATALOG)


def _not_a_catalog(path: Path, problem: str) -> SeedzooError:
    return SeedzooError(f"The catalog file {path} is not a seedzoo catalog ({problem}). Fix it, or "
                        f"set {CATALOG_ENV} to another catalog file.")


def _read(path: Path) -> list[ModelEntry]:
    """The entries of the catalog file ``path``; one with a missing or unknown field is an error."""
    try:
        records = json.loads(path.read_text())["models"]
    except FileNotFoundError:
        raise SeedzooError(f"The catalog file {path} does not exist (set {CATALOG_ENV} to a "
                           "catalog JSON or unset it).") from None
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise _not_a_catalog(path, str(error)) from None
    if not isinstance(records, list):
        raise _not_a_catalog(path, f"'models' is a {type(records).__name__}, not a list")
    return [_entry(record, f"#{index + 1}", path) for index, record in enumerate(records)]


def _entry(record, position: str, path: Path) -> ModelEntry:
    """The :class:`ModelEntry` of one catalog record, or an error naming the bad field."""
    if not isinstance(record, dict):
        raise _not_a_catalog(path, f"entry {position} is a {type(record).__name__}, not an object")
    fields = dataclasses.fields(ModelEntry)
    missing = [f.name for f in fields if f.name not in record
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    unknown = sorted(set(record) - {f.name for f in fields})
    if missing or unknown:
        problems = ([f"missing field {name!r}" for name in missing]
                    + [f"unknown field {name!r} (written by a newer seedzoo? upgrade it)"
                       for name in unknown])
        raise _not_a_catalog(path, f"entry {record.get('name', position)!r}: "
                             + "; ".join(problems))
    return ModelEntry(**record)


def _best_first(entry: ModelEntry) -> tuple:
    """Sort key: by architecture, then the best k-NN top-1 (on the first evaluated dataset)."""
    dataset = next(iter(entry.evaluations), "")
    knn = entry.top1(dataset, "knn")
    return entry.architecture, -(knn if knn is not None else -1.0), entry.name


def list_models(pattern: str = "*") -> list[ModelEntry]:
    """Catalog entries whose name matches ``pattern`` (shell-style, as ``timm.list_models``),
    grouped by architecture, best k-NN top-1 first."""
    return sorted((entry for entry in _read(catalog_path())
                   if fnmatch.fnmatch(entry.name, pattern)), key=_best_first)


def find_entry(name: str) -> ModelEntry | None:
    """The catalog entry called ``name``, or None."""
    return next((entry for entry in list_models() if entry.name == name), None)


def closest_names(name: str, n: int = 5) -> list[str]:
    """Catalog names that look like ``name`` (for 'did you mean' messages)."""
    return difflib.get_close_matches(name, [e.name for e in list_models()], n=n, cutoff=0.5)


def get_entry(name: str) -> ModelEntry:
    """The catalog entry called ``name``; an unknown name suggests the closest ones."""
    entry = find_entry(name)
    if entry is None:
        close = closest_names(name)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ModelNotFoundError(f"The catalog has no model {name!r}.{hint} "
                                 "`seedzoo list` shows the catalog.")
    return entry


def download_entry(entry: ModelEntry, *, revision: str | None = None,
                   endpoint: str | None = None, token: str | None = None,
                   cache_dir: str | os.PathLike | None = None, offline: bool | None = None,
                   force_download: bool = False, files: tuple[str, ...] | None = None) -> Path:
    """The cached snapshot of ``entry``: downloaded from its hub, or, when it is not on a public
    hub (and no ``endpoint`` is given), looked up in the local cache only. When neither has it,
    the error says how to rebuild it."""
    if not entry.public and endpoint is None:
        offline = True
    try:
        return download(entry.hub["repo_id"], revision=revision or entry.hub["revision"],
                        endpoint=endpoint or entry.hub.get("endpoint"), token=token,
                        cache_dir=cache_dir, offline=offline, force_download=force_download,
                        files=files or HUB_FILES)
    except ModelNotFoundError as error:
        rebuild = (f"build it yourself with: {entry.command}" if entry.command
                   else f"rebuild it with the recipe {entry.recipe}")
        if entry.public:
            raise ModelNotFoundError(f"{error} Or {rebuild}") from None
        raise ModelNotFoundError(
            f"{entry.name} is {NOT_PUBLIC} and is not in the local Hugging Face cache "
            f"({hub_cache_dir(cache_dir)}); {rebuild}") from None


def _shown(path: Path) -> str:
    """``path`` relative to the current folder when it lies in it (entries are committed from
    the repository root)."""
    path, here = path.absolute(), Path.cwd()
    return str(path.relative_to(here) if path.is_relative_to(here) else path)


def add_entry(name: str, folder_or_run: str | os.PathLike, evaluations: list, *,
              bench=None, run=None, repo_id: str | None = None, revision: str | None = None,
              endpoint: str | None = None, public: bool = False, command: str | None = None,
              recipe: str | None = None, catalog: str | os.PathLike | None = None,
              cards_dir: str | os.PathLike = DEFAULT_CARDS_DIR,
              plot: str | os.PathLike | None = None) -> ModelEntry:
    """Add (or replace) the entry ``name`` from a real run, and write its card.

    ``folder_or_run`` is the encoder folder or the run folder holding it; ``evaluations`` are
    evaluation JSONs (paths or dicts) of that encoder, one per dataset; ``bench`` the ONNX
    latency JSON; ``run`` the run summary (found in the run folder when omitted). ``repo_id``
    and ``revision`` say where it is published (``public`` when on a public hub). ``command``
    and ``recipe`` (default: from the run summary) rebuild it. The card is written to
    ``cards_dir/name/README.md`` (default: ``model_cards/`` in the current folder), with the
    run's resolved recipe beside it as ``recipe.yaml``; ``plot``, an image (e.g. the study's
    accuracy against latency with this model ringed), is copied beside it and shown in it.
    """
    if not _PLAIN_NAME.fullmatch(name):
        raise SeedzooError(f"A catalog name is one plain word of letters, digits, '-', '_' and "
                           f"'.' (it names the card's folder), got {name!r}; e.g. "
                           "seed-resnet18-fmnist.")
    if not evaluations:
        raise SeedzooError(f"A catalog entry needs real figures: give the evaluation JSON of "
                           f"{name} (seedzoo eval --out ...).")
    if public and not (repo_id and revision):
        raise SeedzooError("A public entry needs --repo-id and --revision (the commit sha).")
    repo_id = publish_target(repo_id) if repo_id else f"seedzoo/{name}"
    if revision is None:  # not published yet: the revision it has in the local cache
        revision = publish_to_cache(folder_or_run, repo_id).revision
    facts = gather_facts(folder_or_run, name=name, run=run, evaluations=evaluations, bench=bench,
                         repo_id=repo_id, revision=revision)
    card_dir = Path(cards_dir) / name
    if facts.run_config:
        recipe_path = card_dir / "recipe.yaml"
        write_text_atomic(recipe_path, dump_yaml(facts.run_config))
        command = (command or facts.command
                   or f"seedzoo train --config {_shown(recipe_path)} --out runs/{name}")
    facts = dataclasses.replace(facts, command=command or facts.command,
                                recipe=recipe or facts.recipe)
    card_path = card_dir / "README.md"
    if plot is not None:
        shown = card_dir / Path(plot).name
        if Path(plot).resolve() != shown.resolve():
            card_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(plot, shown)
        plot = shown.name
    write_text_atomic(card_path, str(model_card(facts, plot)))
    entry = ModelEntry(
        name=name, architecture=facts.architecture, method=facts.method, teacher=facts.teacher,
        params=facts.params, input_size=list(facts.input_size),
        evaluations={e.dataset: dict(e.metrics) for e in facts.evaluations},
        hub={"repo_id": repo_id, "revision": revision, "endpoint": endpoint, "public": public},
        recipe=facts.recipe, command=facts.command, onnx=facts.latency,
        model_args=facts.model_args, card=_shown(card_path))
    path = Path(catalog) if catalog else catalog_path()
    models = [m.to_dict() for m in _read(path) if m.name != name] if path.exists() else []
    models.append(entry.to_dict())
    models.sort(key=lambda m: m["name"])
    write_text_atomic(path, json.dumps({"models": models}, indent=2) + "\n")
    return entry


def format_markdown(entries: list[ModelEntry]) -> str:
    """The catalog as a Markdown table (README's), one row per (model, evaluated dataset),
    each name linked to its card."""
    header = ["name", "architecture", "method", "params", "dataset", "k-NN top-1",
              "linear top-1", "ONNX ms"]
    rows = [header, ["---"] * 3 + ["---:"] + ["---"] + ["---:"] * 3]
    for e in entries:
        latency = (e.onnx or {}).get("latency_ms")
        name = f"[`{e.name}`]({e.card})" if e.card else f"`{e.name}`"
        for dataset in e.evaluations or {"-": {}}:
            knn, linear = e.top1(dataset, "knn"), e.top1(dataset, "linear")
            rows.append([name, e.architecture, e.method or "-", f"{e.params / 1e6:.1f}M",
                         dataset, f"{100 * knn:.1f}" if knn is not None else "-",
                         f"{100 * linear:.1f}" if linear is not None else "-",
                         f"{latency:.2f}" if latency is not None else "-"])
    return "\n".join("| " + " | ".join(row) + " |" for row in rows) + "\n"


def format_table(entries: list[ModelEntry]) -> str:
    """The catalog as a plain-text table, one row per (model, evaluated dataset)."""
    if not entries:
        return ("The catalog is empty: no model has been trained and evaluated into it yet. "
                "Add one with `seedzoo catalog add` after a real run.")
    header = ["name", "arch", "method", "teacher", "params", "input", "dataset", "knn top1",
              "linear top1", "onnx ms", "published"]
    rows = []
    for e in entries:
        latency = (e.onnx or {}).get("latency_ms")
        for dataset in e.evaluations or {"-": {}}:
            knn, linear = e.top1(dataset, "knn"), e.top1(dataset, "linear")
            rows.append([e.name, e.architecture, e.method, e.teacher or "-",
                         f"{e.params / 1e6:.1f}M", "x".join(map(str, e.input_size[1:])), dataset,
                         f"{knn:.3f}" if knn is not None else "-",
                         f"{linear:.3f}" if linear is not None else "-",
                         f"{latency:.2f}" if latency is not None else "-", e.where])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)

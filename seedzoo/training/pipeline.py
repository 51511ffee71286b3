"""Pipelines: training runs in order, each reading the run folder of the one before it.

SimCLRv2 (Chen et al., NeurIPS 2020) is three runs: pretraining without labels (``simclr`` with
SimCLRv2's options), fine-tuning on a few labels from the pretrained encoder and first head layer
(``finetune``, whose ``method.pretrained`` is the pretraining run folder) and distillation into
a student on all the images (``simclrv2_distill``, whose ``method.teacher`` is the fine-tuned run
folder).

:func:`run_pipeline` trains step ``i`` in ``out/<its name>``, a run folder like any other, and
reruns only what is missing: a finished step (its ``summary.json`` written) is skipped, an
interrupted one resumes from its checkpoint with the trainer's exact resume, a missing one starts.
A step that stops early (``train.max_steps``) ends the pipeline there. Named after their recipes,
steps that several pipelines share (one pretraining for the 1% and 10% fine-tunings, one
fine-tuning for several students) are trained once in a common ``out``; a step folder holding a
run of other settings is an error, not a silent reuse.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from seedzoo.errors import SeedzooError
from seedzoo.training.config import (
    Config,
    config_differences,
    config_from_dict,
    load_config,
    read_yaml,
)
from seedzoo.training.trainer import train
from seedzoo.zoo.layout import CHECKPOINT_NAME, RUN_CONFIG_NAME, SUMMARY_NAME


@dataclass(frozen=True)
class Step:
    """One step of a pipeline: its role and the method option naming the previous step's run
    folder (None for the first)."""

    role: str
    reads: str | None = None


PIPELINES: dict[str, tuple[Step, ...]] = {
    "simclrv2": (Step("pretrain"), Step("finetune", reads="pretrained"),
                 Step("distill", reads="teacher")),
}

SECTIONS = tuple(field.name for field in dataclasses.fields(Config))

#: Settings a step may change between its sessions: how a run goes, not what it trains.
RUN_SETTINGS = ("data.workers", "train.device", "train.max_steps", "train.log_every_steps",
                "train.checkpoint_every_steps", "train.knn_monitor")


def pipeline_steps(pipeline: str, count: int) -> tuple[Step, ...]:
    """The steps of ``pipeline``, given ``count`` recipes for them (a clear error unless one
    per step)."""
    if pipeline not in PIPELINES:
        raise SeedzooError(f"Unknown pipeline {pipeline!r}; known: {', '.join(PIPELINES)}.")
    steps = PIPELINES[pipeline]
    if count != len(steps):
        raise SeedzooError(f"The {pipeline} pipeline takes {len(steps)} recipes, one per step in "
                           f"order ({', '.join(s.role for s in steps)}); got {count}.")
    return steps


def load_pipeline(pipeline: str, recipes: list[str | Path], overrides: list[str] = ()
                  ) -> list[tuple[str, Config]]:
    """The ``(name, config)`` steps of ``pipeline`` from its ``recipes`` in step order, each named
    after its recipe file. ``overrides`` are ``--set`` values: ``<role>.section.key=value`` for
    one step (``finetune.train.epochs=5``), ``section.key=value`` for every step."""
    steps = pipeline_steps(pipeline, len(recipes))
    roles = [step.role for step in steps]
    per_step: dict[str, list[str]] = {role: [] for role in roles}
    for override in overrides:
        first, _, rest = override.partition(".")
        if first in roles:
            per_step[first].append(rest)
        elif first in SECTIONS:
            for role in roles:
                per_step[role].append(override)
        else:
            raise SeedzooError(f"--set {override!r}: start with a step ({', '.join(roles)}) or a "
                               f"section for every step ({', '.join(SECTIONS)}).")
    return [(Path(recipe).stem, load_config(recipe, per_step[role]))
            for recipe, role in zip(recipes, roles, strict=True)]


def reading(config: Config, option: str, run_dir: Path) -> Config:
    """``config`` whose method option ``option`` names ``run_dir`` (a ``{source, ...}`` dict
    keeps its other keys)."""
    current = config.method.get(option)
    source = str(run_dir)
    value = {**current, "source": source} if isinstance(current, dict) else source
    return dataclasses.replace(config, method={**config.method, option: value})


def _check_same_run(config: Config, run_dir: Path) -> None:
    """A step folder that holds a run must hold this step's: same settings but those of
    :data:`RUN_SETTINGS`."""
    saved = run_dir / RUN_CONFIG_NAME
    if not saved.is_file():
        return
    changes = config_differences(config_from_dict(read_yaml(saved)), config, RUN_SETTINGS)
    if changes:
        raise SeedzooError(f"{run_dir} holds a run of other settings ({'; '.join(changes)}). "
                           "Give the pipeline another --out, or delete that folder to train the "
                           "step again.")


def run_pipeline(pipeline: str, runs: list[tuple[str, Config]], out: str | Path) -> list[dict]:
    """Train the steps of ``pipeline`` (:data:`PIPELINES`), given as ``(name, config)`` in step
    order, each in ``out/<name>``, wiring each step's input to the previous run folder (module
    docstring). Returns the summaries of the steps reached; the last is unfinished when a step
    stopped early."""
    steps = pipeline_steps(pipeline, len(runs))
    names = [name for name, _ in runs]
    if len(set(names)) != len(names):
        raise SeedzooError(f"The steps of a pipeline need distinct names (their run folders); "
                           f"got {', '.join(names)}.")
    out, summaries, previous = Path(out), [], None
    for number, (step, (name, config)) in enumerate(zip(steps, runs, strict=True), start=1):
        run_dir = out / name
        if step.reads is not None:
            config = reading(config, step.reads, previous)
        _check_same_run(config, run_dir)
        header = f"[{pipeline} {number}/{len(steps)} {step.role}] {run_dir}"
        if (run_dir / SUMMARY_NAME).is_file():
            print(f"{header}: finished before, skipped.")
            summary = json.loads((run_dir / SUMMARY_NAME).read_text())
        else:
            resume = (run_dir / CHECKPOINT_NAME).is_file()
            print(f"{header}: {'resuming' if resume else 'training'}.")
            summary = train(config, run_dir, resume=resume)
        summaries.append(summary)
        if not summary["finished"]:
            print(f"{header}: stopped before the end; run the pipeline again to continue.")
            break
        previous = run_dir
    return summaries

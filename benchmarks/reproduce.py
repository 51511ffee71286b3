"""The reproduction study on Fashion-MNIST: every method's students, evaluated alike.

    python benchmarks/reproduce.py [--budget cpu|gpu] [--only NAME ...] [--list]
        [--transfer DATASET ...] [--catalog [--readme README.md]]
        [--runs-dir runs/study] [--results benchmarks/results/study]

One big teacher (a SimCLRv2 ResNet-50 trained here; its supervised twin for the methods that
distil logits), then for each student (EfficientNet-B0, MobileNet-v3-Large, ResNet-18): MoCo v2
from scratch at the students' budget, SEED, KD, label-free CRD, CRD+KD+CE, DoGo, SimCLRv2
distillation from the teacher fine-tuned on 1% and 10% of the labels, supervised (the upper
bound), and EsViT on a small Swin. Every run is a shipped recipe with ``--set`` overrides (the
budget, the student, the teachers' folders), printed as the command that rebuilds it.

Every exported network is then evaluated the same way: on the full Fashion-MNIST splits k-NN
(k 20, 200), linear probe, few-shot linear and fine-tuning on 1% / 10% of the labels (and as a
classifier when it has one); transfer with the frozen encoder (k-NN, linear) to scikit-learn's
digits and to every ``--transfer`` dataset (``imagefolder:PATH`` for your own); parameters and
FLOPs at the input size; ONNX Runtime fp32 and INT8 batch-1 latency against torch (1 thread,
interleaved) and INT8's k-NN cost.

Resumable at every step: a finished training (``summary.json``) or a written result JSON is
skipped, an interrupted training resumes from its checkpoint. Results go to ``--results``
(``train_<run>.json``, ``metrics_<run>.jsonl``, ``eval_<run>_<network>.json`` (the frozen
protocols), ``finetune_<run>_<network>.json``, ``transfer_<dataset>_<run>_<network>.json``,
``deploy_<run>_<network>.json``) and are gathered into
``summary.json`` (schema ``seedzoo-study/1``, see ``seedzoo report``) after every step, so the
summary can be rebuilt from the committed JSONs alone (``--summary-only``). A run whose results
are all there is not retrained unless a later run needs its folder (a teacher) or ``--catalog``
publishes it; a retrained run's results measured on its former weights are measured again.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from seedzoo.provenance import source_commit
from seedzoo.results import write_report

ROOT = Path(__file__).resolve().parents[1]
STUDENTS = ("efficientnet_b0", "mobilenetv3_large_100", "resnet18")
# SimCLRv2 rather than MoCo v2: on Fashion-MNIST at 32 px it learnt far faster (docs/study.md)
TEACHER = "teacher_simclrv2_resnet50"
LABELLED_TEACHER = "teacher_supervised_resnet50"
# At least this many SGD steps per label fraction when fine-tuning (seedzoo eval's default, 50,
# left EfficientNet-B0 at 26.8% on 1% of the labels, below its few-shot probe; 300: 67.8%)
FINETUNE_MIN_STEPS = 300
FINETUNE_HEAD_INIT = "probe"   # LP-FT; the zero-initialised head scored below the probe here
# The students the catalog gets (besides the teachers): SEED's, and SimCLRv2's from 10% labels
CATALOG_PREFIXES = ("seed_", "simclrv2_10pct_")


@dataclass(frozen=True)
class Budget:
    """What every student run trains on; teachers train ``teacher_epochs``."""

    name: str                # the --budget that selects it
    machine: str
    limit: int | None        # training images (None: the whole 60,000)
    epochs: int
    teacher_epochs: int
    finetune_epochs: dict     # label fraction -> epochs of the teacher's fine-tuning
    extra: tuple[str, ...] = ()   # overrides for every run (device, batch)


BUDGETS = {
    # Sized for a working day on 2 CPU cores: 10 minutes or so per student run, 40-60 per teacher.
    "cpu": Budget("cpu", "cpu-2core", limit=20000, epochs=3, teacher_epochs=5,
                  finetune_epochs={0.01: 30, 0.1: 8}),
    # The long variant for one GPU: the whole training split, the papers' epoch counts scaled.
    "gpu": Budget("gpu", "gpu", limit=None, epochs=100, teacher_epochs=200,
                  finetune_epochs={0.01: 60, 0.1: 30},
                  extra=("train.device=cuda", "data.batch_size=256", "data.workers=8")),
}


@dataclass(frozen=True)
class Run:
    """One training of the study: a recipe, its overrides, and what its rows are."""

    name: str
    recipe: str
    method: str
    overrides: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()          # runs whose folders this one reads
    label_fraction: float = 0.0
    teacher: str | None = None
    variant: str | None = None
    is_teacher: bool = False
    networks: dict = field(default_factory=dict)   # exported folder -> architecture


def transfer_name(dataset: str) -> str:
    """A transfer dataset's name in file and metric names: ``digits``; ``imagefolder:PATH`` ->
    the folder's name, letters and digits only (``flowers-102``)."""
    name = Path(dataset.split(":", 1)[1]).name if dataset.startswith("imagefolder:") else dataset
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "images"


def plan(budget: Budget, runs_dir: Path) -> list[Run]:
    """Every run of the study, teachers before the runs that read them."""
    limit = "null" if budget.limit is None else str(budget.limit)
    common = (f"data.limit={limit}", "train.knn_monitor.every_epochs=1", *budget.extra)
    students = (*common, f"train.epochs={budget.epochs}")
    teachers = (*common, f"train.epochs={budget.teacher_epochs}")
    folder = lambda name: (runs_dir / name).as_posix()  # noqa: E731
    runs = [
        Run(TEACHER, "configs/fmnist/simclrv2/pretrain_resnet50.yaml", "simclr", teachers,
            is_teacher=True, networks={"encoder": "resnet50"}),
        Run(LABELLED_TEACHER, "configs/fmnist/supervised/resnet50.yaml", "supervised", teachers,
            label_fraction=1.0, is_teacher=True, networks={"encoder": "resnet50"}),
    ]
    for fraction, percent in ((0.01, "1pct"), (0.1, "10pct")):
        runs.append(Run(
            f"finetune_resnet50_{percent}",
            f"configs/fmnist/simclrv2/finetune_resnet50_{percent}.yaml",
            "finetune", ("data.limit=null", *common[1:],   # the few-shot probe's label subsets
                         f"train.epochs={budget.finetune_epochs[fraction]}",
                         f"method.pretrained={folder(TEACHER)}"),
            needs=(TEACHER,), label_fraction=fraction, teacher=TEACHER, is_teacher=True,
            variant=f"{percent.replace('pct', '%')} labels", networks={"encoder": "resnet50"}))
    for student in STUDENTS:
        arch = (f"method.student.arch={student}",)
        seed_teacher = (f"method.teacher.source={folder(TEACHER)}/encoder",)
        labelled_teacher = (f"method.teacher.source={folder(LABELLED_TEACHER)}",)
        only = {"encoder": student}
        runs += [
            Run(f"moco_{student}", "configs/fmnist/baselines/moco_resnet18_10k_3ep.yaml", "moco",
                (*students, f"method.encoder.arch={student}"), variant="from scratch",
                networks=only),
            Run(f"seed_{student}", "configs/fmnist/seed/resnet50_to_resnet18.yaml", "seed",
                (*students, *arch, *seed_teacher), needs=(TEACHER,), teacher=TEACHER,
                networks=only),
            Run(f"kd_{student}", "configs/fmnist/kd/resnet50_to_resnet18.yaml", "kd",
                (*students, *arch, *labelled_teacher), needs=(LABELLED_TEACHER,),
                label_fraction=1.0, teacher=LABELLED_TEACHER, networks=only),
            Run(f"crd_{student}", "configs/fmnist/crd/resnet50_to_resnet18.yaml", "crd",
                (*students, *arch, *seed_teacher), needs=(TEACHER,), teacher=TEACHER,
                variant="label-free", networks=only),
            Run(f"crd_kd_{student}", "configs/fmnist/crd_kd/resnet50_to_resnet18.yaml", "crd",
                (*students, *arch, *labelled_teacher), needs=(LABELLED_TEACHER,),
                label_fraction=1.0, teacher=LABELLED_TEACHER, variant="CRD+KD+CE",
                networks=only),
            Run(f"supervised_{student}", "configs/fmnist/supervised/resnet18.yaml", "supervised",
                (*students, f"method.encoder.arch={student}"), label_fraction=1.0,
                networks=only),
        ]
        for fraction, percent in ((0.01, "1pct"), (0.1, "10pct")):
            finetuned = f"finetune_resnet50_{percent}"
            runs.append(Run(
                f"simclrv2_{percent}_{student}",
                f"configs/fmnist/simclrv2/distill_resnet50_{percent}_to_resnet18.yaml",
                "simclrv2_distill",
                (*students, *arch, f"method.teacher.source={folder(finetuned)}"),
                needs=(finetuned,), label_fraction=fraction, teacher=finetuned,
                variant=f"{percent.replace('pct', '%')} labels", networks=only))
    peers = {"resnet18": "resnet18", "mobilenetv3_large_100": "mobilenetv3_large_100"}
    runs.append(Run("dogo_mobilenetv3_large_100_resnet18",
                    "configs/fmnist/dogo/resnet18_mobilenetv3_large_100.yaml", "dogo", students,
                    variant="MobileNet-v3-Large + ResNet-18", networks=peers))
    runs.append(Run(
        "dogo_efficientnet_b0_resnet18", "configs/fmnist/dogo/resnet18_mobilenetv3_large_100.yaml",
        "dogo", (*students, "method.peers=[{arch: efficientnet_b0}, {arch: resnet18}]",
                 "method.names=[efficientnet_b0, resnet18]", "method.student=efficientnet_b0"),
        variant="EfficientNet-B0 + ResNet-18",
        networks={"efficientnet_b0": "efficientnet_b0"}))
    runs.append(Run("esvit_swin_micro", "configs/fmnist/esvit/swin_micro.yaml", "esvit", students,
                    networks={"encoder": "swin_tiny_patch4_window7_224"}))
    return runs


def train_command(run: Run, runs_dir: Path) -> list[str]:
    """The ``seedzoo train`` command that (re)builds ``run``."""
    command = ["seedzoo", "train", "--config", run.recipe,
               "--out", (runs_dir / run.name).as_posix()]
    for override in run.overrides:
        command += ["--set", override]
    return command


def execute(command: list[str]) -> None:
    """Run ``command`` from the repository root, echoing it."""
    print("$ " + shlex.join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


class Study:
    """Trains, evaluates and summarises the runs of :func:`plan` (see the module docstring)."""

    def __init__(self, budget: Budget, runs_dir: Path, results: Path, *, threads: int,
                 transfers: tuple[str, ...] = ("digits",)):
        self.budget, self.runs_dir, self.results, self.threads = budget, runs_dir, results, threads
        self.transfers = {transfer_name(dataset): dataset for dataset in transfers}
        self.runs = plan(budget, runs_dir)
        self.by_name = {run.name: run for run in self.runs}

    @property
    def transfer_kinds(self) -> list[str]:
        """The result kinds of the transfer datasets: ``transfer_<name>``."""
        return [f"transfer_{name}" for name in self.transfers]

    def result_paths(self, run: Run) -> list[Path]:
        paths = [self.results / f"train_{run.name}.json"]
        for network in run.networks:
            paths += [self.results / f"{kind}_{run.name}_{network}.json"
                      for kind in ("eval", "finetune", *self.transfer_kinds, "deploy")]
        return paths

    def needed(self, selected: list[Run], *, folders: list[Run] = ()) -> list[Run]:
        """``selected`` runs with missing results, the ``folders`` runs whose folders are gone
        (a catalog entry publishes its weights), and the teachers whose folders they read."""
        wanted = {run.name for run in selected if not all(map(Path.exists, self.result_paths(run)))}
        wanted |= {run.name for run in folders if not self.trained(run.name)}
        for run in reversed(self.runs):
            if run.name in wanted:
                wanted |= {need for need in run.needs if not self.trained(need)}
        return [run for run in self.runs if run.name in wanted]

    def trained(self, name: str) -> bool:
        """Whether run ``name``'s folder holds its finished training."""
        return (self.runs_dir / name / "summary.json").exists()

    def train(self, run: Run) -> None:
        folder = self.runs_dir / run.name
        record = self.results / f"train_{run.name}.json"
        if not self.trained(run.name):
            command = train_command(run, self.runs_dir)
            if (folder / "checkpoint.pt").exists():
                command.append("--resume")
            execute(command)
        summary = json.loads((folder / "summary.json").read_text())
        summary["command"] = shlex.join(train_command(run, self.runs_dir))
        # which teachers it learnt from: a teacher retrained in another session may differ
        summary["teachers_sha256"] = {need: self.fingerprint(need) for need in run.needs}
        # the log first: the record's presence means the run's files are all there
        shutil.copyfile(folder / "metrics.jsonl", self.results / f"metrics_{run.name}.jsonl")
        write_report(summary, record)

    def fingerprint(self, name: str, network: str | None = None) -> str:
        """The weights fingerprint of ``network`` (default: the only one) run ``name`` exported."""
        import seedzoo
        from seedzoo.zoo.pretrained import weights_fingerprint

        (network,) = [network] if network else self.by_name[name].networks
        return weights_fingerprint(seedzoo.load(self.runs_dir / name / network))

    def evaluate(self, run: Run, network: str, *, finetune: bool = True) -> None:
        """Every result of ``network`` that is missing or was measured on other weights (the
        run was retrained since)."""
        folder = (self.runs_dir / run.name / network).as_posix()
        current = functools.partial(measured_on, weights=self.fingerprint(run.name, network))
        fmnist = self.results / f"eval_{run.name}_{network}.json"
        if not current(fmnist):
            from seedzoo.zoo.pretrained import has_classifier

            protocols = "knn,linear,fewshot" + (",classifier" if has_classifier(folder) else "")
            execute(["seedzoo", "eval", "--model", folder, "--dataset", "fashion-mnist",
                     "--protocol", protocols, "--knn-k", "20,200", "--out", fmnist.as_posix(),
                     "--quiet"])
        finetuned = self.results / f"finetune_{run.name}_{network}.json"
        if finetune and not current(finetuned):
            execute(["seedzoo", "eval", "--model", folder, "--dataset", "fashion-mnist",
                     "--protocol", "finetune", "--finetune-fractions", "0.01,0.1",
                     "--finetune-min-steps", str(FINETUNE_MIN_STEPS),
                     "--finetune-head-init", FINETUNE_HEAD_INIT,
                     "--out", finetuned.as_posix(), "--quiet"])
        elif not finetune and finetuned.exists() and not current(finetuned):
            finetuned.unlink()  # the old weights' figures: a rerun fine-tunes the new
        for kind, dataset in zip(self.transfer_kinds, self.transfers.values(), strict=True):
            transfer = self.results / f"{kind}_{run.name}_{network}.json"
            if not current(transfer):
                execute(["seedzoo", "eval", "--model", folder, "--dataset", dataset,
                         "--protocol", "knn,linear", "--knn-k", "20",
                         "--out", transfer.as_posix(), "--quiet"])
        deploy = self.results / f"deploy_{run.name}_{network}.json"
        if not current(deploy):
            print(f"== deploying {run.name}/{network}: parameters, FLOPs, ONNX fp32/INT8",
                  flush=True)
            write_report(deployment_figures(folder, threads=self.threads), deploy)

    def summary(self) -> dict:
        from seedzoo.deploy.latency import machine_info

        rows = [row for run in self.runs for row in self.rows(run)]
        pixels = self.results / "eval_pixels.json"
        return {"schema": "seedzoo-study/1", "dataset": "fashion-mnist",
                "budget": self.budget.machine, "machine": machine_info(),
                "commit": source_commit(),
                "pixels": json.loads(pixels.read_text())["metrics"] if pixels.exists() else {},
                "rows": rows}

    def rows(self, run: Run) -> list[dict]:
        record = self.results / f"train_{run.name}.json"
        if not record.exists():
            return []
        train = json.loads(record.read_text())
        config = train["config"]
        images_seen = train["steps"] * config["data"]["batch_size"] * train.get("world_size", 1)
        rows = []
        for network, arch in run.networks.items():
            metrics, extra = {}, {}
            for kind, prefix in (("eval", ""), ("finetune", ""), *((kind, f"{kind}_")
                                                 for kind in self.transfer_kinds)):
                path = self.results / f"{kind}_{run.name}_{network}.json"
                if path.exists():
                    found = json.loads(path.read_text())["metrics"]
                    metrics |= {prefix + name: value for name, value in found.items()
                                # fine-tuning figures from their own file alone (older eval_
                                # files hold some from another protocol: 50 steps, zero head)
                                if kind == "finetune" or not name.startswith("finetune_")}
            deploy = self.results / f"deploy_{run.name}_{network}.json"
            if deploy.exists():
                extra = json.loads(deploy.read_text())["row"]
            rows.append({
                "name": run.name if len(run.networks) == 1 else f"{run.name}/{network}",
                "architecture": arch, "method": run.method, "variant": run.variant,
                "teacher": run.teacher, "is_teacher": run.is_teacher,
                "label_fraction": run.label_fraction, "images_seen": images_seen,
                "epochs": config["train"]["epochs"], "wall_s": train["wall_time_s"],
                "machine": self.budget.machine, "command": train["command"],
                "teachers_sha256": train.get("teachers_sha256", {}),
                "metrics": metrics, **extra,
                "metrics_jsonl": f"metrics_{run.name}.jsonl"})
        return rows

    def pixels(self) -> None:
        out = self.results / "eval_pixels.json"
        if not out.exists():
            execute(["seedzoo", "eval", "--model", "pixels", "--dataset", "fashion-mnist",
                     "--protocol", "knn,linear,fewshot", "--knn-k", "20,200",
                     "--out", out.as_posix(), "--quiet"])

    def catalog_runs(self) -> list[Run]:
        """The teachers and :data:`CATALOG_PREFIXES` students whose folders hold the weights
        all the results a card shows were measured on (the fine-tuning's are the report's
        alone)."""
        return [run for run in self.catalog_candidates() if self.trained(run.name)
                and all(measured_on(path, weights=self.fingerprint(run.name, network))
                        for network in run.networks
                        for path in self.result_paths(run)
                        if path.name.endswith(f"_{network}.json")
                        and not path.name.startswith("finetune_"))]

    def catalog_candidates(self) -> list[Run]:
        """The teachers and the :data:`CATALOG_PREFIXES` students."""
        return [run for run in self.runs
                if run.is_teacher or run.name.startswith(CATALOG_PREFIXES)]

    def add_to_catalog(self, cards_dir: Path) -> list[str]:
        """Catalog entries, with cards, for the teachers and the :data:`CATALOG_PREFIXES`
        students whose results are all there; each card shows the study's accuracy against
        latency with its model ringed. Returns the names added."""
        from seedzoo.report import read_study
        from seedzoo.report.figures import accuracy_latency
        from seedzoo.zoo.catalog import add_entry

        study = read_study(self.write_summary())
        added = []
        for run in self.catalog_runs():
            (network,) = run.networks
            name = f"{run.name.replace('_', '-')}-fmnist-32px"
            train = json.loads((self.results / f"train_{run.name}.json").read_text())
            deploy = json.loads((self.results / f"deploy_{run.name}_{network}.json").read_text())
            plot = accuracy_latency(study, cards_dir / name / "study.png", highlight=run.name)
            add_entry(name, self.runs_dir / run.name / network,
                      [self.results / f"{kind}_{run.name}_{network}.json"
                       for kind in ("eval", *self.transfer_kinds)],
                      bench=deploy["latency"], run=train, recipe=run.recipe,
                      command=f"python benchmarks/reproduce.py --budget {self.budget.name} "
                              f"--only {run.name}",
                      cards_dir=cards_dir, plot=plot.path if plot else None)
            added.append(name)
        return added

    def write_summary(self) -> Path:
        path = self.results / "summary.json"
        write_report(self.summary(), path)
        return path


def measured_on(path: Path, weights: str) -> bool:
    """Whether the result JSON ``path`` (``seedzoo eval``'s or a deployment's) exists and was
    measured on the weights whose fingerprint is ``weights`` (fine-tuning: from the study's
    classifier start, ``FINETUNE_HEAD_INIT``)."""
    if not path.exists():
        return False
    data = json.loads(path.read_text())
    found = data.get("config") or data.get("latency", {}).get("model") or {}
    finetune = found.get("finetune", {"classifier_init": FINETUNE_HEAD_INIT})
    return (found.get("weights_sha256") == weights
            and finetune.get("classifier_init") == FINETUNE_HEAD_INIT)


def params_and_flops(model, input_size) -> dict:
    """``model``'s parameter count and the FLOPs of one forward at ``input_size`` (C, H, W)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, *input_size))
    return {"params": sum(p.numel() for p in model.parameters()),
            "flops": counter.get_total_flops()}


def deployment_figures(folder: str, *, threads: int) -> dict:
    """Parameters, FLOPs, ONNX fp32 / INT8 batch-1 latency against torch, INT8's k-NN cost."""
    import tempfile

    import seedzoo
    from seedzoo.deploy.latency import benchmark_latency
    from seedzoo.deploy.onnx_export import export_onnx
    from seedzoo.deploy.quantize import quantize_int8
    from seedzoo.evaluation.int8 import compare_knn

    model = seedzoo.load(folder).eval()
    input_size = list(model.pretrained_cfg["input_size"])
    with tempfile.TemporaryDirectory(prefix="seedzoo-study-") as tmp:
        fp32 = export_onnx(model, Path(tmp) / "model.onnx", model_id=folder).path
        int8 = quantize_int8(fp32, Path(tmp) / "model.int8.onnx").path
        latency = benchmark_latency(model, fp32, int8_path=int8, batch_sizes=(1,),
                                    threads=threads, budget_s=3.0)
        knn = compare_knn(fp32, int8, "fashion-mnist")
    p50 = {(r["backend"], r["precision"]): r["p50_ms"] for r in latency["results"]}
    row = {**params_and_flops(model, input_size), "input_size": input_size,
           "latency_ms": {"torch_fp32_b1": p50[("torch", "fp32")],
                          "onnx_fp32_b1": p50[("onnxruntime", "fp32")],
                          "onnx_int8_b1": p50[("onnxruntime", "int8")]},
           "int8_accuracy_drop": {f"knn_top1@{knn['k']}": -knn["int8_minus_fp32_points"] / 100}}
    return {"row": row, "latency": latency, "int8_knn": knn}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="these runs (and their teachers)")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/study"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/study"))
    parser.add_argument("--threads", type=int, default=1, help="threads of the latency figures")
    parser.add_argument("--transfer", nargs="+", default=["digits"], metavar="DATASET",
                        help="datasets of the frozen-encoder transfer (k-NN, linear), e.g. digits "
                        "imagefolder:/data/flowers (default: digits)")
    parser.add_argument("--defer-finetune", action="store_true",
                        help="leave the fine-tuning evaluations (the slowest) to a later rerun")
    parser.add_argument("--list", action="store_true", help="print each run's command and stop")
    parser.add_argument("--summary-only", action="store_true",
                        help="rebuild summary.json from the result JSONs and stop")
    parser.add_argument("--catalog", action="store_true",
                        help="retrain the teachers and SEED / SimCLRv2-10%% students whose folders "
                        "are gone, then add them to the catalog, with cards in --cards")
    parser.add_argument("--cards", type=Path, default=Path("model_cards"))
    parser.add_argument("--readme", type=Path,
                        help="with --catalog: fill this file's <!-- catalog --> block with "
                        "`seedzoo list --markdown`")
    args = parser.parse_args(argv)
    study = Study(BUDGETS[args.budget], args.runs_dir, args.results, threads=args.threads,
                  transfers=tuple(args.transfer))
    unknown = set(args.only or ()) - set(study.by_name)
    if unknown:
        parser.error(f"no run named {', '.join(sorted(unknown))}; --list shows them")
    if args.list:
        for run in study.runs:
            print(f"{run.name}:\n  {shlex.join(train_command(run, args.runs_dir))}")
        return 0
    args.results.mkdir(parents=True, exist_ok=True)
    if not args.summary_only:
        study.pixels()
        selected = [study.by_name[name] for name in args.only] if args.only else study.runs
        rebuilt = study.catalog_candidates() if args.catalog else []
        for run in study.needed(selected, folders=[run for run in rebuilt if run in selected]):
            print(f"== {run.name}, {time.strftime('%H:%M:%S')}", flush=True)
            study.train(run)
            for network in run.networks:
                study.evaluate(run, network, finetune=not args.defer_finetune)
            study.write_summary()
    print(f"Wrote {study.write_summary()}")
    if args.catalog:
        print("Catalog:", ", ".join(study.add_to_catalog(args.cards)) or "no finished run yet")
        if args.readme:
            from seedzoo.files import replace_marked_block
            from seedzoo.zoo.catalog import format_markdown, list_models

            replace_marked_block(args.readme, "catalog", format_markdown(list_models()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

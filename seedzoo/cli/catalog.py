"""`seedzoo catalog add`: add a catalog entry from a real run and write its model card."""

from __future__ import annotations

from seedzoo.cli._arguments import LibraryDefault, add_command, output_folder


def register(subparsers) -> None:
    parser = add_command(subparsers, __name__, help="maintain the catalog")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add", help="add or replace an entry from a real run and regenerate its model card",
        description="Figures are read from the evaluation (and benchmark) JSONs, never typed. "
        "Without --revision the model is also published to the local cache.")
    add.add_argument("name", metavar="NAME")
    add.add_argument("folder", metavar="FOLDER", help="encoder folder, or a run folder with one")
    add.add_argument("--eval", action="append", required=True, dest="evaluations",
                     metavar="EVAL_JSON", help="evaluation JSON of `seedzoo eval` (repeatable)")
    add.add_argument("--bench", help="latency JSON of `seedzoo bench`")
    add.add_argument("--summary", help="run summary JSON (default: found in the run folder)")
    add.add_argument("--command", help="the command that rebuilds it (default: from the summary, "
                     "or `seedzoo train` on the recipe saved beside the card)")
    add.add_argument("--recipe", help="the recipe file it was trained with")
    add.add_argument("--repo-id", help="hub repo it is published as (default seedzoo/NAME)")
    add.add_argument("--revision", help="the published commit sha")
    add.add_argument("--endpoint", help="the hub's URL when it is not huggingface.co")
    add.add_argument("--public", action="store_true", help="it is published on a public hub")
    add.add_argument("--plot", metavar="IMAGE",
                     help="an image to show in the card (copied beside it), e.g. a study's plot")
    add.add_argument("--catalog", help="catalog file (default: $SEEDZOO_CATALOG or the package's)")
    add.add_argument("--cards", metavar="DIR", type=output_folder,
                     default=LibraryDefault("seedzoo.zoo.catalog:DEFAULT_CARDS_DIR"),
                     help="model card folder, relative to the current folder (default: "
                     "%(default)s, as in the repository root)")
    add.set_defaults(func=run)


def run(args) -> int:
    from seedzoo.zoo.catalog import add_entry, format_table

    entry = add_entry(args.name, args.folder, args.evaluations, bench=args.bench,
                      run=args.summary, repo_id=args.repo_id, revision=args.revision,
                      endpoint=args.endpoint, public=args.public, command=args.command,
                      recipe=args.recipe, catalog=args.catalog, cards_dir=args.cards,
                      plot=args.plot)
    print(format_table([entry]))
    print(f"model card: {entry.card}")
    return 0

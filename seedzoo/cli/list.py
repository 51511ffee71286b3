"""`seedzoo list`: the catalog's models, as a table or JSON."""

from __future__ import annotations

from seedzoo.cli._arguments import LibraryDefault, add_command


def register(subparsers) -> None:
    parser = add_command(
        subparsers, __name__, help="the models seedzoo trained and evaluated (the catalog)",
        description="Name, architecture, method, teacher, parameters, input size, k-NN and "
        "linear top-1 per evaluated dataset, ONNX latency and where each model is published.")
    parser.add_argument("pattern", nargs="?",
                        default=LibraryDefault("seedzoo.zoo.catalog:list_models", "pattern"),
                        help="name filter, e.g. 'seed-*' (default: %(default)s)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the entries as JSON")
    output.add_argument("--markdown", action="store_true",
                        help="print a Markdown table, names linked to their cards")
    parser.set_defaults(func=run)


def run(args) -> int:
    import json

    from seedzoo.zoo.catalog import format_markdown, format_table, list_models

    entries = list_models(args.pattern)
    if not entries and not args.json and list_models():
        print(f"No catalog model matches {args.pattern!r}; `seedzoo list` shows all "
              f"{len(list_models())}.")
        return 1
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
    elif args.markdown:
        print(format_markdown(entries), end="")
    else:
        print(format_table(entries))
    return 0

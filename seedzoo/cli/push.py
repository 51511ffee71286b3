"""`seedzoo push`: publish an encoder folder to a Hub or the local cache."""

from __future__ import annotations

import os

from seedzoo.cli._arguments import LibraryDefault, add_command

_TO_HELP = ("where to publish: 'hub' (the --endpoint hub, huggingface.co by default), 'cache' "
            "(the local Hugging Face cache, nothing leaves the machine) or 'auto' (the hub when "
            "an endpoint and a token are given, by flag or HF_ENDPOINT/HF_TOKEN, else the cache)")


def register(subparsers) -> None:
    parser = add_command(
        subparsers, __name__,
        help="publish an encoder folder (or run folder) to a hub or the local cache",
        description="Publish config.json, model.safetensors and README.md of an encoder folder "
        "as REPO_ID, in the layout timm and seedzoo.load read.")
    parser.add_argument("folder", metavar="FOLDER", help="encoder folder, or a run folder with one")
    parser.add_argument("repo_id", metavar="REPO_ID",
                        help="org/name (hf-hub:org/name too; the branch goes in --revision)")
    parser.add_argument("--to", choices=("hub", "cache", "auto"), default="hub", help=_TO_HELP)
    parser.add_argument("--endpoint", help="hub URL (default: HF_ENDPOINT or huggingface.co)")
    parser.add_argument("--token", help="hub token with write access (default: HF_TOKEN or login)")
    parser.add_argument("--revision", default=LibraryDefault("seedzoo.zoo.hub:DEFAULT_BRANCH"),
                        help="branch to publish to (created if needed; default %(default)s)")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--message", help="commit message")
    card = parser.add_argument_group("model card (regenerated when any of these is given)")
    card.add_argument("--summary", help="run summary JSON (default: found in the run folder)")
    card.add_argument("--eval", action="append", default=[], dest="evaluations",
                      metavar="EVAL_JSON", help="evaluation JSON of `seedzoo eval` (repeatable)")
    card.add_argument("--bench", help="latency JSON of `seedzoo bench`")
    parser.add_argument("--check", action="store_true",
                        help="load it back by its pinned hub id and check the features match")
    parser.set_defaults(func=run)


def run(args) -> int:
    from seedzoo.zoo.card import write_card
    from seedzoo.zoo.hub import Publication, publish, publish_target, publish_to_cache, push
    from seedzoo.zoo.loading import check_published

    repo_id = publish_target(args.repo_id)
    if args.summary or args.evaluations or args.bench:
        path = write_card(args.folder, repo_id=repo_id, run=args.summary,
                          evaluations=args.evaluations, bench=args.bench)
        print(f"model card written: {path}")
    endpoint, token = args.endpoint, args.token
    if args.to == "hub":
        info = push(args.folder, repo_id, endpoint=endpoint, token=token,
                    revision=args.revision, private=args.private, commit_message=args.message)
        publication = Publication(repo_id, info.oid, "hub", info.commit_url)
    elif args.to == "cache":
        publication = publish_to_cache(args.folder, repo_id, revision=args.revision)
    else:
        endpoint = endpoint or os.environ.get("HF_ENDPOINT")
        token = token or os.environ.get("HF_TOKEN")
        if not (endpoint and token):
            print("no hub endpoint and token given (--endpoint/--token or HF_ENDPOINT/HF_TOKEN): "
                  "publishing to the local cache")
        publication = publish(args.folder, repo_id, endpoint=endpoint, token=token,
                              revision=args.revision, private=args.private,
                              commit_message=args.message)
    print(f"published {repo_id} to the {publication.location}: revision "
          f"{publication.revision} ({publication.url})")
    print(f'load it with: seedzoo.load("{publication.spec}")'
          + ("   (offline: HF_HUB_OFFLINE=1)" if publication.location == "local cache" else ""))
    if args.check:
        check_published(publication, args.folder, endpoint=endpoint, token=token)
        print(f"check: seedzoo.load(\"{publication.spec}\") gives the same features as "
              f"{args.folder}")
    return 0

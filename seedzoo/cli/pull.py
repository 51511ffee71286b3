"""`seedzoo pull`: download a hub model or catalog entry into the Hugging Face cache."""

from __future__ import annotations

from seedzoo.cli._arguments import add_command, output_folder


def register(subparsers) -> None:
    parser = add_command(
        subparsers, __name__, help="download a hub model (or catalog entry) into the cache",
        description="Download config.json, model.safetensors and README.md of SPEC into the "
        "Hugging Face cache (HF_HUB_CACHE), so that it also loads offline.")
    parser.add_argument("spec", metavar="SPEC", help="hf-hub:org/name[@revision] or a catalog name")
    parser.add_argument("--revision", help="branch, tag or commit sha")
    parser.add_argument("--endpoint", help="hub URL (default: HF_ENDPOINT or huggingface.co)")
    parser.add_argument("--token", help="hub token for private repos")
    parser.add_argument("--out", type=output_folder, help="also copy the files into this folder")
    parser.add_argument("--force", action="store_true", help="download again even if cached")
    parser.set_defaults(func=run)


def run(args) -> int:
    import shutil
    from pathlib import Path

    from seedzoo.zoo.catalog import download_entry, get_entry
    from seedzoo.zoo.hub import HUB_PREFIX, download, parse_hub_id

    hub = dict(endpoint=args.endpoint, token=args.token, force_download=args.force)
    if args.spec.startswith(HUB_PREFIX):
        repo_id, revision = parse_hub_id(args.spec)
        snapshot = download(repo_id, revision=args.revision or revision, **hub)
    else:
        entry = get_entry(args.spec)
        repo_id, snapshot = entry.hub["repo_id"], download_entry(entry, revision=args.revision,
                                                                  **hub)
    print(f"{repo_id} at commit {snapshot.name}: {snapshot}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for file in sorted(snapshot.iterdir()):
            shutil.copyfile(file, out / file.name)
        print(f"copied to {out} (loads with seedzoo.load(\"{out}\") or timm's local-dir:{out})")
    return 0

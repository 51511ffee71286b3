"""What produced a result: the installed package versions and the seedzoo source commit.

Training summaries, evaluation reports and latency benchmarks record :func:`package_versions`.
"""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path

__version__ = "0.1.0"

PACKAGES = ("seedzoo", "torch", "torchvision", "timm", "numpy", "scikit-learn", "safetensors",
            "huggingface_hub", "onnx", "onnxruntime")


@functools.lru_cache(maxsize=1)
def source_commit() -> str | None:
    """The git commit of the seedzoo source in use, with ``+dirty`` when tracked files have
    uncommitted changes; None when seedzoo is not run from a git checkout."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                                  timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--short=12", "HEAD")
    if not commit:
        return None
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def package_versions() -> dict[str, str]:
    """Python, the installed versions of :data:`PACKAGES`, and ``seedzoo_commit`` when known."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    commit = source_commit()
    if commit:
        versions["seedzoo_commit"] = commit
    return versions

import subprocess
from pathlib import Path

import pytest

import seedzoo
from seedzoo.provenance import package_versions, source_commit


def test_versions_name_the_packages_and_the_source_commit():
    versions = package_versions()
    assert {"python", "seedzoo", "torch", "timm", "onnxruntime"} <= set(versions)
    root = Path(seedzoo.__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("seedzoo is not run from a git checkout here")
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert head.startswith(source_commit().removesuffix("+dirty"))
    assert versions["seedzoo_commit"] == source_commit()

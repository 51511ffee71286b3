"""seedzoo: small self-supervised image encoders made by distillation.

The one-liners::

    import seedzoo
    model = seedzoo.load("timm:resnet18")      # or a catalog name, hf-hub:org/name, a folder
    transform = seedzoo.transform_for(model)   # PIL image -> normalised tensor
    seedzoo.list_models()                      # what the zoo has trained and evaluated
"""

from importlib import import_module

from seedzoo.provenance import __version__

# Public names, imported on first use so that `import seedzoo` (and the CLI's --help) stays light.
_LAZY = {
    "load": "seedzoo.zoo",
    "list_models": "seedzoo.zoo",
    "save_pretrained": "seedzoo.zoo",
    "transform_for": "seedzoo.data.transforms",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'seedzoo' has no attribute {name!r}")

"""Published models: the timm/Hub folder format, loading by spec, hub publish/pull, the catalog."""

from seedzoo.zoo.loading import load
from seedzoo.zoo.pretrained import create_encoder, load_pretrained_folder, save_pretrained

__all__ = ["load", "create_encoder", "load_pretrained_folder", "save_pretrained"]

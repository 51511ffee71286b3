import numpy as np
import pytest
import torch
from PIL import Image

from seedzoo.errors import SeedzooError
from seedzoo.training.views import blur_kernel_size, build_views, list_views

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def gray_image(size=28, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    return Image.fromarray(pixels, mode="L")


@pytest.mark.parametrize("name, count", [("moco_v2", 2), ("simclr", 2), ("single", 1),
                                         ("multicrop", 8), ("seed_small_patch", 7),
                                         ("dino", 10)])
def test_recipes_give_normalised_rgb_views_of_the_asked_size(name, count):
    views = build_views(name, image_size=32, mean=MEAN, std=STD)(gray_image())
    assert len(views) == count
    assert all(v.dtype == torch.float32 and v.shape[0] == 3 for v in views)
    assert views[0].shape == (3, 32, 32)
    assert views[-1].shape[-1] == (32 if count <= 2 else round(32 * 96 / 224))


def test_multicrop_sizes_and_counts_are_options():
    views = build_views("multicrop", image_size=64, mean=MEAN, std=STD, global_crops=1,
                        small_crops=3, small_size=24)(gray_image(48))
    assert [tuple(v.shape[-2:]) for v in views] == [(64, 64)] + [(24, 24)] * 3


def test_dino_views_are_two_global_then_local_views_that_refuse_per_view_options():
    views = build_views("dino", image_size=32, mean=MEAN, std=STD, local_crops=3,
                        local_size=16)(gray_image())
    assert [v.shape[-1] for v in views] == [32, 32, 16, 16, 16]
    with pytest.raises(SeedzooError, match="blur_probability per view"):
        build_views("dino", image_size=32, mean=MEAN, std=STD, blur_probability=0.5)


def test_views_depend_only_on_torch_rng():
    recipe = build_views("moco_v2", image_size=40, mean=MEAN, std=STD)
    image = gray_image()
    torch.manual_seed(3)
    first = recipe(image)
    torch.manual_seed(3)
    again = recipe(image)
    torch.manual_seed(4)
    other = recipe(image)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])
    assert not torch.equal(first[0], first[1])  # two different views of one image


def test_normalisation_uses_mean_and_std():
    white = Image.new("RGB", (30, 30), (255, 255, 255))
    view, = build_views("single", image_size=30, mean=MEAN, std=STD, jitter_probability=0,
                        grayscale_probability=0, blur_probability=0)(white)
    assert torch.allclose(view, torch.full_like(view, (1 - 0.5) / 0.25))


def test_blur_kernel_scales_with_the_image():
    assert blur_kernel_size(224) == 23 and blur_kernel_size(28) == 3 and blur_kernel_size(64) == 7
    assert all(blur_kernel_size(s) % 2 == 1 for s in range(8, 300))


def test_unknown_recipe_or_option_is_a_clear_error():
    assert "moco_v2" in list_views()
    with pytest.raises(SeedzooError, match="Unknown view recipe"):
        build_views("byol", image_size=32, mean=MEAN, std=STD)
    with pytest.raises(SeedzooError, match="Bad options"):
        build_views("moco_v2", image_size=32, mean=MEAN, std=STD, blurr=0.5)

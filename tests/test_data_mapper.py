"""read_image for awkward files, the mapper's checks and augmentation consistency."""

import numpy as np
import pytest
import torch
from PIL import Image

from solov2.config import get_cfg
from solov2.data import DatasetMapper, ImageReadError, annotations_to_instances, read_image
from solov2.structures import masks_to_boxes


def test_read_image_modes(tmp_path):
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 0] = 200  # red
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    bgr = read_image(str(tmp_path / "rgb.png"), "BGR")
    assert bgr.shape == (6, 8, 3) and bgr.dtype == np.uint8 and bgr[0, 0].tolist() == [0, 0, 200]
    assert read_image(str(tmp_path / "rgb.png"), "RGB")[0, 0].tolist() == [200, 0, 0]

    Image.fromarray(np.full((6, 8), 77, np.uint8), "L").save(tmp_path / "gray.png")
    assert read_image(str(tmp_path / "gray.png")).tolist() == np.full((6, 8, 3), 77).tolist()

    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[..., 1] = 255
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0  # transparent pixel composited on white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = read_image(str(tmp_path / "rgba.png"), "RGB")
    assert out.shape == (6, 8, 3) and out[1, 1].tolist() == [0, 255, 0] and out[0, 0].tolist() == [255, 255, 255]

    pal = Image.fromarray(np.full((6, 8), 1, np.uint8), "P")
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    pal.save(tmp_path / "pal.png")
    assert read_image(str(tmp_path / "pal.png"), "RGB")[2, 2].tolist() == [10, 20, 30]

    Image.fromarray(np.full((6, 8), 65535, np.uint16)).save(tmp_path / "deep.png")
    deep = read_image(str(tmp_path / "deep.png"))
    assert deep.dtype == np.uint8 and deep.shape == (6, 8, 3) and deep.max() == 255


def test_read_image_honours_exif_orientation(tmp_path):
    img = Image.fromarray(np.zeros((4, 10, 3), np.uint8))  # 10 wide, 4 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    assert read_image(str(tmp_path / "rot.jpg")).shape == (10, 4, 3)


def test_corrupt_and_missing_images_named(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(ImageReadError, match="bad.jpg"):
        read_image(str(tmp_path / "bad.jpg"))
    with pytest.raises(ImageReadError, match="gone.png.*does not exist"):
        read_image(str(tmp_path / "gone.png"))

    cfg = get_cfg()
    d = {"file_name": str(tmp_path / "bad.jpg"), "height": 4, "width": 4, "image_id": 1, "annotations": []}
    with pytest.raises(ImageReadError, match="bad.jpg"):
        DatasetMapper(cfg, True)(d)
    cfg.DATALOADER.SKIP_CORRUPT_IMAGES = True
    mapper = DatasetMapper(cfg, True)
    assert mapper(d) is None and mapper(d) is None
    assert mapper.num_skipped == 1  # distinct files: training meets the same file every epoch
    assert mapper(dict(d, file_name=str(tmp_path / "gone.png"))) is None
    assert mapper.num_skipped == 2 and mapper.skipped_files == {d["file_name"], str(tmp_path / "gone.png")}


def test_size_mismatch_names_file(tmp_path):
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "a.png")
    d = {"file_name": str(tmp_path / "a.png"), "height": 7, "width": 8, "image_id": 1, "annotations": []}
    with pytest.raises(ValueError, match=r"a.png.*8x6.*8x7"):
        DatasetMapper(get_cfg(), False)(d)


def test_resize_and_flip_apply_to_image_and_masks_alike(tmp_path):
    img = np.zeros((40, 60, 3), np.uint8)
    img[5:15, 2:12] = 255  # a white square near the top-left
    Image.fromarray(img).save(tmp_path / "sq.png")
    seg = [[2, 5, 12, 5, 12, 15, 2, 15]]
    d = {"file_name": str(tmp_path / "sq.png"), "height": 40, "width": 60, "image_id": 1,
         "annotations": [{"category_id": 0, "segmentation": seg, "iscrowd": 0}]}
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN = (80,)
    cfg.INPUT.MAX_SIZE_TRAIN = 1000
    flips = set()
    np.random.seed(0)
    for _ in range(12):
        out = DatasetMapper(cfg, True)(d)
        image, inst = out["image"], out["instances"]
        assert image.shape == (3, 80, 120)
        mask = inst.gt_masks.tensor[0]
        bright = image[0] > 127
        # the mask covers the white square wherever it went (same resize, same flip)
        assert (mask & bright).sum() >= 0.9 * bright.sum() and (mask & ~bright).sum() <= 0.1 * mask.sum()
        x1 = float(inst.gt_boxes.tensor[0, 0])
        flips.add(x1 > 60)
    assert flips == {True, False}  # both orientations seen


def test_range_sampling_and_test_mapper(tmp_path):
    Image.fromarray(np.zeros((50, 100, 3), np.uint8)).save(tmp_path / "w.png")
    d = {"file_name": str(tmp_path / "w.png"), "height": 50, "width": 100, "image_id": 3,
         "annotations": [{"category_id": 0, "segmentation": [[0, 0, 10, 0, 10, 10]], "iscrowd": 0}]}
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN = (20, 30)
    cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING = "range"
    sizes = {DatasetMapper(cfg, True)(d)["image"].shape[1] for _ in range(30)}
    assert sizes <= set(range(20, 31)) and len(sizes) > 3
    cfg.INPUT.MIN_SIZE_TEST = 25
    cfg.INPUT.MAX_SIZE_TEST = 40
    out = DatasetMapper(cfg, False)(d)
    assert out["image"].shape == (3, 20, 40) and "instances" not in out and out["height"] == 50


def test_annotations_to_instances_boxes_are_the_masks_tight_boxes():
    rng = np.random.RandomState(0)
    h, w = 37, 53
    annos = []
    for k in range(40):
        m = np.zeros((h, w), bool)
        if k % 7:  # every 7th mask is empty and must be dropped
            y, x = rng.randint(0, h), rng.randint(0, w)
            m[y : y + rng.randint(1, h), x : x + rng.randint(1, w)] = True
            m &= rng.rand(h, w) < 0.5
        annos.append({"category_id": k % 3, "segmentation": m, "iscrowd": int(k % 11 == 5)})
    inst = annotations_to_instances(annos, (h, w))
    kept = [a for a in annos if not a["iscrowd"] and a["segmentation"].any()]
    assert len(inst) == len(kept) and inst.image_size == (h, w)
    assert torch.equal(inst.gt_masks.tensor, torch.from_numpy(np.stack([a["segmentation"] for a in kept])))
    assert inst.gt_classes.tolist() == [a["category_id"] for a in kept]
    assert inst.gt_boxes.tensor.dtype == torch.float32
    assert torch.equal(inst.gt_boxes.tensor, masks_to_boxes(inst.gt_masks.tensor))

    empty = annotations_to_instances([{"category_id": 1, "segmentation": np.zeros((h, w), bool)}], (h, w))
    assert len(empty) == 0 and empty.gt_boxes.tensor.shape == (0, 4) and empty.gt_masks.tensor.shape == (0, h, w)

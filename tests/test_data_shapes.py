"""The synthetic shapes dataset: deterministic, COCO-valid, loadable through the normal path."""

import filecmp
import json
import os

import numpy as np
import pytest
import pycocotools.mask as mask_util

from solov2.data import DatasetCatalog, MetadataCatalog, load_coco_json
from solov2.data.datasets import ensure_shapes_split, generate_shapes


def test_same_seed_gives_identical_bytes(tmp_path):
    a = generate_shapes(str(tmp_path / "a"), num_images=6, seed=5)
    b = generate_shapes(str(tmp_path / "b"), num_images=6, seed=5)
    c = generate_shapes(str(tmp_path / "c"), num_images=6, seed=6)
    assert filecmp.cmp(a, b, shallow=False)
    for f in sorted(os.listdir(tmp_path / "a" / "images")):
        assert filecmp.cmp(tmp_path / "a" / "images" / f, tmp_path / "b" / "images" / f, shallow=False)
    assert not filecmp.cmp(a, c, shallow=False)


def test_generated_split_loads_with_visible_masks(tmp_path):
    json_file, image_root = ensure_shapes_split(str(tmp_path), "mini", num_images=20, seed=0)
    assert ensure_shapes_split(str(tmp_path), "mini", 20, 0) == (json_file, image_root)  # reused, not regenerated
    dicts = load_coco_json(json_file, image_root, "shapes_mini_test")
    assert len(dicts) == 20
    assert MetadataCatalog.get("shapes_mini_test").thing_classes == ["circle", "triangle", "rectangle"]
    counts = [len(d["annotations"]) for d in dicts]
    assert 1 <= min(counts) and max(counts) <= 10
    areas = [a["area"] for d in dicts for a in d["annotations"]]
    assert min(areas) < 400 and max(areas) > 2000  # tiny to large
    classes = {a["category_id"] for d in dicts for a in d["annotations"]}
    assert classes == {0, 1, 2}
    # visible parts of one image never overlap (later shapes occlude earlier ones)
    d = dicts[0]
    masks = [mask_util.decode({"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode()})
             for a in d["annotations"]]
    assert np.stack(masks).sum(0).max() <= 1
    data = json.loads(open(json_file).read())
    assert all(a["area"] == int(mask_util.area({"size": a["segmentation"]["size"],
                                                 "counts": a["segmentation"]["counts"].encode()}))
               for a in data["annotations"])


def test_builtin_shapes_registered(tmp_path, monkeypatch):
    assert "shapes_train" in DatasetCatalog and "shapes_val" in DatasetCatalog
    assert MetadataCatalog.get("shapes_val").thing_classes == ["circle", "triangle", "rectangle"]


@pytest.mark.slow
def test_visualize_data_tool(tmp_path, monkeypatch):
    import importlib.util
    from pathlib import Path

    monkeypatch.setenv("SOLOV2_DATASETS", str(tmp_path / "root"))
    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("visualize_data", repo / "tools" / "visualize_data.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    cfg_file = str(repo / "configs" / "quickstart" / "shapes_R18.yaml")
    # a small custom split through the config route keeps this fast
    json_file, image_root = ensure_shapes_split(str(tmp_path / "root"), "tiny", num_images=4, seed=3)
    opts = ["DATASETS.COCO_INSTANCES", str((("shapes_tiny_vis", json_file, image_root),)),
            "DATASETS.TRAIN", "('shapes_tiny_vis',)", "SOLVER.IMS_PER_BATCH", "2"]
    for source in ("annotation", "dataloader"):
        out = tmp_path / source
        assert tool.main(["--config-file", cfg_file, "--source", source, "--output-dir", str(out), "--num", "3"] + opts) == 0
        pngs = sorted(out.glob("*.png"))
        assert len(pngs) == 3


def test_split_generated_with_other_parameters_is_replaced(tmp_path, caplog):
    json_file, image_root = ensure_shapes_split(str(tmp_path), "s", num_images=3, seed=0)
    # A new dataset size (or a split written before the parameters were recorded) regenerates the split in place.
    with caplog.at_level("WARNING", logger="solov2"):
        assert ensure_shapes_split(str(tmp_path), "s", num_images=5, seed=0) == (json_file, image_root)
    assert "regenerating" in caplog.text
    data = json.loads(open(json_file).read())
    assert len(data["images"]) == len(os.listdir(image_root)) == 5
    assert data["info"]["generated_with"]["num_images"] == 5
    data["info"].pop("generated_with")
    with open(json_file, "w") as f:
        json.dump(data, f)
    ensure_shapes_split(str(tmp_path), "s", num_images=5, seed=0)
    assert json.loads(open(json_file).read())["info"]["generated_with"]["num_images"] == 5
    # The same seed's first images are the same whatever the split's size, and no temporary folder is left.
    small = generate_shapes(str(tmp_path / "three"), num_images=3, seed=0)
    assert json.loads(open(small).read())["images"] == data["images"][:3]
    assert sorted(os.listdir(tmp_path / "shapes")) == ["s"]


def test_objects_range_per_split(tmp_path):
    # The default range (1..10 shapes) keeps every split generated before the range existed valid and identical.
    a = generate_shapes(str(tmp_path / "a"), num_images=5, seed=4)
    b = generate_shapes(str(tmp_path / "b"), num_images=5, seed=4, max_objects=10, min_objects=1)
    assert filecmp.cmp(a, b, shallow=False)
    # A denser split: every image draws at least min_objects shapes (some may end up hidden by later ones).
    json_file, _ = ensure_shapes_split(str(tmp_path), "dense", num_images=12, seed=4, objects=(6, 9))
    data = json.loads(open(json_file).read())
    assert data["info"]["generated_with"]["min_objects"] == 6 and data["info"]["generated_with"]["max_objects"] == 9
    per_image = [sum(a["image_id"] == img["id"] for a in data["annotations"]) for img in data["images"]]
    assert max(per_image) <= 9 and np.mean(per_image) > 4
    sparse = json.loads(open(ensure_shapes_split(str(tmp_path), "sparse", num_images=12, seed=4)[0]).read())
    assert len(data["annotations"]) > 1.3 * len(sparse["annotations"])
    with pytest.raises(ValueError, match="min_objects"):
        generate_shapes(str(tmp_path / "c"), num_images=1, seed=0, max_objects=3, min_objects=4)

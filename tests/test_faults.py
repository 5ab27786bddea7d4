"""Faults a user meets: output paths that would overwrite inputs, a full disk or a kill -9 while a checkpoint is
written, unreadable images during evaluation and visualisation, and INPUT.CROP. Through the real command lines."""

import errno
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from solov2.checkpoint import Checkpointer
from solov2.config import get_cfg
from solov2.data import DatasetMapper
from solov2.data.datasets import ensure_shapes_split
from solov2.data.transforms import RandomCrop
from solov2.utils.errors import CheckpointError, CheckpointSaveError, ConfigError, OutputPathError
from solov2.utils.run_lock import LOCK_NAME, lock_output_dir, release_output_dir

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "quickstart" / "shapes_R18.yaml"
TRAIN_NET = REPO / "tools" / "train_net.py"
DEMO = REPO / "demo" / "demo.py"
VISUALIZE = REPO / "tools" / "visualize_data.py"


def run(cmd, timeout=300):
    """Run a command line in the repository; returns (exit status, stdout, stderr lines)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("SOLOV2_DEBUG", None)
    r = subprocess.run([sys.executable, *map(str, cmd)], capture_output=True, text=True, timeout=timeout,
                       cwd=str(REPO), env=env)
    return r.returncode, r.stdout, r.stderr.splitlines()


def digests(folder: Path):
    """{relative path: sha256} of every file under `folder`."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults_data")
    return ensure_shapes_split(str(root), "faults", num_images=4, seed=13)


def _train_args(tiny_split, out_dir, *extra):
    json_file, image_root = tiny_split
    return [TRAIN_NET, "--config-file", CONFIG, "--register-coco", "fault_shapes", json_file, image_root, *extra,
            "DATASETS.TRAIN", "('fault_shapes',)", "DATASETS.TEST", "()", "SOLVER.IMS_PER_BATCH", "2",
            "SOLVER.MAX_ITER", "6", "SOLVER.WARMUP_ITERS", "2", "SOLVER.STEPS", "(4,)", "SOLVER.CHECKPOINT_PERIOD", "3",
            "DATALOADER.NUM_WORKERS", "0", "INPUT.MIN_SIZE_TRAIN", "(64,)", "SEED", "1", "OUTPUT_DIR", out_dir]


# Runs tools/train_net.py with torch.save failing on its 2nd call (the checkpoint after iteration 5): "enospc" lets
# the real torch.save write into a file whose writes fail once 4 kB are written, as on a full disk; "kill" writes
# part of the file and then kills the process with SIGKILL.
FAULTY_TRAIN_NET = """
import errno, os, runpy, signal, sys
import torch

mode, train_net = sys.argv[1], sys.argv[2]
real_save, calls = torch.save, []


class FullDisk:
    def __init__(self, f):
        self.f, self.n = f, 0

    def write(self, b):
        self.n += len(b)
        if self.n > 4096:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.f.write(b)

    def flush(self):
        self.f.flush()


def faulty_save(obj, f, *args, **kwargs):
    calls.append(1)
    if len(calls) != 2:
        return real_save(obj, f, *args, **kwargs)
    if mode == "kill":
        f.write(b"half a checkpoint")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, FullDisk(f), *args, **kwargs)


torch.save = faulty_save
sys.argv = sys.argv[2:]
runpy.run_path(train_net, run_name="__main__")
"""


@pytest.mark.slow
def test_disk_full_during_a_checkpoint_save_keeps_the_previous_one(tiny_split, tmp_path):
    script = tmp_path / "faulty_train_net.py"
    script.write_text(FAULTY_TRAIN_NET)
    out = tmp_path / "out"
    code, stdout, err = run([script, "enospc", *_train_args(tiny_split, out)])
    assert code == 1, err
    assert len(err) == 1, err  # the one ERROR line, no traceback, nothing printed twice
    # The facts the message must carry: what failed, why, and which checkpoint --resume continues from.
    assert err[0].startswith("ERROR: ") and f"'{out}/model_0000005.pth'" in err[0], err
    assert "no space left on device" in err[0] and f"'{out}/model_0000002.pth' is intact" in err[0], err
    assert sorted(p.name for p in out.glob("*.pth")) == ["model_0000002.pth"]
    assert not list(out.glob(".*.tmp")) and (out / "last_checkpoint").read_text() == "model_0000002.pth"
    model = torch.nn.Module()
    extra = Checkpointer(model, str(out)).resume_or_load("", resume=True)  # loadable, with its iteration
    assert extra["iteration"] == 2
    assert "Traceback" in (out / "log.txt").read_text()


@pytest.mark.slow
def test_kill_during_a_checkpoint_save_then_resume(tiny_split, tmp_path):
    script = tmp_path / "faulty_train_net.py"
    script.write_text(FAULTY_TRAIN_NET)
    out = tmp_path / "out"
    code, _, _ = run([script, "kill", *_train_args(tiny_split, out)])
    assert code == -9
    leftovers = [p.name for p in out.glob(".model_0000005.pth.*.tmp")]
    assert len(leftovers) == 1 and (out / LOCK_NAME).exists()  # what a killed save and a killed run leave
    assert (out / "last_checkpoint").read_text() == "model_0000002.pth"

    code, stdout, err = run(_train_args(tiny_split, out, "--resume"))
    assert code == 0, stdout[-3000:] + "\n".join(err)
    log = (out / "log.txt").read_text()
    assert f"Removed 1 temporary file(s) left in {out} by a checkpoint save that was interrupted" in log
    assert leftovers[0] in log and "Taking over OUTPUT_DIR" in log
    assert "Starting training from iteration 3" in log
    assert not list(out.glob(".*.tmp")) and not (out / LOCK_NAME).exists()
    assert {"model_0000002.pth", "model_0000005.pth", "model_final.pth"} <= {p.name for p in out.iterdir()}


def test_read_only_folder_during_save_names_the_cause(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    ck = Checkpointer(model, str(tmp_path))

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(CheckpointSaveError) as e:
        ck.save("model_0000001")
    monkeypatch.undo()
    assert str(e.value) == (f"Could not save checkpoint '{tmp_path}/model_0000001.pth': the folder is on a read-only "
                            f"file system. No earlier checkpoint was written to '{tmp_path}'.")
    assert os.listdir(tmp_path) == []


def test_bad_checkpoints_are_user_errors(tmp_path):
    model = torch.nn.Linear(2, 2)
    Checkpointer(model, str(tmp_path)).save("good")
    good = (tmp_path / "good.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pth'.*truncated or not a PyTorch checkpoint"):
        Checkpointer(torch.nn.Linear(2, 2)).load(str(tmp_path / "truncated.pth"))
    torch.save({"model": {"conv.weight": torch.zeros(3)}}, tmp_path / "other.pth")
    # BatchNorm's num_batches_tracked is in every ResNet: it does not make an unrelated checkpoint fit.
    for model in (torch.nn.Linear(2, 2), torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1), torch.nn.BatchNorm2d(1))):
        with pytest.raises(CheckpointError, match="None of the 1 parameters"):
            Checkpointer(model).load(str(tmp_path / "other.pth"))
    # Resuming with another optimizer: torch would load AdamW's state into SGD and fail at the next step.
    adamw_model = torch.nn.Linear(2, 2)
    adamw = torch.optim.AdamW(adamw_model.parameters())
    adamw_model(torch.ones(1, 2)).sum().backward()
    adamw.step()
    Checkpointer(adamw_model, str(tmp_path / "run"), optimizer=adamw).save("model_0000001")
    sgd_model = torch.nn.Linear(2, 2)
    ck = Checkpointer(sgd_model, str(tmp_path / "run"),
                      optimizer=torch.optim.SGD(sgd_model.parameters(), lr=0.1, momentum=0.9))
    with pytest.raises(CheckpointError, match=r"another optimizer.*SGD.*dampening, momentum.*SOLVER\.OPTIMIZER"):
        ck.resume_or_load("", resume=True)
    two = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    ck = Checkpointer(two[0], str(tmp_path / "run"), optimizer=torch.optim.AdamW(two.parameters()))
    with pytest.raises(CheckpointError, match="The optimizer state in .* does not fit this run"):
        ck.resume_or_load("", resume=True)
    # An unreadable last checkpoint says how to resume from an earlier one.
    (tmp_path / "run" / "model_0000001.pth").write_bytes(good[:100])
    with pytest.raises(CheckpointError, match="truncated.*last_checkpoint"):
        Checkpointer(torch.nn.Linear(2, 2), str(tmp_path / "run")).resume_or_load("", resume=True)


@pytest.mark.slow
def test_output_dir_lock_is_taken_over_from_a_dead_process(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text(f"host={os.uname().nodename}\npid={dead.pid}\nstarted=x\ncommand=y\n")
    note = lock_output_dir(str(tmp_path))
    assert note == f"Taking over OUTPUT_DIR '{tmp_path}' from a run that no longer exists (pid {dead.pid}, started x)"
    assert f"pid={os.getpid()}" in (tmp_path / LOCK_NAME).read_text()
    assert lock_output_dir(str(tmp_path)) is None  # the holder may set up again
    release_output_dir(str(tmp_path))
    assert not (tmp_path / LOCK_NAME).exists()
    (tmp_path / LOCK_NAME).write_text(f"host=another-machine\npid={os.getpid()}\n")
    with pytest.raises(OutputPathError, match="in use by a run on host another-machine .*delete"):
        lock_output_dir(str(tmp_path))


def _video(path: Path, frames: int = 3) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), 30 * i, np.uint8))
    writer.release()


@pytest.mark.slow
def test_demo_never_overwrites_its_inputs(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.RandomState(0)
    cv2.imwrite(str(photos / "a.jpg"), rng.randint(0, 255, (48, 64, 3)).astype(np.uint8))
    cv2.imwrite(str(photos / "b.png"), rng.randint(0, 255, (40, 56, 3)).astype(np.uint8))
    (photos / "a.json").write_text('{"labelme": "annotation of a.jpg"}')  # not an input, but the user's
    _video(photos / "clip.mp4")
    before = digests(photos)
    refusals = [
        (["--input", photos, "--output", photos], f"would overwrite the input '{photos}/a.jpg'"),
        (["--video-input", photos / "clip.mp4", "--output", photos],
         f"would overwrite the input video '{photos / 'clip.mp4'}'"),
    ]
    for args, message in refusals:
        code, stdout, err = run([DEMO, "--config-file", CONFIG, *args, "--opts", "INPUT.MIN_SIZE_TEST", "64"])
        assert code == 1 and len(err) == 1 and err[0].startswith("ERROR: --output") and message in err[0], err
        assert digests(photos) == before  # byte-identical, and nothing added
    # The same check, in-process, for other spellings of an input.
    demo = _demo_module()
    for argv in (["--input", f"{photos}/b.png", "--output", f"{photos}/../photos/b.png"],
                 ["--input", f"{photos}/*.png", "--output", f"{photos}/"],
                 ["--input", f"{photos}/a.jpg", "--output", f"{tmp_path}/link"]):
        if argv[-1].endswith("link"):
            os.symlink(photos, argv[-1])  # a folder that is the inputs' folder under another name
        args = demo.build_parser().parse_args(argv)
        with pytest.raises(OutputPathError, match="would overwrite the input"):
            demo.plan_outputs(demo.expand_inputs(args.input), args)
    args = demo.build_parser().parse_args(["--video-input", str(photos / "clip.mp4"), "--output", str(photos / "clip.avi")])
    with pytest.raises(OutputPathError, match="would overwrite the input video"):
        demo.plan_video_output(args)  # the video output is always .mp4
    # Into a folder beside the inputs it runs, and still leaves every input as it was.
    out = photos / "vis"
    code, stdout, err = run([DEMO, "--config-file", CONFIG, "--input", photos, "--output", out, "--json",
                             "--opts", "INPUT.MIN_SIZE_TEST", "64", "MODEL.DEVICE", "cpu"])
    assert code == 0, stdout[-2000:] + "\n".join(err)
    assert stdout.splitlines()[-1] == "Done: 2 succeeded, 0 failed"
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "a.json", "b.json", "b.png"]
    assert {k: v for k, v in digests(photos).items() if not k.startswith("vis/")} == before


def _demo_module():
    """What demo/demo.py runs: `solov2 predict`."""
    return importlib.import_module("solov2.commands.predict")


def test_demo_refuses_two_inputs_writing_one_output(tmp_path):
    demo = _demo_module()
    for d in ("d1", "d2"):
        (tmp_path / d).mkdir()
        cv2.imwrite(str(tmp_path / d / "x.jpg"), np.zeros((8, 8, 3), np.uint8))
    args = demo.build_parser().parse_args(["--input", str(tmp_path / "d1"), str(tmp_path / "d2"), "--output",
                                         str(tmp_path / "out")])
    files = demo.expand_inputs(args.input + [str(tmp_path / "d1" / "x.jpg")])  # named twice: kept once
    assert files == [str(tmp_path / "d1" / "x.jpg"), str(tmp_path / "d2" / "x.jpg")]
    with pytest.raises(OutputPathError, match=r"The inputs '.*d1/x.jpg' and '.*d2/x.jpg' would both write"):
        demo.plan_outputs(files, args)
    args.output = str(tmp_path / "out.xyz")
    with pytest.raises(ConfigError, match="OpenCV cannot write images with the extension '.xyz'"):
        demo.plan_outputs(files[:1], args)


@pytest.fixture()
def split_with_a_corrupt_image(tiny_split, tmp_path):
    json_file, image_root = tiny_split
    images = tmp_path / "images"
    images.mkdir()
    for p in Path(image_root).iterdir():
        (images / p.name).write_bytes(p.read_bytes())
    bad = sorted(images.iterdir())[1]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return json_file, str(images), bad


@pytest.mark.slow
def test_eval_only_skips_unreadable_images(split_with_a_corrupt_image, tmp_path):
    json_file, images, bad = split_with_a_corrupt_image
    common = [TRAIN_NET, "--config-file", CONFIG, "--eval-only", "--register-coco", "corrupt_val", json_file, images,
              "DATASETS.TEST", "('corrupt_val',)", "INPUT.MIN_SIZE_TEST", "64"]
    code, stdout, err = run([*common, "DATALOADER.SKIP_CORRUPT_IMAGES", "True", "DATALOADER.NUM_WORKERS", "1",
                             "OUTPUT_DIR", tmp_path / "skip"])
    assert code == 0, stdout[-3000:] + "\n".join(err)
    assert f"Skipped 1 unreadable image(s) (DATALOADER.SKIP_CORRUPT_IMAGES True): '{bad}'" in stdout
    assert "copypaste: Task: segm" in stdout
    results = json.loads((tmp_path / "skip" / "inference" / "coco_instances_results.json").read_text())
    assert isinstance(results, list)
    code, stdout, err = run([*common, "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", tmp_path / "stop"])
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith(f"ERROR: Cannot read image '{bad}'")
    assert err[0].endswith("(DATALOADER.SKIP_CORRUPT_IMAGES True skips unreadable images)")


@pytest.mark.slow
def test_visualize_data_skips_unreadable_images_and_never_overwrites(split_with_a_corrupt_image, tmp_path):
    json_file, images, bad = split_with_a_corrupt_image
    common = [VISUALIZE, "--config-file", CONFIG, "DATASETS.COCO_INSTANCES", f"(('vis_corrupt', '{json_file}', "
              f"'{images}'),)", "DATASETS.TRAIN", "('vis_corrupt',)"]
    code, stdout, err = run([common[0], *common[1:3], "--output-dir", tmp_path / "vis", *common[3:],
                             "DATALOADER.SKIP_CORRUPT_IMAGES", "True"])
    assert code == 0, stdout[-2000:] + "\n".join(err)
    assert len(list((tmp_path / "vis").iterdir())) == 3
    assert stdout.splitlines()[-1].endswith(f"Skipped 1 unreadable image(s) (DATALOADER.SKIP_CORRUPT_IMAGES True): "
                                            f"'{bad}'")
    before = digests(Path(images))
    code, stdout, err = run([common[0], *common[1:3], "--output-dir", images, *common[3:],
                             "DATALOADER.SKIP_CORRUPT_IMAGES", "True"])
    assert code == 1 and len(err) == 1 and "would overwrite the dataset image" in err[0], err
    assert digests(Path(images)) == before


def test_crop_window_for_each_type():
    rng = np.random.RandomState(0)
    for crop_type, size, check in [
        ("relative", (0.5, 0.25), lambda ch, cw: (ch, cw) == (50, 50)),
        ("relative_range", (0.5, 0.5), lambda ch, cw: 50 <= ch <= 100 and 100 <= cw <= 200),
        ("absolute", (30, 500), lambda ch, cw: (ch, cw) == (30, 200)),
        ("absolute_range", (20, 40), lambda ch, cw: 20 <= ch <= 40 and 20 <= cw <= 40),
    ]:
        crop = RandomCrop(crop_type, size, crop_instance=False)
        for _ in range(20):
            y0, x0, ch, cw = crop.get_crop(100, 200, rng)
            assert check(ch, cw), (crop_type, ch, cw)
            assert 0 <= y0 <= 100 - ch and 0 <= x0 <= 200 - cw
    box = np.array([[150.0, 80.0, 170.0, 96.0]])  # an instance near the bottom-right corner
    crop = RandomCrop("absolute", (20, 20), crop_instance=True)
    for _ in range(50):
        y0, x0, ch, cw = crop.get_crop(100, 200, rng, box)
        assert y0 <= 88 < y0 + ch and x0 <= 160 < x0 + cw  # the window always holds the instance's centre
    for bad in [("square", (0.5, 0.5)), ("relative", (0, 0.5)), ("absolute", (0.5, 0.5)), ("absolute_range", (9, 3)),
                ("relative", (0.5,))]:
        with pytest.raises(ConfigError, match="INPUT.CROP"):
            RandomCrop(*bad)


def test_mapper_crops_image_and_masks_alike(tmp_path):
    img = np.zeros((60, 80, 3), np.uint8)
    img[20:30, 40:60] = 255
    cv2.imwrite(str(tmp_path / "sq.png"), img)
    d = {"file_name": str(tmp_path / "sq.png"), "height": 60, "width": 80, "image_id": 1,
         "annotations": [{"category_id": 0, "iscrowd": 0, "segmentation": [[40, 20, 60, 20, 60, 30, 40, 30]]}]}
    cfg = get_cfg()
    cfg.merge_from_list(["INPUT.CROP.ENABLED", "True", "INPUT.CROP.TYPE", "absolute", "INPUT.CROP.SIZE", "[30, 40]",
                         "INPUT.MIN_SIZE_TRAIN", "(30,)", "INPUT.MAX_SIZE_TRAIN", "1000", "INPUT.RANDOM_FLIP", "none"])
    mapper = DatasetMapper(cfg, True)
    for seed in range(10):
        np.random.seed(seed)
        out = mapper(d)
        assert tuple(out["image"].shape) == (3, 30, 40)  # the crop, not resized further
        mask = out["instances"].gt_masks.tensor[0].numpy()
        white = out["image"][0].numpy() == 255
        assert len(out["instances"]) == 1 and mask.any() and np.array_equal(mask, white)
    cfg.INPUT.CROP.ENABLED = False
    assert tuple(DatasetMapper(cfg, True)(d)["image"].shape) == (3, 30, 40)  # 60x80 resized to short side 30


@pytest.mark.slow
def test_crop_through_visualize_data(tiny_split, tmp_path):
    json_file, image_root = tiny_split
    code, stdout, err = run([
        VISUALIZE, "--config-file", CONFIG, "--source", "dataloader", "--num", "2", "--output-dir", tmp_path,
        "DATASETS.COCO_INSTANCES", f"(('crop_vis', '{json_file}', '{image_root}'),)", "DATASETS.TRAIN",
        "('crop_vis',)", "INPUT.CROP.ENABLED", "True", "INPUT.CROP.TYPE", "absolute", "INPUT.CROP.SIZE", "[40, 80]",
        "INPUT.MIN_SIZE_TRAIN", "(40,)", "INPUT.MAX_SIZE_TRAIN", "1000", "SOLVER.IMS_PER_BATCH", "1"])
    assert code == 0, stdout[-2000:] + "\n".join(err)
    drawn = sorted(tmp_path.glob("*.png"))
    assert len(drawn) == 2 and all(cv2.imread(str(p)).shape == (40, 80, 3) for p in drawn)


def test_training_stream_replaces_unreadable_images_by_readable_ones():
    from solov2.data.build import MapDataset
    from solov2.utils.errors import ImageReadError

    items = [{"file_name": f"{i}.png"} for i in range(4)]
    seen = []

    def mapper(d):
        seen.append(d["file_name"])
        return None if d["file_name"] == "1.png" else d

    ds = MapDataset(items, mapper)
    for _ in range(50):  # a fixed-seed draw once picked the same bad image again and again
        assert ds[1]["file_name"] != "1.png"
    assert seen.count("1.png") == 50  # asked for directly each time, never drawn as a replacement
    ds = MapDataset(items, lambda d: None)
    with pytest.raises(ImageReadError, match="None of the 4 training images can be read"):
        ds[0]

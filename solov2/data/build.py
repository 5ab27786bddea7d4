"""Data loaders for training and inference, and config-driven dataset registration."""

from __future__ import annotations

import logging
import random
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Set

import numpy as np
import torch
import torch.utils.data as torchdata

from ..utils import comm
from ..utils.errors import ConfigError, DatasetFormatError, ImageReadError
from .catalog import DatasetCatalog, MetadataCatalog
from .dataset_mapper import DatasetMapper
from .datasets.coco import allow_images_outside_root, register_coco_instances
from .detection_utils import filter_empty_annotations
from .samplers import InferenceSampler, TrainingSampler

logger = logging.getLogger(__name__)


def get_detection_dataset_dicts(names: Sequence[str], filter_empty: bool = True) -> List[Dict[str, Any]]:
    """Concatenate the dataset dicts of `names`, optionally dropping images without usable annotations."""
    if isinstance(names, str):
        names = [names]
    if len(names) == 0:
        raise ConfigError("No dataset given: set DATASETS.TRAIN / DATASETS.TEST")
    dicts: List[Dict[str, Any]] = []
    for name in names:
        d = DatasetCatalog.get(name)
        if len(d) == 0:
            raise DatasetFormatError(f"Dataset '{name}' is empty{_source(name)}")
        dicts.extend(d)
    if filter_empty:
        dicts = filter_empty_annotations(dicts)
        if not dicts:
            raise DatasetFormatError(
                f"No image of {list(names)} has a usable annotation"
                + "".join(_source(n, say_annotations=True) for n in names)
            )
    return dicts


def _source(name: str, say_annotations: bool = False) -> str:
    """'; loaded from <json>' (and whether it lacks the 'annotations' key) for error messages about a dataset."""
    meta = MetadataCatalog.get(name)
    json_file = meta.get("json_file")
    if not json_file:
        return ""
    text = f"; '{name}' is loaded from '{json_file}'"
    if say_annotations and meta.get("has_annotations") is False:
        text += ", which has no 'annotations' key (an unlabelled split: use it only in DATASETS.TEST or the demo)"
    return text


class MapDataset(torchdata.Dataset):
    """Applies `mapper` to a list; when it returns None (an unreadable image), another readable item is used."""

    def __init__(self, items: List[Any], mapper: Callable[[Any], Any]) -> None:
        self.items = items
        self.mapper = mapper
        self._rng = random.Random(42)
        self._unreadable: Set[int] = set()  # never drawn again as a replacement

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int) -> Any:
        while True:
            out = self.mapper(self.items[idx])
            if out is not None:
                return out
            self._unreadable.add(idx)
            if len(self._unreadable) == len(self.items):
                raise ImageReadError(
                    f"None of the {len(self.items)} training images can be read (e.g. "
                    f"'{self.items[idx].get('file_name')}'), although DATALOADER.SKIP_CORRUPT_IMAGES is on: check "
                    "the dataset's image_root"
                )
            while idx in self._unreadable:  # readable ones remain, so this ends
                idx = self._rng.randrange(len(self.items))


class SkippedImage(NamedTuple):
    """Stands for an image the mapper could not read (DATALOADER.SKIP_CORRUPT_IMAGES) in an inference batch."""

    file_name: str


class InferenceBatch(list):
    """A test-loader batch: the mapped dicts of readable images; `skipped_files` names the unreadable ones."""

    skipped_files: List[str] = []


class _SkippingDataset(torchdata.Dataset):
    """For inference: items the mapper rejects (None) come back as SkippedImage, which the collator sets apart."""

    def __init__(self, items: List[Any], mapper: Callable[[Any], Any]) -> None:
        self.items = items
        self.mapper = mapper

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int) -> Any:
        out = self.mapper(self.items[idx])
        return out if out is not None else SkippedImage(str(self.items[idx].get("file_name", f"item {idx}")))


class _MappedStream(torchdata.IterableDataset):
    """(sampler -> dataset) as an iterable, batched with aspect-ratio grouping when asked."""

    def __init__(self, dataset: torchdata.Dataset, sampler: TrainingSampler, batch_size: int, group: bool) -> None:
        self.dataset = dataset
        self.sampler = sampler
        self.batch_size = batch_size
        self.group = group

    def __iter__(self):
        info = torchdata.get_worker_info()
        indices = iter(self.sampler)
        if info is not None and info.num_workers > 1:
            # Each worker takes its own slice of this rank's stream.
            indices = (i for k, i in enumerate(indices) if k % info.num_workers == info.id)
        buckets: List[List[Any]] = [[], []]
        for idx in indices:
            d = self.dataset[idx]
            b = buckets[int(d["image"].shape[-1] > d["image"].shape[-2])] if self.group else buckets[0]
            b.append(d)
            if len(b) == self.batch_size:
                yield b[:]
                del b[:]


def inference_batch_collator(batch: List[Any]) -> InferenceBatch:
    """The readable images' dicts, with the skipped images' file names in `skipped_files` (for counting)."""
    out = InferenceBatch(b for b in batch if b is not None and not isinstance(b, SkippedImage))
    out.skipped_files = [b.file_name for b in batch if isinstance(b, SkippedImage)]
    return out


def worker_init_reset_seed(worker_id: int) -> None:
    """Give every worker its own numpy/random/torch seed (derived from torch's per-worker seed)."""
    seed = (torch.initial_seed() + worker_id) % 2**31
    np.random.seed(seed)
    random.seed(seed)


def build_detection_train_loader(cfg, mapper: Optional[Callable] = None) -> torchdata.DataLoader:
    """Infinite training loader; each rank gets SOLVER.IMS_PER_BATCH // world_size images per batch."""
    world = comm.get_world_size()
    total = cfg.SOLVER.IMS_PER_BATCH
    if total % world != 0:
        raise ConfigError(f"SOLVER.IMS_PER_BATCH ({total}) must be divisible by the number of processes ({world})")
    dicts = get_detection_dataset_dicts(cfg.DATASETS.TRAIN, cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    mapper = mapper if mapper is not None else DatasetMapper(cfg, True)
    dataset = MapDataset(dicts, mapper)
    if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
        raise ConfigError(f"DATALOADER.SAMPLER_TRAIN '{cfg.DATALOADER.SAMPLER_TRAIN}' is not supported; use TrainingSampler")
    seed = cfg.SEED if cfg.SEED >= 0 else None
    sampler = TrainingSampler(len(dataset), seed=seed)
    stream = _MappedStream(dataset, sampler, total // world, cfg.DATALOADER.ASPECT_RATIO_GROUPING)
    return torchdata.DataLoader(
        stream,
        batch_size=None,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        worker_init_fn=worker_init_reset_seed,
        persistent_workers=cfg.DATALOADER.NUM_WORKERS > 0,
    )


def build_detection_test_loader(cfg, dataset_name: str, mapper: Optional[Callable] = None) -> torchdata.DataLoader:
    """Loader over `dataset_name` with batch size 1, each image on exactly one rank, in order."""
    dicts = get_detection_dataset_dicts([dataset_name], filter_empty=False)
    max_images = int(cfg.TEST.MAX_IMAGES)
    if max_images < 0:
        raise ConfigError(f"TEST.MAX_IMAGES must be >= 0 (0: every image), got {max_images}")
    if 0 < max_images < len(dicts):
        logger.info("TEST.MAX_IMAGES %d: evaluating on the first %d of %d images of '%s'", max_images, max_images,
                    len(dicts), dataset_name)
        dicts = dicts[:max_images]
    mapper = mapper if mapper is not None else DatasetMapper(cfg, False)
    dataset = _SkippingDataset(dicts, mapper)
    return torchdata.DataLoader(
        dataset,
        batch_size=1,
        sampler=InferenceSampler(len(dataset)),
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        collate_fn=inference_batch_collator,
    )


def register_datasets_from_cfg(cfg) -> List[str]:
    """Register every (name, json_file, image_root) of DATASETS.COCO_INSTANCES; idempotent. Returns the names."""
    names = []
    allow_images_outside_root(cfg.DATASETS.get("ALLOW_IMAGES_OUTSIDE_ROOT", False))
    for entry in cfg.DATASETS.COCO_INSTANCES:
        if len(entry) != 3:
            raise ConfigError(
                f"DATASETS.COCO_INSTANCES entries must be (name, json_file, image_root), got {tuple(entry)}"
            )
        name, json_file, image_root = (str(x) for x in entry)
        if name in DatasetCatalog:
            meta = MetadataCatalog.get(name)
            if meta.get("json_file") != json_file or meta.get("image_root") != image_root:
                raise ConfigError(
                    f"Dataset '{name}' is already registered with json_file={meta.get('json_file')!r}, "
                    f"image_root={meta.get('image_root')!r}; DATASETS.COCO_INSTANCES gives {json_file!r}, "
                    f"{image_root!r}. Use another name."
                )
        else:
            register_coco_instances(name, {}, json_file, image_root)
        names.append(name)
    return names


def check_num_classes(cfg) -> None:
    """Stop early when MODEL.SOLOV2.NUM_CLASSES disagrees with the first training dataset's classes."""
    if not cfg.DATASETS.TRAIN:
        return
    name = cfg.DATASETS.TRAIN[0]
    meta = MetadataCatalog.get(name)
    classes = meta.get("thing_classes")
    if classes is None:
        DatasetCatalog.get(name)  # loading fills the metadata
        classes = meta.get("thing_classes")
    if classes is None:
        return
    n = cfg.MODEL.SOLOV2.NUM_CLASSES
    if n != len(classes):
        raise ConfigError(
            f"MODEL.SOLOV2.NUM_CLASSES is {n} but the training dataset '{name}' has {len(classes)} classes "
            f"({', '.join(classes[:10])}{', ...' if len(classes) > 10 else ''}). "
            f"Set MODEL.SOLOV2.NUM_CLASSES {len(classes)} in the config or on the command line."
        )

"""Every default config value, under Detectron2's key names plus MODEL.SOLOV2.*."""

from .config import CfgNode as CN

_C = CN()
_C.VERSION = 2

# ---------------------------------------------------------------------------- #
# Model
# ---------------------------------------------------------------------------- #
_C.MODEL = CN()
_C.MODEL.LOAD_PROPOSALS = False
_C.MODEL.MASK_ON = True
_C.MODEL.KEYPOINT_ON = False
# "" picks CUDA when available, else CPU; "cpu", "cuda", "cuda:1" force one.
_C.MODEL.DEVICE = ""
_C.MODEL.META_ARCHITECTURE = "SOLOv2"
# A local path, or detectron2:// / https:// URLs (these need network access).
_C.MODEL.WEIGHTS = ""
# False: weights that leave model parameters unloaded in --eval-only, or whose parameters are mostly not in the model
# (another depth or head), are refused; True: load what fits and only log the rest.
_C.MODEL.WEIGHTS_PARTIAL_OK = False
# Caffe2 MSRA ImageNet statistics in BGR 0-255; PIXEL_STD 1 because the MSRA weights expect it.
_C.MODEL.PIXEL_MEAN = [103.530, 116.280, 123.675]
_C.MODEL.PIXEL_STD = [1.0, 1.0, 1.0]

_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
# Freeze the stem (1) and res2 (2) ... ; 0 trains everything.
_C.MODEL.BACKBONE.FREEZE_AT = 2
# Accepted for AdelaiDet configs; only False is supported.
_C.MODEL.BACKBONE.ANTI_ALIAS = False

_C.MODEL.FPN = CN()
_C.MODEL.FPN.IN_FEATURES = []
_C.MODEL.FPN.OUT_CHANNELS = 256
_C.MODEL.FPN.NORM = ""
_C.MODEL.FPN.FUSE_TYPE = "sum"

_C.MODEL.RESNETS = CN()
_C.MODEL.RESNETS.DEPTH = 50
_C.MODEL.RESNETS.OUT_FEATURES = ["res4"]
_C.MODEL.RESNETS.NUM_GROUPS = 1
_C.MODEL.RESNETS.NORM = "FrozenBN"
_C.MODEL.RESNETS.WIDTH_PER_GROUP = 64
# True: MSRA style (stride in the 1x1 conv); False: torchvision/FB style (stride in the 3x3 conv).
_C.MODEL.RESNETS.STRIDE_IN_1X1 = True
_C.MODEL.RESNETS.RES5_DILATION = 1
_C.MODEL.RESNETS.RES2_OUT_CHANNELS = 256
_C.MODEL.RESNETS.STEM_OUT_CHANNELS = 64
_C.MODEL.RESNETS.DEFORM_ON_PER_STAGE = [False, False, False, False]
_C.MODEL.RESNETS.DEFORM_MODULATED = False
_C.MODEL.RESNETS.DEFORM_NUM_GROUPS = 1
# AdelaiDet: deformable conv in every DEFORM_INTERVAL-th block of a deformable stage.
_C.MODEL.RESNETS.DEFORM_INTERVAL = 1

# ---------------------------------------------------------------------------- #
# SOLOv2 (names and defaults of the published Detectron2-based SOLOv2)
# ---------------------------------------------------------------------------- #
_C.MODEL.SOLOV2 = CN()
_C.MODEL.SOLOV2.INSTANCE_IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
_C.MODEL.SOLOV2.FPN_INSTANCE_STRIDES = [8, 8, 16, 32, 32]
_C.MODEL.SOLOV2.FPN_SCALE_RANGES = ((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048))
_C.MODEL.SOLOV2.SIGMA = 0.2
_C.MODEL.SOLOV2.INSTANCE_IN_CHANNELS = 256
_C.MODEL.SOLOV2.INSTANCE_CHANNELS = 512
_C.MODEL.SOLOV2.NUM_INSTANCE_CONVS = 4
_C.MODEL.SOLOV2.USE_DCN_IN_INSTANCE = False
# "DCN": deformable conv v1; "DCNv2": modulated deformable conv.
_C.MODEL.SOLOV2.TYPE_DCN = "DCN"
# Deformable convs (of TYPE_DCN) also in the mask-feature branch (the published R101/X101-DCN models).
_C.MODEL.SOLOV2.USE_DCN_IN_MASK = False
# The mask branch's last (1x1) conv deformable too (mmdetection's and the original SOLO R101/X101-DCN models).
_C.MODEL.SOLOV2.USE_DCN_IN_MASK_PRED = False
# With USE_DCN_IN_INSTANCE: only the last conv of each tower is deformable (the light DCN models), not every one.
_C.MODEL.SOLOV2.DCN_LAST_INSTANCE_CONV_ONLY = False
_C.MODEL.SOLOV2.NUM_GRIDS = [40, 36, 24, 16, 12]
_C.MODEL.SOLOV2.NUM_CLASSES = 80
_C.MODEL.SOLOV2.NUM_KERNELS = 256
_C.MODEL.SOLOV2.NORM = "GN"
_C.MODEL.SOLOV2.USE_COORD_CONV = True
_C.MODEL.SOLOV2.PRIOR_PROB = 0.01
_C.MODEL.SOLOV2.MASK_IN_FEATURES = ["p2", "p3", "p4", "p5"]
_C.MODEL.SOLOV2.MASK_IN_CHANNELS = 256
_C.MODEL.SOLOV2.MASK_CHANNELS = 128
_C.MODEL.SOLOV2.NUM_MASKS = 256
_C.MODEL.SOLOV2.NMS_PRE = 500
_C.MODEL.SOLOV2.SCORE_THR = 0.1
_C.MODEL.SOLOV2.UPDATE_THR = 0.05
_C.MODEL.SOLOV2.MASK_THR = 0.5
# The model's cap on detections per image (TEST.DETECTIONS_PER_IMAGE is only the COCO evaluation's maxDets).
_C.MODEL.SOLOV2.MAX_PER_IMG = 100
_C.MODEL.SOLOV2.NMS_TYPE = "matrix"
_C.MODEL.SOLOV2.NMS_KERNEL = "gaussian"
_C.MODEL.SOLOV2.NMS_SIGMA = 2
_C.MODEL.SOLOV2.LOSS = CN()
_C.MODEL.SOLOV2.LOSS.FOCAL_USE_SIGMOID = True
_C.MODEL.SOLOV2.LOSS.FOCAL_ALPHA = 0.25
_C.MODEL.SOLOV2.LOSS.FOCAL_GAMMA = 2.0
_C.MODEL.SOLOV2.LOSS.FOCAL_WEIGHT = 1.0
_C.MODEL.SOLOV2.LOSS.DICE_WEIGHT = 3.0

# ---------------------------------------------------------------------------- #
# Input
# ---------------------------------------------------------------------------- #
_C.INPUT = CN()
# A tuple of sizes to choose from ("choice") or a (min, max) range ("range").
_C.INPUT.MIN_SIZE_TRAIN = (800,)
_C.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice"
_C.INPUT.MAX_SIZE_TRAIN = 1333
_C.INPUT.MIN_SIZE_TEST = 800
_C.INPUT.MAX_SIZE_TEST = 1333
# "horizontal", "vertical" or "none".
_C.INPUT.RANDOM_FLIP = "horizontal"
# AdelaiDet's switch for horizontal flip; False turns flipping off.
_C.INPUT.HFLIP_TRAIN = True
_C.INPUT.CROP = CN({"ENABLED": False})
_C.INPUT.CROP.TYPE = "relative_range"
_C.INPUT.CROP.SIZE = [0.9, 0.9]
_C.INPUT.CROP.CROP_INSTANCE = True
_C.INPUT.FORMAT = "BGR"
_C.INPUT.MASK_FORMAT = "polygon"

# ---------------------------------------------------------------------------- #
# Datasets
# ---------------------------------------------------------------------------- #
_C.DATASETS = CN()
_C.DATASETS.TRAIN = ()
_C.DATASETS.PROPOSAL_FILES_TRAIN = ()
_C.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN = 2000
_C.DATASETS.TEST = ()
_C.DATASETS.PROPOSAL_FILES_TEST = ()
_C.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST = 1000
# COCO-format datasets registered from the config, no Python needed:
# each entry is (name, json_file, image_root), e.g. (("my_train", "ann/train.json", "images/"),)
_C.DATASETS.COCO_INSTANCES = ()
# False: an image file_name in a dataset json that leads outside its image_root ("../", an absolute path) is
# refused naming the json and the entry; True: such paths are read (only for jsons you trust).
_C.DATASETS.ALLOW_IMAGES_OUTSIDE_ROOT = False

# ---------------------------------------------------------------------------- #
# DataLoader
# ---------------------------------------------------------------------------- #
_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4
_C.DATALOADER.ASPECT_RATIO_GROUPING = True
_C.DATALOADER.SAMPLER_TRAIN = "TrainingSampler"
_C.DATALOADER.REPEAT_THRESHOLD = 0.0
_C.DATALOADER.FILTER_EMPTY_ANNOTATIONS = True
# False: an unreadable image stops with an error naming it; True: skip it with a warning and count it.
_C.DATALOADER.SKIP_CORRUPT_IMAGES = False

# ---------------------------------------------------------------------------- #
# Solver
# ---------------------------------------------------------------------------- #
_C.SOLVER = CN()
# "WarmupMultiStepLR" or "WarmupCosineLR".
_C.SOLVER.LR_SCHEDULER_NAME = "WarmupMultiStepLR"
_C.SOLVER.MAX_ITER = 40000
_C.SOLVER.BASE_LR = 0.001
_C.SOLVER.BASE_LR_END = 0.0
# "SGD" (Detectron2's optimizer: MOMENTUM, NESTEROV) or "ADAMW" (BETAS); both use BASE_LR and WEIGHT_DECAY*.
_C.SOLVER.OPTIMIZER = "SGD"
_C.SOLVER.MOMENTUM = 0.9
_C.SOLVER.BETAS = (0.9, 0.999)
_C.SOLVER.NESTEROV = False
_C.SOLVER.WEIGHT_DECAY = 0.0001
# Weight decay of norm layers' parameters (0: none unless asked).
_C.SOLVER.WEIGHT_DECAY_NORM = 0.0
_C.SOLVER.GAMMA = 0.1
_C.SOLVER.STEPS = (30000,)
_C.SOLVER.WARMUP_FACTOR = 1.0 / 1000
_C.SOLVER.WARMUP_ITERS = 1000
_C.SOLVER.WARMUP_METHOD = "linear"
_C.SOLVER.RESCALE_INTERVAL = False
_C.SOLVER.CHECKPOINT_PERIOD = 5000
# Total images per iteration over all ranks and machines.
_C.SOLVER.IMS_PER_BATCH = 16
_C.SOLVER.REFERENCE_WORLD_SIZE = 0
_C.SOLVER.BIAS_LR_FACTOR = 1.0
_C.SOLVER.WEIGHT_DECAY_BIAS = None
_C.SOLVER.CLIP_GRADIENTS = CN({"ENABLED": False})
# "value" clips each element, "norm" clips each parameter's norm, "full_model" the whole model's.
_C.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "value"
_C.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1.0
_C.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0
_C.SOLVER.AMP = CN({"ENABLED": False})

# ---------------------------------------------------------------------------- #
# Test
# ---------------------------------------------------------------------------- #
_C.TEST = CN()
_C.TEST.EXPECTED_RESULTS = []
# Evaluate every EVAL_PERIOD iterations (0: only at the end of training).
_C.TEST.EVAL_PERIOD = 0
# COCO evaluation's maxDets (the model's own cap is MODEL.SOLOV2.MAX_PER_IMG).
_C.TEST.DETECTIONS_PER_IMAGE = 100
# Evaluate on the first MAX_IMAGES images of each test set only (0: all), for quick smoke runs; the COCO evaluator
# then scores only those images' ground truth. Not a Detectron2 key: the Detectron2 plug-in refuses a non-zero value.
_C.TEST.MAX_IMAGES = 0
_C.TEST.PRECISE_BN = CN({"ENABLED": False})
_C.TEST.PRECISE_BN.NUM_ITER = 200

# ---------------------------------------------------------------------------- #
# Misc
# ---------------------------------------------------------------------------- #
_C.OUTPUT_DIR = "./output"
# True: take over the OUTPUT_DIR lock of a run on another host (one that has ended, e.g. a requeued job's previous
# attempt); a lock of a live run on this host is never taken over.
_C.TAKE_OVER_OUTPUT_DIR_LOCK = False
# < 0: a random seed, which is logged; >= 0: fully seeded.
_C.SEED = -1
_C.CUDNN_BENCHMARK = False
_C.VIS_PERIOD = 0
_C.GLOBAL = CN()
_C.GLOBAL.HACK = 1.0

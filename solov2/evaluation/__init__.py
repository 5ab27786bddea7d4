"""Evaluation: the DatasetEvaluator interface, inference_on_dataset and COCO segm/bbox evaluation."""

from .coco_conversion import convert_to_coco_dict, convert_to_coco_json
from .coco_evaluation import COCOEvaluator, instances_to_coco_json, summarize_coco_eval
from .evaluator import (
    DatasetEvaluator,
    DatasetEvaluators,
    evaluator_output_folder,
    inference_context,
    inference_on_dataset,
)
from .testing import print_csv_format, verify_results

__all__ = [
    "COCOEvaluator",
    "DatasetEvaluator",
    "DatasetEvaluators",
    "convert_to_coco_dict",
    "convert_to_coco_json",
    "evaluator_output_folder",
    "inference_context",
    "inference_on_dataset",
    "instances_to_coco_json",
    "print_csv_format",
    "summarize_coco_eval",
    "verify_results",
]

"""Evaluation of DeepLab models: mean IoU, per-class IoU, trimap bands, reports.

`evaluate` / `Evaluator` compute the metrics of a model on a dataset,
`deeplab.evaluation.reporting` prints and saves them, and
`deeplab.evaluation.runner` evaluates the checkpoints of an experiment (once, or
each as training writes it).
"""

from deeplab.evaluation.evaluator import EvalResult, Evaluator, evaluate
from deeplab.evaluation.reporting import format_results, write_results, write_summaries
from deeplab.evaluation.runner import evaluate_checkpoints, run_evaluation

__all__ = [
    'EvalResult',
    'Evaluator',
    'evaluate',
    'evaluate_checkpoints',
    'format_results',
    'run_evaluation',
    'write_results',
    'write_summaries',
]

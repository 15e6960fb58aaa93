"""AutoML: the whole optimization of a network under one wall-clock budget — optimizer screen, joint
architecture and hyperparameter search, retraining on train+val, compression within an accuracy drop, ONNX
export, and one test evaluation at the end.

    result = nnopt.automl("digits", budget="3m", out="runs/automl-digits")
"""

from nnopt.pipeline._automl import STAGES, AutomlResult, automl, default_out
from nnopt.pipeline._budget import parse_budget

__all__ = ["STAGES", "AutomlResult", "automl", "default_out", "parse_budget"]

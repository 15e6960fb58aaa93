"""Using a trained model: evaluate it on labelled rows, predict new rows, export it to ONNX or TorchScript.

Any model nnopt produced works: a train run directory, the best/ of a tune or search (or the run directory
itself), a compare run (its best run), a compress run or its compressed.nnz, an automl run, or a model file.
The feature scaling and label names recorded at training time are applied automatically.

    result = nnopt.evaluate("runs/train-iris", "iris.csv", split="test")
    preds = nnopt.predict("runs/train-iris", "new_flowers.csv", proba=True, out="predictions.csv")
    nnopt.export("runs/train-iris", "onnx", "iris.onnx")
    nnopt.evaluate("runs/train-iris", importance=True).importance  # each column's permutation importance on val
"""

from nnopt.inference._evaluate import SPLITS, Evaluation, evaluate
from nnopt.inference._export import FORMATS, Exported, deployable, export, run_exported
from nnopt.inference._importance import permutation_importance
from nnopt.inference._predict import Predictions, predict
from nnopt.inference._predictor import Predictor, load_predictor
from nnopt.inference._source import MODEL_CANDIDATES

__all__ = [
    "FORMATS", "MODEL_CANDIDATES", "SPLITS", "Evaluation", "Exported", "Predictions", "Predictor", "deployable",
    "evaluate", "export", "load_predictor", "permutation_importance", "predict", "run_exported",
]

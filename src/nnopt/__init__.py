"""nnopt: make neural networks better — train with the right optimizer, compare, tune, search, compress.

    import nnopt
    result = nnopt.fit("mlp:128,64", "digits", optimizer="adam", epochs=20)
    print(result.metrics["test"]["accuracy"])
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = [
    "__version__", "automl", "fit", "compare", "find_lr", "tune", "nas", "compress_model", "load", "build_report", "FitResult", "CompareResult", "load_data",
    "build_model", "load_model", "ArchSpec", "OPTIMIZERS", "create_optimizer", "NnoptError", "UsageError",
    "evaluate", "predict", "export", "DataError", "ConfigError",
]

from nnopt.errors import ConfigError, DataError, NnoptError, UsageError

# Heavy subpackages (torch, sklearn) load on first use, so `nnopt --help` starts fast.
_LAZY = {
    "automl": "nnopt.api", "fit": "nnopt.api", "compare": "nnopt.api", "find_lr": "nnopt.api", "tune": "nnopt.api", "nas": "nnopt.api", "compress_model": "nnopt.api", "load": "nnopt.compress", "build_report": "nnopt.report",
    "FitResult": "nnopt.train", "CompareResult": "nnopt.comparison",
    "load_data": "nnopt.data",
    "build_model": "nnopt.models", "load_model": "nnopt.models", "ArchSpec": "nnopt.models",
    "OPTIMIZERS": "nnopt.optim", "create_optimizer": "nnopt.optim",
    "evaluate": "nnopt.inference", "predict": "nnopt.inference", "export": "nnopt.inference",
}


# Subpackages and modules reachable as attributes after `import nnopt` alone (nnopt.train.Callback,
# nnopt.search.nas, ...), each imported on first use like the names above.
_SUBMODULES = ("api", "cli", "comparison", "compress", "config", "data", "distributed", "errors", "fileio",
               "inference", "models", "optim", "pipeline", "registry", "report", "search", "train")


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"nnopt.{name}")  # the import sets the attribute on this package
    raise AttributeError(f"module 'nnopt' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(__all__)

"""An MNIST multilayer perceptron (784 -> 128 -> 64 -> 10, ReLU) trained with Adam from local IDX files.

nnopt reads an MNIST-layout directory itself: train-images-idx3-ubyte + train-labels-idx1-ubyte, and
t10k-images-idx3-ubyte + t10k-labels-idx1-ubyte (kept as the test split when present); each may be gzipped
(`.gz`). Pixels are divided by 255, each 28x28 image is flattened to 784 inputs, and a validation split is
carved from the training files. Nothing is downloaded: fetch the four MNIST files once into a directory, then

    python examples/mnist_mlp.py --idx data/mnist
    python examples/mnist_mlp.py --idx data/mnist --epochs 5 --model mlp:256 --lr 3e-3 --out runs/examples/mnist-256

Prints the test accuracy; nnopt's run directory (model.pt, metrics.jsonl, report.html, ...) goes to --out.
Exit code 2 with one line on stderr for bad input (e.g. a directory without the IDX files).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nnopt


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line on stderr, like the nnopt CLI, instead of usage + message
        self.exit(2, f"error: {message}\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(description="An MNIST MLP trained with Adam, from local IDX files.")
    parser.add_argument("--idx", default="data/mnist", help="directory holding the MNIST IDX files [%(default)s]")
    parser.add_argument("--out", default="runs/examples/mnist-mlp", help="run directory [%(default)s]")
    parser.add_argument("--model", default="mlp:128,64", help="nnopt model spec: hidden layer widths [%(default)s]")
    parser.add_argument("--epochs", type=int, default=10, help="passes over the training split [%(default)s]")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate [%(default)s]")
    parser.add_argument("--batch-size", type=int, default=64, help="mini-batch size [%(default)s]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the weights and the shuffling [%(default)s]")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads [nnopt's choice from the model's size]; 1 is faster on a busy machine")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # nnopt reads a string that is not an existing path as a built-in dataset name (`--idx digits` would train on
    # sklearn's digits), so a missing directory is reported here rather than passed on.
    if not Path(args.idx).is_dir():
        print(f"error: --idx {args.idx} is not a directory; put train-images-idx3-ubyte and "
              "train-labels-idx1-ubyte (and the t10k-* pair, .gz or not) in one and pass it", file=sys.stderr)
        return 2
    try:
        result = nnopt.fit(args.model, args.idx, optimizer="adam", lr=args.lr, epochs=args.epochs,
                           batch_size=args.batch_size, seed=args.seed, threads=args.threads, out=args.out)
    except nnopt.NnoptError as exc:
        with nnopt.errors.cli_spelling():  # this program's flags are nnopt's: the message says --lr, not lr=
            print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    info = result.data.describe()
    test = result.metrics["test"]
    print(f"test accuracy {test['accuracy']:.4f} on {info['n_test']} images ({info['n_train']} train, "
          f"{info['n_features']} inputs, {result.epochs} epochs of adam at lr {args.lr:g}) | run: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

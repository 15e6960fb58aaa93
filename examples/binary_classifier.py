"""A binary classifier (breast cancer: malignant or benign) trained with SGD + Nesterov momentum.

Picks the learning rate with nnopt's LR range test (nnopt.find_lr: a short run with a growing lr, suggesting
where the loss falls fastest) unless --lr is given, trains an MLP with one output logit (binary cross-entropy) on
sklearn's breast_cancer set (569 rows, 30 features, standardized on the training split), then predicts the
held-out test split itself and scores it with sklearn.metrics: accuracy at threshold 0.5 and ROC AUC.

    python examples/binary_classifier.py
    python examples/binary_classifier.py --lr 0.05 --momentum 0.95 --model mlp:64,32 --out runs/examples/bc-64

Exit code 2 with one line on stderr for bad input (e.g. --lr 0 or --model mlp:x), 3 if the loss diverges.
"""

from __future__ import annotations

import argparse
import sys

import nnopt

DATA = "breast_cancer"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line on stderr, like the nnopt CLI, instead of usage + message
        self.exit(2, f"error: {message}\n")


def learning_rate(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number or 'auto'; got '{text}'") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(description="A binary classifier on breast_cancer, trained with SGD + Nesterov momentum.")
    parser.add_argument("--out", default="runs/examples/binary-classifier", help="run directory [%(default)s]")
    parser.add_argument("--model", default="mlp:32", help="nnopt model spec [%(default)s]")
    parser.add_argument("--epochs", type=int, default=30, help="passes over the training split [%(default)s]")
    parser.add_argument("--lr", type=learning_rate, default="auto",
                        help="learning rate, or 'auto' for the LR range test's suggestion [%(default)s]")
    parser.add_argument("--momentum", type=float, default=0.9, help="Nesterov momentum [%(default)s]")
    parser.add_argument("--batch-size", type=int, default=32, help="mini-batch size [%(default)s]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the weights and the shuffling [%(default)s]")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not 0 < args.momentum < 1:  # Nesterov needs some momentum; 1 or more never forgets a gradient
        print(f"error: --momentum must be in (0, 1); got {args.momentum}", file=sys.stderr)
        return 2
    settings = {"optimizer": "nesterov", "optimizer_params": {"momentum": args.momentum},
                "batch_size": args.batch_size, "seed": args.seed}
    try:
        lr = args.lr
        if lr == "auto":  # the range test trains a throw-away copy with the same optimizer and batches
            lr = nnopt.find_lr(args.model, DATA, **settings).suggested
        result = nnopt.fit(args.model, DATA, lr=lr, epochs=args.epochs, out=args.out, **settings)
    except nnopt.NnoptError as exc:
        with nnopt.errors.cli_spelling():  # this program's flags are nnopt's: the message says --lr, not lr=
            print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code

    import torch
    from sklearn.metrics import accuracy_score, roc_auc_score

    test = result.data.test  # already scaled with the training split's statistics
    with torch.inference_mode():
        # one logit per row: sigmoid gives P(class 1), the class named result.data.class_names[1]
        probability = torch.sigmoid(result.model(test.X)).squeeze(1).numpy()
    labels = test.y.numpy()
    accuracy = accuracy_score(labels, probability >= 0.5)
    auc = roc_auc_score(labels, probability)
    source = "auto, LR range test" if args.lr == "auto" else "given"
    print(f"test accuracy {accuracy:.4f} ROC AUC {auc:.4f} on {len(labels)} rows "
          f"(nesterov lr {lr:.4g} ({source}), momentum {args.momentum:g}, {result.epochs} epochs) | run: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

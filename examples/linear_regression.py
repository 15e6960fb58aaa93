"""Linear regression by full-batch gradient descent, checked against the closed-form least-squares answer.

Generates a 1-D problem y = 3x + 2 + noise (numpy, seeded), trains nnopt's `linear` model with the `gd`
optimizer (one exact-gradient step per epoch over the whole training split), and prints the learned slope and
intercept next to numpy.linalg.lstsq's solution on the same rows: with the defaults they agree to within 1e-6.
Saves a PNG with the data, both fitted lines and the loss curve, next to nnopt's run directory files.

    python examples/linear_regression.py
    python examples/linear_regression.py --epochs 50 --lr 0.05 --out runs/examples/lr-slow   # not converged yet

Exit code 2 with one line on stderr for bad input (e.g. --lr -1), 3 if the loss diverges (too large --lr).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import nnopt

TRUE_SLOPE, TRUE_INTERCEPT = 3.0, 2.0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line on stderr, like the nnopt CLI, instead of usage + message
        self.exit(2, f"error: {message}\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(description="Linear regression by full-batch gradient descent (nnopt's gd optimizer).")
    parser.add_argument("--out", default="runs/examples/linear-regression", help="run directory [%(default)s]")
    parser.add_argument("--epochs", type=int, default=100, help="gradient descent steps, one per epoch [%(default)s]")
    parser.add_argument("--lr", type=float, default=0.2, help="learning rate [%(default)s]")
    parser.add_argument("--points", type=int, default=200, help="generated (x, y) pairs [%(default)s]")
    parser.add_argument("--noise", type=float, default=0.5, help="standard deviation of the noise on y [%(default)s]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, the split and the weights [%(default)s]")
    return parser.parse_args(argv)


def make_data(points: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if points < 10:
        raise nnopt.UsageError(f"--points must be an integer >= 10; got {points}")
    if not noise >= 0:
        raise nnopt.UsageError(f"--noise must be >= 0; got {noise}")
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 3.0, size=points)
    y = TRUE_SLOPE * x + TRUE_INTERCEPT + rng.normal(0.0, noise, size=points)
    return x.reshape(-1, 1).astype(np.float32), y.astype(np.float32)


def least_squares(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    design = np.column_stack([x.astype(np.float64), np.ones(len(x))])
    (slope, intercept), *_ = np.linalg.lstsq(design, y.astype(np.float64), rcond=None)
    return float(slope), float(intercept)


def plot(path: Path, x: np.ndarray, y: np.ndarray, fitted: tuple[float, float], exact: tuple[float, float],
         losses: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display needed: the figure only goes to a file
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.scatter(x, y, s=8, alpha=0.5, label="training rows")
    grid = np.linspace(x.min(), x.max(), 2)
    left.plot(grid, fitted[0] * grid + fitted[1], color="C1", label=f"gd: y = {fitted[0]:.3f}x + {fitted[1]:.3f}")
    left.plot(grid, exact[0] * grid + exact[1], "k--", lw=1, label=f"lstsq: y = {exact[0]:.3f}x + {exact[1]:.3f}")
    left.set(xlabel="x", ylabel="y", title="data and fitted line")
    left.legend()
    right.plot(range(1, len(losses) + 1), losses)
    right.set(xlabel="epoch (= one gradient step)", ylabel="train MSE", yscale="log", title="loss")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        x, y = make_data(args.points, args.noise, args.seed)
        # nnopt standardizes features and regression targets by default (scale="auto"); the weights would then
        # be the slope and intercept of the standardized problem. scale="none" trains on x and y as they are,
        # so weight and bias are directly the slope and intercept of y = a x + b.
        result = nnopt.fit("linear", (x, y), optimizer="gd", lr=args.lr, epochs=args.epochs, seed=args.seed,
                           scale="none", task="regression", out=args.out)
    except nnopt.NnoptError as exc:
        with nnopt.errors.cli_spelling():  # this program's flags are nnopt's: the message says --lr, not lr=
            print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    fitted = (float(result.model.weight.item()), float(result.model.bias.item()))
    # The closed form on the rows gradient descent saw (the training split), not on all generated points.
    train_x, train_y = result.data.train.X.numpy(), result.data.train.y.numpy()
    exact = least_squares(train_x, train_y)
    image = Path(args.out) / "linear_regression.png"
    plot(image, train_x[:, 0], train_y, fitted, exact, [row["train_loss"] for row in result.history])
    gap = max(abs(fitted[0] - exact[0]), abs(fitted[1] - exact[1]))
    print(f"gd: slope={fitted[0]:.5f} intercept={fitted[1]:.5f} | lstsq: slope={exact[0]:.5f} "
          f"intercept={exact[1]:.5f} | max difference {gap:.1e} | plot: {image}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

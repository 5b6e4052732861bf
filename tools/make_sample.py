"""Write the demo's sample array, src/intquant/data/sample.npy (run once; the file is committed).

4,096 float32 values shaped (64, 64), drawn like the weights of a trained dense layer: Laplace
distributed around 0 with scale 0.05, plus a few larger weights (seeded, so reproducible).
"""

from pathlib import Path

import numpy


def main() -> None:
    rng = numpy.random.default_rng(2026)
    weights = rng.laplace(0.0, 0.05, size=(64, 64))
    weights.flat[rng.choice(weights.size, 8, replace=False)] *= 6.0
    target = Path(__file__).resolve().parents[1] / "src" / "intquant" / "data" / "sample.npy"
    numpy.save(target, weights.astype(numpy.float32))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()

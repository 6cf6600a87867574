"""Writes the modular-addition data set: x = two token ids (a, b), y = (a + b) mod p.

    python make_data.py                      # data/modadd.npz, p = 31 (961 pairs)
    python make_data.py --p 23 --out /tmp/modadd.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def make(p: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of residues as int64 token ids, and their sum mod p as the label."""
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    x = np.stack([a.ravel(), b.ravel()], axis=1).astype(np.int64)
    return x, (x.sum(axis=1) % p).astype(np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--p", type=int, default=31, help="the modulus (vocabulary and classes)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data" / "modadd.npz")
    args = parser.parse_args()
    x, y = make(args.p)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, x=x, y=y)
    print(f"{args.out}: {len(x)} pairs, p = {args.p}")


if __name__ == "__main__":
    main()

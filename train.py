"""Thin Hydra entry point: `python train.py experiment=tiny` (same as `sonotok train experiment=tiny`)."""

from sonotok.training.train import main

if __name__ == "__main__":
    main()

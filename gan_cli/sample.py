"""gan-sample: grids, image dumps and latent interpolations from checkpoints (not yet available)."""

import sys


def main() -> None:
    print(
        "gan-sample: not yet available; until then every run writes its fixed-z grids to <run>/samples/",
        file=sys.stderr,
    )
    sys.exit(1)


if __name__ == "__main__":
    main()

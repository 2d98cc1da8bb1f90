"""gan-eval: IS / FID / KID / precision-recall on checkpoints (not yet available)."""

import sys


def main() -> None:
    print("gan-eval: not yet available; it will compute IS, FID, KID and precision/recall on checkpoints", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    main()

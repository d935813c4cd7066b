"""``python -m geogan`` (and ``torchrun -m geogan train ...``) runs the CLI."""
from .cli import main

if __name__ == "__main__":
    main()

"""``python -m epochal``: the command line, also as torchrun's module (``torchrun ... -m epochal train``)."""

from epochal.cli.main import main

if __name__ == "__main__":
    main()

"""``python -m v2vcli``: the ``v2v`` command without its console script (e.g. from a venv whose bin/ is not on PATH)."""

from v2vcli.cli import main

if __name__ == "__main__":
    main(prog_name="v2v")

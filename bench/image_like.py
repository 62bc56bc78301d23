"""Run the handler the way the container image does as far as imports go: without the packages that only
the development environment has.

httpx imports its optional command-line interface (click, rich, pygments) whenever those happen to be
installed; in `.venv` they are (import-linter needs them), in the image they are not. That costs
about 5 MiB of RSS, so the footprint of the image is measured with this entry point, which takes the
handler's own flags: `python -m bench.run --image-like` adds it as the second column.
"""

from __future__ import annotations

import sys

DEVELOPMENT_ONLY = ("click", "rich", "pygments")


def main() -> int:
    # A None entry makes `import click` raise ImportError, as it would where click is not installed.
    for name in DEVELOPMENT_ONLY:
        sys.modules[name] = None  # type: ignore[assignment]
    from aksnth.cli import main as handler_main  # noqa: PLC0415 (after hiding the modules, on purpose)

    sys.argv[0] = "aks-node-termination-handler"
    return handler_main()


if __name__ == "__main__":
    raise SystemExit(main())

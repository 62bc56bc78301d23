"""Run the handler the way the container image does as far as imports go: without the packages that only
the development environment has.

httpx (the handler's HTTP client until issue 15) imported its optional command-line interface (click,
rich, pygments) whenever those happened to be installed, about 5 MiB of RSS that the image never
carries; httpx2 imports it only on request, but a development environment may still hold modules the
image does not. This entry point hides them and takes the handler's own flags:
`python -m bench.run --image-like` adds it as the second column.
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

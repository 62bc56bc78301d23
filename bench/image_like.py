"""Run the handler the way the container image does as far as Python goes: optimized (``-OO``, as the
image's ``PYTHONOPTIMIZE=2``), from byte code compiled for that level, and without the packages that
only the development environment has.

httpx (the handler's HTTP client until issue 15) imported its optional command-line interface (click,
rich, pygments) whenever those happened to be installed, about 5 MiB of RSS that the image never
carries; httpx2 imports it only on request, but a development environment may still hold modules the
image does not. This entry point hides them and takes the handler's own flags:
`python -m bench.run --image-like` adds it as the second column, after :func:`precompile`.
"""

from __future__ import annotations

import sys

DEVELOPMENT_ONLY = ("click", "rich", "pygments")
#: The image compiles these at build time (docker/Dockerfile); neither do its tests ship.
_NOT_COMPILED = r"/(test|tests|idlelib|tkinter|turtledemo|lib2to3|ensurepip)/"


def precompile() -> None:
    """Byte code at optimization level 2 for the standard library, the environment and the project.

    Without it the first optimized run compiles every module in memory, and its RSS measures the
    compiler's leftovers instead of the handler; with it, the image-like column loads byte code, as
    the image does. Files already compiled are skipped, so a second call costs a directory walk.
    """
    # Imported here, not at the top: the handler started through main() would carry them, and its
    # start would be slower than the image's.
    import compileall  # noqa: PLC0415
    import re  # noqa: PLC0415
    import sysconfig  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    paths = {sysconfig.get_path(name) for name in ("stdlib", "purelib", "platlib")}
    paths.add(str(Path(__file__).resolve().parents[1] / "src"))
    for path in sorted(p for p in paths if p and Path(p).is_dir()):
        compileall.compile_dir(path, quiet=2, optimize=2, rx=re.compile(_NOT_COMPILED), workers=1)


def main() -> int:
    # A None entry makes `import click` raise ImportError, as it would where click is not installed.
    for name in DEVELOPMENT_ONLY:
        sys.modules[name] = None  # type: ignore[assignment]
    from aksnth.cli import main as handler_main  # noqa: PLC0415 (after hiding the modules, on purpose)

    sys.argv[0] = "aks-node-termination-handler"
    return handler_main()


if __name__ == "__main__":
    raise SystemExit(main())

"""Compile rules/checks.py (the order gate's check) with Cython into rules/checks.*.so, in place.

Run by scripts/_setup.sh after pip install, so scripts/test, scripts/demo and CI build it from a
fresh clone. The .py stays plain Python; rules/checks.pxd gives Cython the C types (classes with
typed slots, the projection's floats), which is where the speed comes from (docs/PERFORMANCE.md,
"Order gate (issue 6)"). Python imports the extension before the .py when both are there.

* Skips the build when the extension exists and rules/checks.built holds the digest of the
  current checks.py + checks.pxd (the same digest rules/checks.py compares at import, so an
  extension built from another version of the source is never used).
* Never fails the setup: if Cython, a C compiler or the Python headers are missing, or the
  compile fails, it removes any old extension, prints one warning line and exits 0, and the desk
  runs the pure-Python module (same decisions, slower). The compiler's output is in
  build/checks-build.log.

    .venv/bin/python scripts/build_checks.py            # build if needed
    .venv/bin/python scripts/build_checks.py --force    # rebuild
    .venv/bin/python scripts/build_checks.py --clean    # remove the extension (back to pure Python)
    python scripts/build_checks.py --require            # the Dockerfile: a failed build fails (exit 1)
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "rules" / "checks.py"
DECLARATIONS = ROOT / "rules" / "checks.pxd"
STAMP = ROOT / "rules" / "checks.built"
BUILD = ROOT / "build"
LOG = BUILD / "checks-build.log"

# language_level 3; annotation_typing off: the .pxd alone decides C types (an `int` annotation in
# the .py would otherwise mean "exact Python int" and a `float` one a C double). Bounds checks,
# negative indexes and Python division (ZeroDivisionError) stay on: the same behaviour as the .py.
DIRECTIVES = {"language_level": 3, "annotation_typing": False}
# -ffp-contract=off: no fused multiply-add (GCC's default on aarch64 would fuse a*b+c), so every
# float equals the one CPython computes. -g0: no debug info (a 6 MB .so and a slower build); -O3 (the
# interpreter's own flags) gives ~7 % fewer instructions per check than -O2.
CFLAGS = ["-g0", "-ffp-contract=off"]


def digest() -> str:
    """Must match rules.checks._source_digest."""
    return hashlib.sha256(SOURCE.read_bytes() + DECLARATIONS.read_bytes()).hexdigest()


def extensions() -> list[Path]:
    return sorted((ROOT / "rules").glob("checks.*.so")) + sorted((ROOT / "rules").glob("checks.*.pyd"))


def clean() -> None:
    for path in [*extensions(), STAMP]:
        path.unlink(missing_ok=True)


def compile_in_place() -> None:
    """Runs in a child process (its output goes to the log)."""
    from Cython.Build import cythonize
    from setuptools import Extension, setup

    modules = cythonize(
        [Extension("rules.checks", [str(SOURCE.relative_to(ROOT))], extra_compile_args=CFLAGS)],
        compiler_directives=DIRECTIVES,
        build_dir=str(BUILD.relative_to(ROOT)),
        force=True,
    )
    # packages=[]: the repository is not a package to discover (pyproject.toml has no layout).
    setup(
        name="riskdesk-checks",
        ext_modules=modules,
        packages=[],
        py_modules=[],
        script_args=["build_ext", "--inplace", "--build-temp", str(BUILD / "temp")],
    )


def build() -> bool:
    BUILD.mkdir(exist_ok=True)
    want = digest()
    clean()  # a failed build must not leave an old extension behind
    started = time.monotonic()
    with LOG.open("w") as log:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--compile"], cwd=ROOT, stdout=log, stderr=log
        )
    if done.returncode != 0 or not extensions():
        clean()
        tail = [line for line in LOG.read_text(errors="replace").splitlines() if line.strip()][-1:]
        reason = tail[0][:160] if tail else f"exit {done.returncode}"
        print(
            f"warning: rules/checks.py not compiled ({reason}; see {LOG.relative_to(ROOT)}): "
            "the gate runs the pure-Python check, slower",
            file=sys.stderr,
        )
        return False
    STAMP.write_text(want + "\n")
    print(f"compiled rules/checks.py with Cython in {time.monotonic() - started:.0f} s")
    return True


def main(argv: list[str]) -> int:
    if "--compile" in argv:
        compile_in_place()
        return 0
    if "--clean" in argv:
        clean()
        return 0
    if "--force" not in argv and extensions() and STAMP.exists() and STAMP.read_text().strip() == digest():
        return 0
    built = build()
    # The image has a compiler: there a failed build is a bug to see, not a fallback to live with.
    return 1 if "--require" in argv and not built else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

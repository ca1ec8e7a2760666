"""The AddressSanitizer + UBSan build of the extension for ``test_sanitizer.py``, started in the
background as soon as collection has selected that test (``conftest.py``).

The build takes minutes (every SIMD level of every kernel, instrumented); started at the
beginning of the session at low priority, it uses the core the rest of the suite leaves idle,
and the test waits only for what is left of it. Run alone (or under pytest-xdist, where each
worker collects everything) the fixture starts it and waits.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_build = None  # the one build of this session


class Unavailable(Exception):
    """A tool the build needs is missing (the test skips, or fails in CI)."""


class _Build:
    def __init__(self):
        for tool in ("cmake", "g++"):
            if shutil.which(tool) is None:
                raise Unavailable(f"{tool} is not installed")
        libasan = _output(["g++", "-print-file-name=libasan.so"])
        if not os.path.isabs(libasan) or not os.path.exists(libasan):
            raise Unavailable("g++ has no libasan.so")
        # libstdc++ preloaded too: ASan's __cxa_throw interceptor needs it loaded at start-up
        # (the python binary does not link it), or the first C++ exception aborts.
        libstdcxx = _output(["g++", "-print-file-name=libstdc++.so"])
        self.preload = f"{libasan} {libstdcxx}" if os.path.isabs(libstdcxx) else libasan
        nanobind = subprocess.run([sys.executable, "-m", "nanobind", "--cmake_dir"],
                                  capture_output=True, text=True)
        if nanobind.returncode != 0:
            raise Unavailable("nanobind is not installed")
        self.dir = Path(tempfile.mkdtemp(prefix="crossent-asan-"))
        atexit.register(shutil.rmtree, self.dir, True)
        env = dict(os.environ, CXX=shutil.which("g++"))
        configure = subprocess.run(
            ["cmake", "-S", str(ROOT), "-B", str(self.dir), "-DCROSSENT_SANITIZE=ON",
             "-DCMAKE_BUILD_TYPE=Release", f"-DPython_EXECUTABLE={sys.executable}",
             f"-Dnanobind_ROOT={nanobind.stdout.strip()}"],
            capture_output=True, text=True, env=env)
        if configure.returncode != 0:
            raise RuntimeError("configuring the sanitized build failed:\n"
                               + configure.stdout + configure.stderr)
        self.log = open(self.dir / "build.log", "w+")
        # niceness 10: the tests running meanwhile keep priority on the cores
        self.proc = subprocess.Popen(["cmake", "--build", str(self.dir), "-j", "2"], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=lambda: os.nice(10))
        atexit.register(self._stop)

    def _stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def wait(self) -> tuple[Path, str]:
        """(the build directory, the LD_PRELOAD the sanitized module needs) once built."""
        code = self.proc.wait()
        self.log.seek(0)
        if code != 0:
            raise RuntimeError("the sanitized build failed:\n" + self.log.read()[-8000:])
        if not list(self.dir.glob("_ext*.so")):
            raise RuntimeError("the sanitized build produced no _ext module")
        return self.dir, self.preload


def _output(argv) -> str:
    return subprocess.run(argv, capture_output=True, text=True).stdout.strip()


def start() -> None:
    """Start the build now, in the background. A missing tool or a failed configuration is
    kept, and raised by :func:`get` in the test (never in the collection hook that starts it)."""
    global _build
    if _build is None:
        try:
            _build = _Build()
        except Exception as exc:  # noqa: BLE001 - raised again by get()
            _build = exc


def get() -> tuple[Path, str]:
    """The finished build, started now if it was not: raises :class:`Unavailable` when a tool
    is missing, RuntimeError when the build fails."""
    start()
    if isinstance(_build, Exception):
        raise _build
    return _build.wait()

"""Build the compiled kernels in src/ as extension modules of fastmlp.

OpenMP is used when the compiler supports it (probed at build time);
without it the kernels build and run single-threaded. FASTMLP_DEBUG=1 builds
every kernel with bounds checking and wraparound on, for the test suite.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from glob import glob

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _build_ext

DEBUG = os.environ.get("FASTMLP_DEBUG", "0") not in ("", "0")
# Switching between debug and release builds must regenerate and recompile
# everything: neither Cython nor setuptools notices changed directives.
_MODE_STAMP = os.path.join("build", "fastmlp-build-mode")
_MODE = "debug" if DEBUG else "release"
try:
    with open(_MODE_STAMP) as _f:
        FORCE = _f.read().strip() != _MODE
except OSError:
    FORCE = False


def openmp_flags():
    """Return (compile, link) flags for OpenMP, or ([], []) if unsupported."""
    if sys.platform == "win32":
        return ["/openmp"], []
    cc = sysconfig.get_config_var("CC") or "cc"
    flag = ["-fopenmp"]
    code = "#include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n"
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(code)
        cmd = cc.split() + flag + [src, "-o", os.path.join(tmp, "probe")]
        ok = subprocess.run(cmd, capture_output=True).returncode == 0
    except OSError:
        ok = False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not ok:
        print("fastmlp: OpenMP not available; building single-threaded kernels")
        return [], []
    return flag, flag


omp_compile, omp_link = openmp_flags()
if DEBUG:
    opt = ["-O0", "-g"]
else:
    # -fno-math-errno lets sqrt/exp inline; the associative-math trio lets
    # reductions vectorise. NaN/inf semantics are kept (no -ffast-math):
    # divergence detection relies on them.
    opt = ["-O3", "-fno-math-errno", "-fassociative-math", "-fno-signed-zeros",
           "-fno-trapping-math"]

extensions = [
    Extension(
        "fastmlp." + os.path.splitext(os.path.basename(path))[0],
        [path],
        include_dirs=[np.get_include(), "src"],
        extra_compile_args=opt + omp_compile,
        extra_link_args=omp_link,
        # dladdr/dlopen (src/_blas.pxd's probe of OpenBLAS's kernels): in
        # libc from glibc 2.34, in libdl before
        libraries=["dl"] if sys.platform.startswith("linux") else [],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
    )
    for path in sorted(glob(os.path.join("src", "*.pyx")))
]


class build_ext(_build_ext):
    def finalize_options(self):
        super().finalize_options()
        self.force = self.force or FORCE
        # The modules that hold the matrix kernels each take minutes to
        # compile: one per core (pip's wheel build included) unless -j says.
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    def run(self):
        super().run()
        os.makedirs(os.path.dirname(_MODE_STAMP), exist_ok=True)
        with open(_MODE_STAMP, "w") as f:
            f.write(_MODE)


setup(
    cmdclass={"build_ext": build_ext},
    ext_modules=cythonize(
        extensions,
        force=FORCE,
        include_path=["src"],
        compiler_directives={
            "language_level": 3,
            "boundscheck": DEBUG,
            "wraparound": DEBUG,
            "initializedcheck": DEBUG,
            "cdivision": not DEBUG,
        },
    ),
)

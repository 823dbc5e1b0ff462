"""Package discovery for the flat layout: the repository root is the `visinstruct` package.

pyproject.toml holds all the metadata; this file only finds the subpackages, so a new one
can never be left out of the wheel (a hand-kept list once shipped a wheel that could not
start). What is not the product stays out: tests, benchmarks, build output, this file.
"""

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

NOT_THE_PRODUCT = ["tests", "tests.*", "benchmarks", "benchmarks.*", "build", "build.*"]


class BuildWithoutSetup(build_py):
    """The root package is the repository root, so leave this build script out of it."""

    def find_package_modules(self, package, package_dir):  # type: ignore[no-untyped-def]
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if not (package == "visinstruct" and m[1] == "setup")]


setup(
    package_dir={"visinstruct": "."},
    packages=["visinstruct", *(f"visinstruct.{name}"
                               for name in find_packages(".", exclude=NOT_THE_PRODUCT))],
    cmdclass={"build_py": BuildWithoutSetup},
)

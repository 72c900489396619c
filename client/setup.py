"""The build step: the typed stubs are generated from the .proto contract into the
package before it is built (wheel, editable install or sdist), never copied from a
developer's tree. Everything else is in pyproject.toml."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_stubs


class BuildWithStubs(build_py):
    def run(self) -> None:
        build_stubs.generate()
        # Packages found before the stubs existed: look again.
        self.packages = sorted({*(self.packages or []), *build_stubs.packages()})
        super().run()


class SdistWithProtos(sdist):
    """A source distribution carries the contract it builds its stubs from."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        source = build_stubs.proto_dir()
        if source != Path(base_dir).resolve() / "proto":
            shutil.copytree(source, Path(base_dir) / "proto", dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildWithStubs, "sdist": SdistWithProtos})

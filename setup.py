"""Build hook: generate the gRPC stubs from proto/ into strata_csi._proto.

The stubs are build products, never committed. protoc's virtual-path mapping
(-Istrata_csi/_proto=proto) makes the generated modules import each other by their
package path, so they work wherever the package is installed.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
PROTOS = ["csi.proto", "deviceplugin/v1beta1/api.proto"]
PACKAGE = "strata_csi/_proto"
OUT = ROOT / "csi-driver"


def generate_stubs() -> None:
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    for proto in PROTOS:
        args = [
            "protoc",
            f"-I{PACKAGE}={ROOT / 'proto'}",
            f"-I{include}",
            f"--python_out={OUT}",
            f"--pyi_out={OUT}",
            f"--grpc_python_out={OUT}",
            f"{PACKAGE}/{proto}",
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed for proto/{proto}")
    # Make every generated directory a package.
    for directory in [OUT / PACKAGE, *(OUT / PACKAGE).rglob("*")]:
        if directory.is_dir():
            (directory / "__init__.py").touch()


class BuildWithStubs(build_py):
    def run(self) -> None:
        generate_stubs()
        super().run()


setup(cmdclass={"build_py": BuildWithStubs})

"""Build hook: a wheel (or sdist-built wheel) carries its generated gRPC code and its SQL.

Everything else about the package is in pyproject.toml. `build_py` generates `zephyr/v1/*_pb2*`
from `proto/` with grpcio-tools (a build requirement) and copies `data/` (the one source of the SQL)
into the package as `zephyr/data/`, so an installed wheel needs neither `make proto` nor a checkout.
Editable installs use the checkout itself: `make proto` generates in place and `data/` is found beside
the package.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PROTO_DIR = ROOT / "proto"
DATA_DIR = ROOT / "data"
SQL_FOLDERS = ("queries", "migrations")


def generate_grpc(out_dir: Path) -> None:
    """Run protoc on `proto/zephyr/v1/*.proto` into `out_dir` (modules land in out_dir/zephyr/v1/)."""
    from grpc_tools import protoc  # a build requirement: imported only when building

    protos = sorted(str(path.relative_to(PROTO_DIR)) for path in (PROTO_DIR / "zephyr" / "v1").glob("*.proto"))
    if not protos:
        raise RuntimeError(f"no .proto files under {PROTO_DIR}")
    include = str(Path(protoc.__file__).parent / "_proto")  # google/protobuf/*.proto
    out = str(out_dir)
    status = protoc.main(
        ["protoc", f"-I{PROTO_DIR}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}",
         f"--pyi_out={out}", *protos]
    )
    if status != 0:
        raise RuntimeError(f"protoc failed with status {status} on {protos}")


def copy_sql(package_dir: Path) -> None:
    """Copy data/queries and data/migrations into the built package as zephyr/data/."""
    for folder in SQL_FOLDERS:
        target = package_dir / "data" / folder
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for path in sorted((DATA_DIR / folder).glob("*.sql")):
            shutil.copy2(path, target / path.name)


class BuildWithGeneratedCode(build_py):
    """`build_py` plus the gRPC modules and the SQL files of the installed package."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        build_lib = Path(self.build_lib)
        generate_grpc(build_lib)
        copy_sql(build_lib / "zephyr")


setup(cmdclass={"build_py": BuildWithGeneratedCode})

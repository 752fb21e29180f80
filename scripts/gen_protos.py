"""Generate the Python protobuf and gRPC code of proto/ into the SDK (`make protos`)."""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "sdk" / "src"
PACKAGE = Path("cmo") / "api" / "v1"


def generate(out: Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / PACKAGE).glob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--pyi_out={out}",
        f"--mypy_grpc_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")


def generated_files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in (root / PACKAGE).glob("*_pb2*.py*")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the checked-in code is stale")
    check = parser.parse_args().check
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        new, old = generated_files(fresh), generated_files(OUT_DIR)
        stale = sorted(
            str(p) for p in new | old if p not in new or p not in old or not filecmp.cmp(fresh / p, OUT_DIR / p)
        )
        if check:
            if stale:
                sys.exit("generated protobuf code is stale, run `make protos`: " + ", ".join(stale))
            print("generated protobuf code is up to date")
            return
        for p in old - new:
            (OUT_DIR / p).unlink()
        for p in new:
            shutil.copyfile(fresh / p, OUT_DIR / p)
        print(f"generated {len(new)} files under {OUT_DIR.relative_to(ROOT) / PACKAGE}")


if __name__ == "__main__":
    main()

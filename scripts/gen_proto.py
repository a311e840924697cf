"""Regenerate the OpAMP protobuf modules (``make proto``).

Compiles ``otelcockpit/opamp_server/proto/opamp/v1/{anyvalue,opamp}.proto`` with grpcio-tools into
``otelcockpit/opamp_server/proto/{anyvalue,opamp}_pb2.py`` (+ ``.pyi``), then rewrites the generated
``from opamp.v1 import anyvalue_pb2`` so that the modules import inside our package:
``from otelcockpit.opamp_server.proto import opamp_pb2``.

The generated code checks the protobuf runtime version, so grpcio-tools and protobuf are pinned together
in pyproject.toml.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "otelcockpit" / "opamp_server" / "proto"
SOURCES = ["opamp/v1/anyvalue.proto", "opamp/v1/opamp.proto"]
IMPORT_RE = re.compile(r"^from opamp\.v1 import (\w+) as (\w+)$", re.MULTILINE)
IMPORT_PLAIN_RE = re.compile(r"^from opamp\.v1 import (\w+)$", re.MULTILINE)


def main() -> int:
    try:
        from grpc_tools import protoc  # type: ignore[import-untyped]
    except ImportError:
        print("gen_proto: grpcio-tools is not installed (pip install -e '.[dev]')", file=sys.stderr)
        return 1
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_DIR}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            *SOURCES,
        ]
        rc = protoc.main(args)
        if rc != 0:
            print(f"gen_proto: protoc failed with {rc}", file=sys.stderr)
            return 1
        out = Path(tmp) / "opamp" / "v1"
        for gen in sorted(out.iterdir()):
            if gen.suffix not in (".py", ".pyi"):
                continue
            text = gen.read_text(encoding="utf-8")
            text = IMPORT_RE.sub(r"from otelcockpit.opamp_server.proto import \1 as \2", text)
            text = IMPORT_PLAIN_RE.sub(r"from otelcockpit.opamp_server.proto import \1", text)
            target = PROTO_DIR / gen.name
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target.relative_to(ROOT)}")
    init = PROTO_DIR / "__init__.py"
    if not init.exists():
        init.write_text('"""Generated OpAMP protobuf modules (scripts/gen_proto.py)."""\n', encoding="utf-8")
    shutil.rmtree(PROTO_DIR / "__pycache__", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

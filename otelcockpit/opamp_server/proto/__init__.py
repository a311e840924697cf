"""Generated OpAMP protobuf modules (scripts/gen_proto.py)."""

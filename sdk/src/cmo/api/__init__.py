"""The wire contract: generated protobuf and gRPC code, by API version."""

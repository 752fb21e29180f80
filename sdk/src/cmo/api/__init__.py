"""The wire contract: generated protobuf and gRPC code, by API version, and what is read from it."""

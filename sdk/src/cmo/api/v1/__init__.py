"""CMO API v1, generated from proto/cmo/api/v1 (never edit the *_pb2* modules by hand)."""

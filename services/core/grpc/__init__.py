"""gRPC plumbing shared by every service: the one interceptor, the server host, authenticated channels."""

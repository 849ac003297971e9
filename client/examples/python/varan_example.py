#!/usr/bin/python3
"""Varan from Python: list the peripheries, then run a command on them.

Shows core's operator API over plain gRPC: a unary call
(varan.v1.Fleet/ListPeripheries) and a server-streaming one
(varan.v1.Jobs/Exec), both authenticated with the metadata
`authorization: Bearer <token>`, over TLS verified against core's cluster CA
(core serves TLS by default). Exits 0 only if the job SUCCEEDED.

Run (Debian: apt-get install python3-grpcio protobuf-compiler-grpc):

    protoc -I proto -I /usr/include --python_out=gen --grpc_python_out=gen \\
        --plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin \\
        proto/varan/v1/*.proto
    PYTHONPATH=gen /usr/bin/python3 client/examples/python/varan_example.py \\
        --core localhost:7700 --token-file .varan/core/admin.token \\
        --ca-file .varan/core/pki/ca.crt --selector env=test -- echo hello

--core, --token-file and --ca-file default to $VARAN_CORE, $VARAN_TOKEN_FILE
and $VARAN_CA_FILE.
"""

import argparse
import os
import sys

import grpc

from varan.v1 import common_pb2, core_pb2, core_pb2_grpc

# Deadline of the unary call; Exec has none (a command may run for long) and
# ends when the job finishes.
UNARY_TIMEOUT_S = 10


def parse_args():
    parser = argparse.ArgumentParser(
        description="List Varan peripheries and run a command on them.")
    parser.add_argument("--core", default=os.environ.get("VARAN_CORE"),
                        help="core address, e.g. '[::1]:7700' "
                        "(default: $VARAN_CORE)")
    parser.add_argument("--token-file",
                        default=os.environ.get("VARAN_TOKEN_FILE"),
                        help="file holding an operator token "
                        "(default: $VARAN_TOKEN_FILE)")
    parser.add_argument("--ca-file", default=os.environ.get("VARAN_CA_FILE"),
                        help="core's CA certificate, <core data dir>/pki/"
                        "ca.crt (default: $VARAN_CA_FILE)")
    parser.add_argument("--server-name", default="",
                        help="the name core's certificate must carry, when "
                        "--core is an address it was not made for (core's "
                        "certificates always carry 'varan-core')")
    parser.add_argument("--insecure-plaintext", action="store_true",
                        help="no TLS, for a core started with "
                        "--insecure-plaintext")
    parser.add_argument("--selector", default="",
                        help="label selector, e.g. 'env=test' "
                        "(default: every periphery)")
    parser.add_argument("command", nargs="+",
                        help="shell command to run on the peripheries")
    args = parser.parse_args()
    if not args.core or not args.token_file:
        parser.error("--core and --token-file (or $VARAN_CORE and "
                     "$VARAN_TOKEN_FILE) are required")
    if not args.ca_file and not args.insecure_plaintext:
        parser.error("core serves TLS: pass --ca-file <core data dir>/pki/"
                     "ca.crt (or $VARAN_CA_FILE), or --insecure-plaintext "
                     "for a core started with --insecure-plaintext")
    if args.ca_file and args.insecure_plaintext:
        parser.error("--ca-file and --insecure-plaintext exclude each other")
    return args


def open_channel(args):
    """A channel to core: TLS checked against --ca-file, or plaintext."""
    if args.insecure_plaintext:
        return grpc.insecure_channel(args.core)
    with open(args.ca_file, "rb") as f:
        credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    options = []
    if args.server_name:
        options.append(("grpc.ssl_target_name_override", args.server_name))
    return grpc.secure_channel(args.core, credentials, options=options)


def list_peripheries(channel, metadata, selector):
    fleet = core_pb2_grpc.FleetStub(channel)
    request = core_pb2.ListPeripheriesRequest(
        target=core_pb2.Target(selector=selector))
    peripheries = []
    while True:  # a page at a time, until next_page_token is empty
        response = fleet.ListPeripheries(request, metadata=metadata,
                                         timeout=UNARY_TIMEOUT_S)
        peripheries.extend(response.peripheries)
        if not response.next_page_token:
            break
        request.page_token = response.next_page_token
    print(f"{len(peripheries)} peripheries:")
    for p in peripheries:
        labels = ",".join(f"{k}={v}" for k, v in sorted(p.labels.items()))
        state = core_pb2.PeripheryState.Name(p.state)
        print(f"  {p.name}\t{state}\t{labels}")


def exec_command(channel, metadata, selector, command):
    """Streams the job's events; returns True if the job SUCCEEDED."""
    jobs = core_pb2_grpc.JobsStub(channel)
    request = core_pb2.DispatchRequest(
        target=core_pb2.Target(selector=selector))
    request.spec.shell = command
    succeeded = False
    for event in jobs.Exec(request, metadata=metadata):
        kind = event.WhichOneof("event")
        if kind == "accepted":
            print(f"job {event.job_id} on {', '.join(event.accepted.targets)}")
        elif kind == "output":
            out = (sys.stderr if event.output.stream ==
                   common_pb2.OUTPUT_STREAM_STDERR else sys.stdout)
            out.buffer.write(event.output.data)
            out.flush()
        elif kind == "finished":
            status = event.finished.exit_status
            print(f"{event.target}: "
                  f"{core_pb2.TargetState.Name(event.finished.state)} "
                  f"(exit code {status.code}) {event.finished.error}".rstrip())
        elif kind == "job_finished":
            state = event.job_finished.state
            print(f"job {event.job_id}: {core_pb2.JobState.Name(state)}")
            succeeded = state == core_pb2.JOB_STATE_SUCCEEDED
    return succeeded


def main():
    args = parse_args()
    with open(args.token_file, encoding="utf-8") as f:
        token = f.read().strip()
    metadata = [("authorization", f"Bearer {token}")]
    with open_channel(args) as channel:
        try:
            list_peripheries(channel, metadata, args.selector)
            ok = exec_command(channel, metadata, args.selector,
                              " ".join(args.command))
        except grpc.RpcError as e:
            print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
            return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

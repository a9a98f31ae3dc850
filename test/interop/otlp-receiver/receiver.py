"""A tiny OTLP/gRPC trace collector for the interop suite: serves opentelemetry.proto.collector.trace.v1.TraceService
on 127.0.0.1 (an ephemeral port, printed first as {"listening": port}) and prints every span it receives as one JSON
line. Exits when its standard input closes (the test process is gone). An independent implementation of the OTLP
receiving side (the Python protobuf/grpcio stack), so the test checks pd-router's export on the wire, not with the same
library at both ends.
"""
import json
import sys
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


def value(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    x = getattr(v, kind)
    if kind == "array_value":
        return [value(i) for i in x.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in x.values}
    if kind == "bytes_value":
        return x.hex()
    return x


class Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        for rs in request.resource_spans:
            resource = {a.key: value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for span in ss.spans:
                    line = {
                        "service": resource.get("service.name"),
                        "scope": ss.scope.name,
                        "traceId": span.trace_id.hex(),
                        "spanId": span.span_id.hex(),
                        "parentSpanId": span.parent_span_id.hex(),
                        "name": span.name,
                        "kind": span.kind,
                        "startNs": span.start_time_unix_nano,
                        "endNs": span.end_time_unix_nano,
                        "status": span.status.code,
                        "attributes": {a.key: value(a.value) for a in span.attributes},
                    }
                    sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        return trace_service_pb2.ExportTraceServiceResponse()


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    sys.stdout.write(json.dumps({"listening": port}) + "\n")
    sys.stdout.flush()
    sys.stdin.read()
    server.stop(0)


if __name__ == "__main__":
    main()

/**
 * Envoy's external-processing gRPC API (envoy.service.ext_proc.v3), loaded once from our v1.37 protos in `proto/`
 * (which shadow the older copies in @grpc/grpc-js-xds) plus the base types @grpc/grpc-js-xds ships. The EPP serves it,
 * the gateway (a client playing Envoy) and the tests call it.
 *
 * Messages are plain objects as @grpc/proto-loader produces them with `keepCase`: Envoy's own fields are snake_case
 * (`request_headers`, `end_of_stream`), enums are their names as strings, bytes are Buffers. Well-known types keep
 * protobuf.js's camelCase names (`structValue`, `stringValue`, `listValue`).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const EXT_PROC_PROTO = 'envoy/service/ext_proc/v3/external_processor.proto';

/** The repository (or installed package) root: the nearest ancestor holding proto/; works from src/ and dist/src/. */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, 'proto', EXT_PROC_PROTO))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`cannot find proto/${EXT_PROC_PROTO} above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

/** Include paths for our protos: proto/ MUST come first so our v1.37 ext_proc files shadow grpc-js-xds's copies. */
export function protoIncludeDirs(root = packageRoot()): string[] {
  // Resolved like an import, so it also works when pd-router is installed and its dependencies are hoisted.
  const xds = path.dirname(createRequire(import.meta.url).resolve('@grpc/grpc-js-xds/package.json'));
  const deps = path.join(xds, 'deps');
  return [
    path.join(root, 'proto'),
    ...['envoy-api', 'googleapis', 'xds', 'protoc-gen-validate'].map((text) => path.join(deps, text)),
  ];
}

export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** Loads proto files (relative to the include dirs) as a proto-loader package definition. */
export function loadProtoDefinition(files: string[]): protoLoader.PackageDefinition {
  return protoLoader.loadSync(files, { ...PROTO_LOADER_OPTIONS, includeDirs: protoIncludeDirs() });
}

/** Loads proto files (relative to the include dirs) into a grpc package object. */
export function loadProtoPackage(files: string[]): grpc.GrpcObject {
  return grpc.loadPackageDefinition(loadProtoDefinition(files));
}

let cached:
  | {
      definition: protoLoader.PackageDefinition;
      service: grpc.ServiceDefinition;
      client: grpc.ServiceClientConstructor;
    }
  | undefined;

function load() {
  if (!cached) {
    const definition = loadProtoDefinition([EXT_PROC_PROTO]);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-assignment -- the package is built from the proto at run time
    const pkg = grpc.loadPackageDefinition(definition) as any;
    // eslint-disable-next-line @typescript-eslint/no-unsafe-member-access -- the service's path in the proto
    const client = pkg.envoy.service.ext_proc.v3.ExternalProcessor as grpc.ServiceClientConstructor;
    cached = { definition, service: client.service, client };
  }
  return cached;
}

/** Fully qualified service name, also a gRPC health service name upstream reports. */
export const EXT_PROC_SERVICE_NAME = 'envoy.service.ext_proc.v3.ExternalProcessor';

/** Service definition to pass to `server.addService`. */
export function extProcServiceDefinition(): grpc.ServiceDefinition {
  return load().service;
}

/** The loaded ext_proc protos (proto-loader's package definition: message and enum descriptors). */
export function extProcPackageDefinition(): protoLoader.PackageDefinition {
  return load().definition;
}

/** Client constructor: `new (extProcClientConstructor())(address, credentials)`, then `.Process()` for a duplex stream. */
export function extProcClientConstructor(): grpc.ServiceClientConstructor {
  return load().client;
}

// ---- Message shapes (the subset of fields pd-router reads or writes) ----

export interface HeaderValue {
  key: string;
  value?: string;
  raw_value?: Buffer | Uint8Array;
}

export type HeaderAppendAction =
  'APPEND_IF_EXISTS_OR_ADD' | 'ADD_IF_ABSENT' | 'OVERWRITE_IF_EXISTS_OR_ADD' | 'OVERWRITE_IF_EXISTS';

export interface HeaderValueOption {
  header: HeaderValue;
  /** Deprecated in Envoy's API but the only field its ext_proc filter reads: true adds a value, unset or false replaces. */
  append?: { value?: boolean } | null;
  /** Ignored by Envoy's ext_proc filter; pd-router's EPP sets OVERWRITE_IF_EXISTS_OR_ADD, which means the same there. */
  append_action?: HeaderAppendAction;
}

export interface HeaderMap {
  headers: HeaderValue[];
}

export interface HttpHeaders {
  headers?: HeaderMap | null;
  end_of_stream?: boolean;
}

export interface HttpBody {
  body?: Buffer | Uint8Array;
  end_of_stream?: boolean;
}

export interface HttpTrailers {
  trailers?: HeaderMap | null;
}

/** google.protobuf.Value / Struct as protobuf.js represents them. */
export type ProtoValue =
  | { nullValue: 'NULL_VALUE'; kind?: 'nullValue' }
  | { numberValue: number; kind?: 'numberValue' }
  | { stringValue: string; kind?: 'stringValue' }
  | { boolValue: boolean; kind?: 'boolValue' }
  | { structValue: ProtoStruct; kind?: 'structValue' }
  | { listValue: { values: ProtoValue[] }; kind?: 'listValue' };

export interface ProtoStruct {
  fields: Record<string, ProtoValue>;
}

export interface Metadata {
  filter_metadata?: Record<string, ProtoStruct>;
}

export interface ProcessingRequest {
  request?:
    | 'request_headers'
    | 'response_headers'
    | 'request_body'
    | 'response_body'
    | 'request_trailers'
    | 'response_trailers';
  request_headers?: HttpHeaders | null;
  response_headers?: HttpHeaders | null;
  request_body?: HttpBody | null;
  response_body?: HttpBody | null;
  request_trailers?: HttpTrailers | null;
  response_trailers?: HttpTrailers | null;
  metadata_context?: Metadata | null;
  observability_mode?: boolean;
}

export interface HeaderMutation {
  set_headers?: HeaderValueOption[];
  remove_headers?: string[];
}

export interface StreamedBodyResponse {
  body: Buffer | Uint8Array;
  end_of_stream: boolean;
}

export interface CommonResponse {
  status?: 'CONTINUE' | 'CONTINUE_AND_REPLACE';
  header_mutation?: HeaderMutation;
  body_mutation?: { streamed_response: StreamedBodyResponse } | { body: Buffer } | { clear_body: boolean };
  clear_route_cache?: boolean;
}

export interface ImmediateResponse {
  status: { code: string };
  headers?: HeaderMutation;
  body?: Buffer | Uint8Array;
  details?: string;
}

export interface ProcessingResponse {
  request_headers?: { response: CommonResponse };
  response_headers?: { response: CommonResponse };
  request_body?: { response: CommonResponse };
  response_body?: { response: CommonResponse };
  request_trailers?: { header_mutation?: HeaderMutation };
  response_trailers?: { header_mutation?: HeaderMutation };
  immediate_response?: ImmediateResponse;
  dynamic_metadata?: ProtoStruct;
}

// ---- Helpers ----

/** A header's value: `raw_value` when present (Envoy sends values there), else `value`. */
export function headerValueText(headerValue: HeaderValue): string {
  if (headerValue.raw_value !== undefined && headerValue.raw_value !== null && headerValue.raw_value.length > 0)
    return asBuffer(headerValue.raw_value).toString('utf8');
  return headerValue.value ?? '';
}

/** Converts a protobuf Struct to plain JSON values. */
export function structToJson(protoStruct: ProtoStruct | null | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(protoStruct?.fields ?? {})) out[k] = valueToJson(v);
  return out;
}

/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-member-access -- a protobuf Value decoded by proto-loader: which field is set is known only at run time */
export function valueToJson(value: ProtoValue | null | undefined): unknown {
  if (!value) return null;
  const any = value as Record<string, any>;
  const kind: string | undefined =
    any.kind ?? Object.keys(any).find((k) => k.endsWith('Value') && any[k] !== undefined && any[k] !== null);
  switch (kind) {
    case 'stringValue':
      return any.stringValue;
    case 'numberValue':
      return any.numberValue;
    case 'boolValue':
      return any.boolValue;
    case 'structValue':
      return structToJson(any.structValue);
    case 'listValue':
      return (any.listValue?.values ?? []).map(valueToJson);
    default:
      return null;
  }
}
/* eslint-enable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-member-access */

const EMPTY = Buffer.alloc(0);

/** A protobuf `bytes` field as a Buffer, without copying (proto-loader already decodes them as Buffers). */
export function asBuffer(bytes: Uint8Array | null | undefined): Buffer {
  if (!bytes || bytes.length === 0) return EMPTY;
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** envoy.type.v3.StatusCode: the enum names proto-loader gives (enums as strings), by HTTP status. */
const ENVOY_STATUS_NAMES: Readonly<Record<number, string>> = {
  200: 'OK',
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  408: 'RequestTimeout',
  412: 'PreconditionFailed',
  413: 'PayloadTooLarge',
  429: 'TooManyRequests',
  500: 'InternalServerError',
  502: 'BadGateway',
  503: 'ServiceUnavailable',
  504: 'GatewayTimeout',
};
const ENVOY_STATUS_NUMBERS: Readonly<Record<string, number>> = Object.fromEntries(
  Object.entries(ENVOY_STATUS_NAMES).map(([code, name]) => [name, Number(code)]),
);

/** The StatusCode enum name for an HTTP status (InternalServerError for one the table lacks). */
export function envoyStatusName(status: number): string {
  return ENVOY_STATUS_NAMES[status] ?? 'InternalServerError';
}

/** The HTTP status of a StatusCode, given as its enum name or number (500 for one the table lacks). */
export function envoyStatusNumber(code: string | number | undefined | null): number {
  if (typeof code === 'number') return code || 500;
  if (code && /^\d+$/.test(code)) return Number(code) || 500;
  return ENVOY_STATUS_NUMBERS[code ?? ''] ?? 500;
}

/**
 * The EPP's codec for its one hot gRPC method, ext_proc `Process`: the messages are read and written with protobuf.js'
 * wire reader and writer directly, laid out by hand, instead of through @grpc/proto-loader's reflection path
 * (`toObject(decode())` and `encode(fromObject())`, which build every message twice and were ~10% of the EPP's CPU per
 * decision).
 *
 * - Decoding gives exactly the object proto-loader gives with `PROTO_LOADER_OPTIONS` (defaults filled in, enums as
 *   names, bytes as Buffers sharing the message's memory, `request` naming the oneof member set). A message carrying
 *   `metadata_context`, `attributes` or HttpHeaders' deprecated `attributes` (Structs, rare on the request path) is
 *   handed to proto-loader's deserializer whole.
 * - Encoding writes the fields of pd-router's `ProcessingResponse` shape in field-number order, a field whenever it is
 *   neither undefined nor null (as protobuf.js does after fromObject), so the bytes are the library's.
 *
 * Enum numbers come from the loaded protos, not from a copy. `test/common/ext-proc-codec.test.ts` checks both
 * directions against proto-loader on generated messages.
 */
import type * as grpc from '@grpc/grpc-js';
import type * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs/minimal.js';
import type {
  HeaderMutation,
  HeaderValue,
  HeaderValueOption,
  ProcessingRequest,
  ProcessingResponse,
  ProtoStruct,
  ProtoValue,
} from './ext-proc.js';

const { Reader, Writer } = protobuf;
type ProtoReader = protobuf.Reader;
type ProtoWriter = protobuf.Writer;

const EMPTY = Buffer.alloc(0);

// Wire types.
const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const tag = (field: number, wireType: number) => ((field << 3) | wireType) >>> 0;

interface EnumTable {
  byName: Map<string, number>;
  byNumber: Map<number, string>;
}

type EnumValues = { name: string; number: number }[];

interface Descriptor {
  type?: { value?: EnumValues; enumType?: { name: string; value?: EnumValues }[] };
}

/** A top-level enum's values, or a nested one's from its message's descriptor. */
function enumValues(definition: protoLoader.PackageDefinition, name: string): EnumValues | undefined {
  const top = (definition[name] as Descriptor | undefined)?.type?.value;
  if (top) return top;
  const dot = name.lastIndexOf('.');
  const parent = definition[name.slice(0, dot)] as Descriptor | undefined;
  return parent?.type?.enumType?.find((entry) => entry.name === name.slice(dot + 1))?.value;
}

function enumTable(definition: protoLoader.PackageDefinition, name: string): EnumTable {
  const values = enumValues(definition, name);
  if (!values) throw new Error(`ext_proc codec: enum ${name} is not in the loaded protos`);
  const byName = new Map<string, number>();
  const byNumber = new Map<number, string>();
  for (const { name: valueName, number } of values) {
    byName.set(valueName, number);
    // The first name of a number is the one protobuf.js reports (aliases come later).
    if (!byNumber.has(number)) byNumber.set(number, valueName);
  }
  return { byName, byNumber };
}

/** An enum field's value: its number by name (a number is taken as is; an unknown name is 0, as fromObject does). */
function enumNumber(table: EnumTable, value: string | number): number {
  if (typeof value === 'number') return value;
  return table.byName.get(value) ?? 0;
}

/** An enum's name as toObject gives it with `enums: String` (the number itself when the protos do not name it). */
function enumName(table: EnumTable, value: number): string | number {
  return table.byNumber.get(value) ?? value;
}

/** Signals a message the hand decoder leaves to proto-loader. */
class NeedsLibrary extends Error {}
const NEEDS_LIBRARY = new NeedsLibrary('handled by proto-loader');

const REQUEST_MEMBERS = [
  undefined,
  undefined,
  'request_headers',
  'response_headers',
  'request_body',
  'response_body',
  'request_trailers',
  'response_trailers',
] as const;

export class ExtProcCodec {
  private readonly statusCodes: EnumTable;
  private readonly appendActions: EnumTable;
  private readonly responseStatuses: EnumTable;
  private readonly bodySendModes: EnumTable;

  constructor(
    definition: protoLoader.PackageDefinition,
    private readonly fallback: grpc.MethodDefinition<unknown, unknown>,
  ) {
    this.statusCodes = enumTable(definition, 'envoy.type.v3.StatusCode');
    this.appendActions = enumTable(definition, 'envoy.config.core.v3.HeaderValueOption.HeaderAppendAction');
    this.responseStatuses = enumTable(definition, 'envoy.service.ext_proc.v3.CommonResponse.ResponseStatus');
    this.bodySendModes = enumTable(definition, 'envoy.extensions.filters.http.ext_proc.v3.ProcessingMode.BodySendMode');
  }

  // ---- ProcessingRequest ----

  readonly decodeRequest = (bytes: Buffer): ProcessingRequest => {
    try {
      return this.processingRequest(Reader.create(bytes));
    } catch (err) {
      if (err === NEEDS_LIBRARY) return this.fallback.requestDeserialize(bytes) as ProcessingRequest;
      throw err;
    }
  };

  private processingRequest(reader: ProtoReader): ProcessingRequest {
    const out: Record<string, unknown> = {
      attributes: {},
      metadata_context: null,
      observability_mode: false,
      protocol_config: null,
    };
    while (reader.pos < reader.len) {
      const t = reader.uint32();
      const field = t >>> 3;
      switch (field) {
        case 2:
        case 3: {
          const member = REQUEST_MEMBERS[field];
          out[member] = this.httpHeaders(reader, reader.uint32());
          out.request = member;
          break;
        }
        case 4:
        case 5: {
          const member = REQUEST_MEMBERS[field];
          out[member] = httpBody(reader, reader.uint32());
          out.request = member;
          break;
        }
        case 6:
        case 7: {
          const member = REQUEST_MEMBERS[field];
          out[member] = httpTrailers(reader, reader.uint32());
          out.request = member;
          break;
        }
        case 8: // metadata_context
        case 9: // attributes
          throw NEEDS_LIBRARY;
        case 10:
          out.observability_mode = reader.bool();
          break;
        case 11:
          out.protocol_config = this.protocolConfig(reader, reader.uint32());
          break;
        default:
          reader.skipType(t & 7);
      }
    }
    return out;
  }

  private httpHeaders(reader: ProtoReader, length: number): Record<string, unknown> {
    const end = reader.pos + length;
    const out: Record<string, unknown> = { attributes: {}, headers: null, end_of_stream: false };
    while (reader.pos < end) {
      const t = reader.uint32();
      switch (t >>> 3) {
        case 1:
          out.headers = headerMap(reader, reader.uint32());
          break;
        case 2: // the deprecated attributes map
          throw NEEDS_LIBRARY;
        case 3:
          out.end_of_stream = reader.bool();
          break;
        default:
          reader.skipType(t & 7);
      }
    }
    return out;
  }

  private protocolConfig(reader: ProtoReader, length: number): Record<string, unknown> {
    const end = reader.pos + length;
    const out: Record<string, unknown> = {
      request_body_mode: enumName(this.bodySendModes, 0),
      response_body_mode: enumName(this.bodySendModes, 0),
      send_body_without_waiting_for_header_response: false,
    };
    while (reader.pos < end) {
      const t = reader.uint32();
      switch (t >>> 3) {
        case 1:
          out.request_body_mode = enumName(this.bodySendModes, reader.int32());
          break;
        case 2:
          out.response_body_mode = enumName(this.bodySendModes, reader.int32());
          break;
        case 3:
          out.send_body_without_waiting_for_header_response = reader.bool();
          break;
        default:
          reader.skipType(t & 7);
      }
    }
    return out;
  }

  // ---- ProcessingResponse ----

  readonly encodeResponse = (response: ProcessingResponse): Buffer => {
    const body = streamedBodyOnly(response);
    if (body) return encodeStreamedBody(body);
    const writer = Writer.create();
    this.processingResponse(writer, response);
    return writer.finish() as Buffer;
  };

  private processingResponse(writer: ProtoWriter, message: ProcessingResponse): void {
    if (message.request_headers != null)
      this.commonResponseHolder(writer.uint32(tag(1, LENGTH_DELIMITED)).fork(), message.request_headers);
    if (message.response_headers != null)
      this.commonResponseHolder(writer.uint32(tag(2, LENGTH_DELIMITED)).fork(), message.response_headers);
    if (message.request_body != null)
      this.commonResponseHolder(writer.uint32(tag(3, LENGTH_DELIMITED)).fork(), message.request_body);
    if (message.response_body != null)
      this.commonResponseHolder(writer.uint32(tag(4, LENGTH_DELIMITED)).fork(), message.response_body);
    if (message.request_trailers != null)
      this.trailersResponse(writer.uint32(tag(5, LENGTH_DELIMITED)).fork(), message.request_trailers);
    if (message.response_trailers != null)
      this.trailersResponse(writer.uint32(tag(6, LENGTH_DELIMITED)).fork(), message.response_trailers);
    if (message.immediate_response != null) {
      const immediate = message.immediate_response;
      writer.uint32(tag(7, LENGTH_DELIMITED)).fork();
      if (immediate.status != null) {
        writer.uint32(tag(1, LENGTH_DELIMITED)).fork();
        if (immediate.status.code != null)
          writer.uint32(tag(1, VARINT)).int32(enumNumber(this.statusCodes, immediate.status.code));
        writer.ldelim();
      }
      if (immediate.headers != null)
        this.headerMutation(writer.uint32(tag(2, LENGTH_DELIMITED)).fork(), immediate.headers);
      if (immediate.body != null) writer.uint32(tag(3, LENGTH_DELIMITED)).bytes(immediate.body);
      if (immediate.details != null) writer.uint32(tag(5, LENGTH_DELIMITED)).string(immediate.details);
      writer.ldelim();
    }
    if (message.dynamic_metadata != null)
      struct(writer.uint32(tag(8, LENGTH_DELIMITED)).fork(), message.dynamic_metadata);
  }

  /** HeadersResponse / BodyResponse: `response` (1), a CommonResponse. Ends the forked message. */
  private commonResponseHolder(writer: ProtoWriter, holder: NonNullable<ProcessingResponse['request_headers']>): void {
    const c = holder.response;
    if (c != null) {
      writer.uint32(tag(1, LENGTH_DELIMITED)).fork();
      if (c.status != null) writer.uint32(tag(1, VARINT)).int32(enumNumber(this.responseStatuses, c.status));
      if (c.header_mutation != null)
        this.headerMutation(writer.uint32(tag(2, LENGTH_DELIMITED)).fork(), c.header_mutation);
      if (c.body_mutation != null) {
        const b = c.body_mutation as { body?: Buffer | null; clear_body?: boolean | null; streamed_response?: never };
        writer.uint32(tag(3, LENGTH_DELIMITED)).fork();
        if (b.body != null) writer.uint32(tag(1, LENGTH_DELIMITED)).bytes(b.body);
        if (b.clear_body != null) writer.uint32(tag(2, VARINT)).bool(b.clear_body);
        const s = (
          c.body_mutation as { streamed_response?: { body?: Uint8Array | null; end_of_stream?: boolean | null } }
        ).streamed_response;
        if (s != null) {
          writer.uint32(tag(3, LENGTH_DELIMITED)).fork();
          if (s.body != null) writer.uint32(tag(1, LENGTH_DELIMITED)).bytes(s.body);
          if (s.end_of_stream != null) writer.uint32(tag(2, VARINT)).bool(s.end_of_stream);
          writer.ldelim();
        }
        writer.ldelim();
      }
      if (c.clear_route_cache != null) writer.uint32(tag(5, VARINT)).bool(c.clear_route_cache);
      writer.ldelim();
    }
    writer.ldelim();
  }

  /** TrailersResponse: `header_mutation` (1). Ends the forked message. */
  private trailersResponse(writer: ProtoWriter, trailers: { header_mutation?: HeaderMutation | null }): void {
    if (trailers.header_mutation != null)
      this.headerMutation(writer.uint32(tag(1, LENGTH_DELIMITED)).fork(), trailers.header_mutation);
    writer.ldelim();
  }

  /** HeaderMutation: `set_headers` (1), `remove_headers` (2). Ends the forked message. */
  private headerMutation(writer: ProtoWriter, mutation: HeaderMutation): void {
    if (mutation.set_headers != null)
      for (const option of mutation.set_headers)
        this.headerValueOption(writer.uint32(tag(1, LENGTH_DELIMITED)).fork(), option);
    if (mutation.remove_headers != null)
      for (const name of mutation.remove_headers) writer.uint32(tag(2, LENGTH_DELIMITED)).string(name);
    writer.ldelim();
  }

  /** HeaderValueOption: `header` (1), `append` (2, a BoolValue), `append_action` (3). Ends the forked message. */
  private headerValueOption(writer: ProtoWriter, option: HeaderValueOption): void {
    if (option.header != null) headerValue(writer.uint32(tag(1, LENGTH_DELIMITED)).fork(), option.header);
    if (option.append != null) {
      writer.uint32(tag(2, LENGTH_DELIMITED)).fork();
      if (option.append.value != null) writer.uint32(tag(1, VARINT)).bool(option.append.value);
      writer.ldelim();
    }
    if (option.append_action != null)
      writer.uint32(tag(3, VARINT)).int32(enumNumber(this.appendActions, option.append_action));
    writer.ldelim();
  }
}

// ---- The streamed body chunk: the most frequent and largest response, written in one allocation ----

interface StreamedBodyOnly {
  field: number;
  body: Uint8Array | null | undefined;
  endOfStream: boolean | null | undefined;
}

const keyCount = (value: object) => Object.keys(value).length;

/** The chunk of a response that is exactly `{request_body|response_body: {response: {body_mutation: {streamed_response}}}}`. */
function streamedBodyOnly(response: ProcessingResponse): StreamedBodyOnly | undefined {
  const holder = response.request_body ?? response.response_body;
  const common = holder?.response;
  const mutation = common?.body_mutation;
  const streamed = (mutation as { streamed_response?: { body?: Uint8Array | null; end_of_stream?: boolean | null } })
    ?.streamed_response;
  if (streamed == null || keyCount(response) !== 1 || keyCount(holder!) !== 1 || keyCount(common!) !== 1)
    return undefined;
  if (keyCount(mutation!) !== 1 || keyCount(streamed) > 2) return undefined;
  return {
    field: response.request_body != null ? 3 : 4,
    body: streamed.body,
    endOfStream: streamed.end_of_stream,
  };
}

function varintSize(value: number): number {
  let size = 1;
  for (let rest = value >>> 7; rest !== 0; rest >>>= 7) size++;
  return size;
}

function writeVarint(out: Buffer, at: number, value: number): number {
  let pos = at;
  let rest = value >>> 0;
  while (rest > 0x7f) {
    out[pos++] = (rest & 0x7f) | 0x80;
    rest >>>= 7;
  }
  out[pos++] = rest;
  return pos;
}

/** ProcessingResponse > BodyResponse (1) > CommonResponse.body_mutation (3) > streamed_response (3) > body (1), end_of_stream (2). */
function encodeStreamedBody({ field, body, endOfStream }: StreamedBodyOnly): Buffer {
  const streamed = (body != null ? 1 + varintSize(body.length) + body.length : 0) + (endOfStream != null ? 2 : 0);
  const mutation = 1 + varintSize(streamed) + streamed;
  const common = 1 + varintSize(mutation) + mutation;
  const holder = 1 + varintSize(common) + common;
  const out = Buffer.allocUnsafe(1 + varintSize(holder) + holder);
  let pos = 0;
  out[pos++] = tag(field, LENGTH_DELIMITED);
  pos = writeVarint(out, pos, holder);
  out[pos++] = tag(1, LENGTH_DELIMITED);
  pos = writeVarint(out, pos, common);
  out[pos++] = tag(3, LENGTH_DELIMITED);
  pos = writeVarint(out, pos, mutation);
  out[pos++] = tag(3, LENGTH_DELIMITED);
  pos = writeVarint(out, pos, streamed);
  if (body != null) {
    out[pos++] = tag(1, LENGTH_DELIMITED);
    pos = writeVarint(out, pos, body.length);
    out.set(body, pos);
    pos += body.length;
  }
  if (endOfStream != null) {
    out[pos++] = tag(2, VARINT);
    out[pos++] = endOfStream ? 1 : 0;
  }
  return out;
}

// ---- Request side: messages without enums ----

function headerMap(reader: ProtoReader, length: number): { headers: HeaderValue[] } {
  const end = reader.pos + length;
  const headers: HeaderValue[] = [];
  while (reader.pos < end) {
    const t = reader.uint32();
    if (t >>> 3 === 1) headers.push(decodeHeaderValue(reader, reader.uint32()));
    else reader.skipType(t & 7);
  }
  return { headers };
}

function decodeHeaderValue(reader: ProtoReader, length: number): HeaderValue {
  const end = reader.pos + length;
  const out: HeaderValue = { key: '', value: '', raw_value: EMPTY };
  while (reader.pos < end) {
    const t = reader.uint32();
    switch (t >>> 3) {
      case 1:
        out.key = reader.string();
        break;
      case 2:
        out.value = reader.string();
        break;
      case 3:
        out.raw_value = reader.bytes();
        break;
      default:
        reader.skipType(t & 7);
    }
  }
  return out;
}

function httpBody(reader: ProtoReader, length: number): Record<string, unknown> {
  const end = reader.pos + length;
  const out: Record<string, unknown> = {
    body: EMPTY,
    end_of_stream: false,
    end_of_stream_without_message: false,
    grpc_message_compressed: false,
  };
  while (reader.pos < end) {
    const t = reader.uint32();
    switch (t >>> 3) {
      case 1:
        out.body = reader.bytes();
        break;
      case 2:
        out.end_of_stream = reader.bool();
        break;
      case 3:
        out.end_of_stream_without_message = reader.bool();
        break;
      case 4:
        out.grpc_message_compressed = reader.bool();
        break;
      default:
        reader.skipType(t & 7);
    }
  }
  return out;
}

function httpTrailers(reader: ProtoReader, length: number): Record<string, unknown> {
  const end = reader.pos + length;
  const out: Record<string, unknown> = { trailers: null };
  while (reader.pos < end) {
    const t = reader.uint32();
    if (t >>> 3 === 1) out.trailers = headerMap(reader, reader.uint32());
    else reader.skipType(t & 7);
  }
  return out;
}

// ---- Response side: messages without enums ----

/** HeaderValue: `key` (1), `value` (2), `raw_value` (3). Ends the forked message. */
function headerValue(writer: ProtoWriter, header: HeaderValue): void {
  if (header.key != null) writer.uint32(tag(1, LENGTH_DELIMITED)).string(header.key);
  if (header.value != null) writer.uint32(tag(2, LENGTH_DELIMITED)).string(header.value);
  if (header.raw_value != null) writer.uint32(tag(3, LENGTH_DELIMITED)).bytes(header.raw_value);
  writer.ldelim();
}

/** google.protobuf.Struct: `fields` (1), a map of Values. Ends the forked message. */
function struct(writer: ProtoWriter, message: ProtoStruct): void {
  if (message.fields != null)
    for (const key of Object.keys(message.fields)) {
      writer.uint32(tag(1, LENGTH_DELIMITED)).fork().uint32(tag(1, LENGTH_DELIMITED)).string(key);
      value(writer.uint32(tag(2, LENGTH_DELIMITED)).fork(), message.fields[key]);
      writer.ldelim();
    }
  writer.ldelim();
}

/** google.protobuf.Value (a oneof `kind`). Ends the forked message. */
function value(writer: ProtoWriter, message: ProtoValue): void {
  const any = message as {
    nullValue?: unknown;
    numberValue?: number;
    stringValue?: string;
    boolValue?: boolean;
    structValue?: ProtoStruct;
    listValue?: { values?: ProtoValue[] | null };
  };
  if (any.nullValue != null) writer.uint32(tag(1, VARINT)).int32(0);
  if (any.numberValue != null) writer.uint32(tag(2, FIXED64)).double(any.numberValue);
  if (any.stringValue != null) writer.uint32(tag(3, LENGTH_DELIMITED)).string(any.stringValue);
  if (any.boolValue != null) writer.uint32(tag(4, VARINT)).bool(any.boolValue);
  if (any.structValue != null) struct(writer.uint32(tag(5, LENGTH_DELIMITED)).fork(), any.structValue);
  if (any.listValue != null) {
    writer.uint32(tag(6, LENGTH_DELIMITED)).fork();
    for (const item of any.listValue.values ?? []) value(writer.uint32(tag(1, LENGTH_DELIMITED)).fork(), item);
    writer.ldelim();
  }
  writer.ldelim();
}

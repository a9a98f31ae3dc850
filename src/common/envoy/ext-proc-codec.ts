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
 * - Encoding writes the fields of pd-router's `ProcessingResponse` shape, a field whenever it is neither undefined nor
 *   null (as protobuf.js does after fromObject), in the library's order, so the bytes are the library's. It writes
 *   backwards in a reused buffer (BackWriter), so a message costs one pass and one allocation; a streamed body chunk,
 *   the most frequent and largest response, is laid out directly.
 *
 * Enum numbers come from the loaded protos, not from a copy. `test/common/ext-proc-codec.test.ts` checks both
 * directions against proto-loader on generated messages.
 */
import type * as grpc from '@grpc/grpc-js';
import type * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs/minimal.js';
import {
  extProcPackageDefinition,
  extProcServiceDefinition,
  type HeaderMutation,
  type HeaderValue,
  type HeaderValueOption,
  type ProcessingRequest,
  type ProcessingResponse,
  type ProtoStruct,
  type ProtoValue,
} from './ext-proc.js';

const { Reader } = protobuf;
type ProtoReader = protobuf.Reader;

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
  /** Where responses are written (64 KiB to start; grown for a larger message up to 1 MiB and kept). */
  private readonly scratch = new BackWriter(64 * 1024);

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
    return this.scratch.encode((writer) => this.processingResponse(writer, response));
  };

  // Every message is written backwards (see BackWriter): fields from the highest number down, repeated fields and map
  // entries from the last one, so the bytes come out in protobuf.js' order.

  private processingResponse(writer: BackWriter, message: ProcessingResponse): void {
    if (message.dynamic_metadata != null) {
      const end = writer.mark();
      struct(writer, message.dynamic_metadata);
      writer.close(8, end);
    }
    const immediate = message.immediate_response;
    if (immediate != null) {
      const end = writer.mark();
      if (immediate.details != null) writer.string(5, immediate.details);
      if (immediate.body != null) writer.bytes(3, immediate.body);
      if (immediate.headers != null) {
        const headersEnd = writer.mark();
        this.headerMutation(writer, immediate.headers);
        writer.close(2, headersEnd);
      }
      if (immediate.status != null) {
        const statusEnd = writer.mark();
        if (immediate.status.code != null) writer.enum(1, enumNumber(this.statusCodes, immediate.status.code));
        writer.close(1, statusEnd);
      }
      writer.close(7, end);
    }
    if (message.response_trailers != null) this.trailersResponse(writer, 6, message.response_trailers);
    if (message.request_trailers != null) this.trailersResponse(writer, 5, message.request_trailers);
    if (message.response_body != null) this.commonResponseHolder(writer, 4, message.response_body);
    if (message.request_body != null) this.commonResponseHolder(writer, 3, message.request_body);
    if (message.response_headers != null) this.commonResponseHolder(writer, 2, message.response_headers);
    if (message.request_headers != null) this.commonResponseHolder(writer, 1, message.request_headers);
  }

  /** HeadersResponse / BodyResponse as field `field`: `response` (1), a CommonResponse. */
  private commonResponseHolder(
    writer: BackWriter,
    field: number,
    holder: NonNullable<ProcessingResponse['request_headers']>,
  ): void {
    const end = writer.mark();
    const common = holder.response;
    if (common != null) {
      const commonEnd = writer.mark();
      if (common.clear_route_cache != null) writer.bool(5, common.clear_route_cache);
      const mutation = common.body_mutation as
        | {
            body?: Uint8Array | null;
            clear_body?: boolean | null;
            streamed_response?: { body?: Uint8Array | null; end_of_stream?: boolean | null } | null;
          }
        | undefined;
      if (mutation != null) {
        const mutationEnd = writer.mark();
        const streamed = mutation.streamed_response;
        if (streamed != null) {
          const streamedEnd = writer.mark();
          if (streamed.end_of_stream != null) writer.bool(2, streamed.end_of_stream);
          if (streamed.body != null) writer.bytes(1, streamed.body);
          writer.close(3, streamedEnd);
        }
        if (mutation.clear_body != null) writer.bool(2, mutation.clear_body);
        if (mutation.body != null) writer.bytes(1, mutation.body);
        writer.close(3, mutationEnd);
      }
      if (common.header_mutation != null) {
        const headersEnd = writer.mark();
        this.headerMutation(writer, common.header_mutation);
        writer.close(2, headersEnd);
      }
      if (common.status != null) writer.enum(1, enumNumber(this.responseStatuses, common.status));
      writer.close(1, commonEnd);
    }
    writer.close(field, end);
  }

  /** TrailersResponse as field `field`: `header_mutation` (1). */
  private trailersResponse(
    writer: BackWriter,
    field: number,
    trailers: { header_mutation?: HeaderMutation | null },
  ): void {
    const end = writer.mark();
    if (trailers.header_mutation != null) {
      const headersEnd = writer.mark();
      this.headerMutation(writer, trailers.header_mutation);
      writer.close(1, headersEnd);
    }
    writer.close(field, end);
  }

  /** HeaderMutation's fields: `set_headers` (1), `remove_headers` (2). */
  private headerMutation(writer: BackWriter, mutation: HeaderMutation): void {
    const removals = mutation.remove_headers;
    if (removals != null) for (let i = removals.length - 1; i >= 0; i--) writer.string(2, removals[i]);
    const options = mutation.set_headers;
    if (options != null)
      for (let i = options.length - 1; i >= 0; i--) {
        const end = writer.mark();
        this.headerValueOption(writer, options[i]);
        writer.close(1, end);
      }
  }

  /** HeaderValueOption's fields: `header` (1), `append` (2, a BoolValue), `append_action` (3). */
  private headerValueOption(writer: BackWriter, option: HeaderValueOption): void {
    if (option.append_action != null) writer.enum(3, enumNumber(this.appendActions, option.append_action));
    const append = option.append;
    if (append != null) {
      const end = writer.mark();
      if (append.value != null) writer.bool(1, append.value);
      writer.close(2, end);
    }
    const header = option.header;
    if (header != null) {
      const end = writer.mark();
      if (header.raw_value != null) writer.bytes(3, header.raw_value);
      if (header.value != null) writer.string(2, header.value);
      if (header.key != null) writer.string(1, header.key);
      writer.close(1, end);
    }
  }
}

/** Raised when a message does not fit the scratch buffer: the encoding starts again in a larger one. */
class Overflow extends Error {}
const OVERFLOW = new Overflow('scratch buffer too small');

/** Kept between messages up to this size; a larger message gets a buffer of its own. */
const SCRATCH_KEEP_BYTES = 1024 * 1024;

/**
 * Writes a protobuf message from its end to its start in a reused scratch buffer, so each length prefix is written
 * after its content, its exact size known: one pass, no intermediate objects, one allocation for the result.
 */
class BackWriter {
  private buf: Buffer;
  private pos: number;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
    this.pos = size;
  }

  encode(write: (writer: BackWriter) => void): Buffer {
    for (;;) {
      this.pos = this.buf.length;
      try {
        write(this);
        return Buffer.from(this.buf.subarray(this.pos));
      } catch (err) {
        if (err !== OVERFLOW) throw err;
        const bigger = Buffer.allocUnsafe(this.buf.length * 2);
        if (bigger.length <= SCRATCH_KEEP_BYTES) this.buf = bigger;
        else return new BackWriter(bigger.length).encode(write);
      }
    }
  }

  private room(bytes: number): void {
    if (this.pos < bytes) throw OVERFLOW;
  }

  private varint(value: number): void {
    let rest = value >>> 0;
    const size = varintSize(rest);
    this.room(size);
    this.pos -= size;
    let at = this.pos;
    while (rest > 0x7f) {
      this.buf[at++] = (rest & 0x7f) | 0x80;
      rest >>>= 7;
    }
    this.buf[at] = rest;
  }

  /** Where a length-delimited field's content ends: write the content, then `close` the field with the mark. */
  mark(): number {
    return this.pos;
  }

  /** Prefixes the content written since `mark` with its length and the field's tag. */
  close(field: number, mark: number): void {
    this.varint(mark - this.pos);
    this.varint(tag(field, LENGTH_DELIMITED));
  }

  bytes(field: number, data: Uint8Array): void {
    this.room(data.length);
    this.pos -= data.length;
    this.buf.set(data, this.pos);
    this.varint(data.length);
    this.varint(tag(field, LENGTH_DELIMITED));
  }

  string(field: number, text: string): void {
    const length = Buffer.byteLength(text, 'utf8');
    this.room(length);
    this.pos -= length;
    this.buf.write(text, this.pos, length, 'utf8');
    this.varint(length);
    this.varint(tag(field, LENGTH_DELIMITED));
  }

  bool(field: number, value: boolean): void {
    this.room(1);
    this.buf[--this.pos] = value ? 1 : 0;
    this.varint(tag(field, VARINT));
  }

  /** An enum (int32) field; a negative one takes ten bytes, as protobuf writes it. */
  enum(field: number, value: number): void {
    if (value < 0) {
      this.room(10);
      this.pos -= 10;
      let low = value >>> 0;
      for (let i = 0; i < 4; i++, low >>>= 7) this.buf[this.pos + i] = (low & 0x7f) | 0x80;
      // Bits 28..63 of the sign-extended value: the low 4 bits of `low` are bits 28..31, the rest all ones.
      this.buf[this.pos + 4] = (low & 0x0f) | 0xf0;
      for (let i = 5; i < 9; i++) this.buf[this.pos + i] = 0xff;
      this.buf[this.pos + 9] = 0x01;
    } else this.varint(value);
    this.varint(tag(field, VARINT));
  }

  double(field: number, value: number): void {
    this.room(8);
    this.pos -= 8;
    this.buf.writeDoubleLE(value, this.pos);
    this.varint(tag(field, FIXED64));
  }
}

// ---- The streamed body chunk: the most frequent and largest response, written in one allocation ----

interface StreamedBodyOnly {
  field: number;
  body: Uint8Array | null | undefined;
  endOfStream: boolean | null | undefined;
}

/** Whether `value` has at most `max` own enumerable keys, counted without building a key array (this runs per chunk). */
function keysAtMost(value: object, max: number): boolean {
  let count = 0;
  for (const key in value) if (Object.hasOwn(value, key) && ++count > max) return false;
  return true;
}

/** The chunk of a response that is exactly `{request_body|response_body: {response: {body_mutation: {streamed_response}}}}`. */
function streamedBodyOnly(response: ProcessingResponse): StreamedBodyOnly | undefined {
  const holder = response.request_body ?? response.response_body;
  const common = holder?.response;
  const mutation = common?.body_mutation;
  const streamed = (mutation as { streamed_response?: { body?: Uint8Array | null; end_of_stream?: boolean | null } })
    ?.streamed_response;
  if (streamed == null || !keysAtMost(response, 1) || !keysAtMost(holder!, 1) || !keysAtMost(common!, 1))
    return undefined;
  if (!keysAtMost(mutation!, 1) || !keysAtMost(streamed, 2)) return undefined;
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

/** google.protobuf.Struct's field: `fields` (1), a map of Values (entries: key 1, value 2). */
function struct(writer: BackWriter, message: ProtoStruct): void {
  if (message.fields == null) return;
  const keys = Object.keys(message.fields);
  for (let i = keys.length - 1; i >= 0; i--) {
    const entryEnd = writer.mark();
    const valueEnd = writer.mark();
    value(writer, message.fields[keys[i]]);
    writer.close(2, valueEnd);
    writer.string(1, keys[i]);
    writer.close(1, entryEnd);
  }
}

/** google.protobuf.Value's fields (a oneof `kind`). */
function value(writer: BackWriter, message: ProtoValue): void {
  const any = message as {
    nullValue?: unknown;
    numberValue?: number;
    stringValue?: string;
    boolValue?: boolean;
    structValue?: ProtoStruct;
    listValue?: { values?: ProtoValue[] | null };
  };
  if (any.listValue != null) {
    const listEnd = writer.mark();
    const values = any.listValue.values ?? [];
    for (let i = values.length - 1; i >= 0; i--) {
      const itemEnd = writer.mark();
      value(writer, values[i]);
      writer.close(1, itemEnd);
    }
    writer.close(6, listEnd);
  }
  if (any.structValue != null) {
    const structEnd = writer.mark();
    struct(writer, any.structValue);
    writer.close(5, structEnd);
  }
  if (any.boolValue != null) writer.bool(4, any.boolValue);
  if (any.stringValue != null) writer.string(3, any.stringValue);
  if (any.numberValue != null) writer.double(2, any.numberValue);
  if (any.nullValue != null) writer.enum(1, 0);
}

let serving: grpc.ServiceDefinition | undefined;

/**
 * The service definition the EPP serves: `Process` reads requests and writes responses with this codec, the same bytes
 * and objects as proto-loader's at a fraction of the CPU.
 */
export function extProcServingDefinition(): grpc.ServiceDefinition {
  if (!serving) {
    const service = extProcServiceDefinition();
    const process = service.Process as grpc.MethodDefinition<unknown, unknown>;
    const codec = new ExtProcCodec(extProcPackageDefinition(), process);
    serving = {
      ...service,
      Process: {
        ...process,
        requestDeserialize: codec.decodeRequest,
        responseSerialize: codec.encodeResponse as (value: unknown) => Buffer,
      },
    };
  }
  return serving;
}

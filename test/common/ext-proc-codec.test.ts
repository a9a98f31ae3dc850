/**
 * The EPP's ext_proc codec against @grpc/proto-loader's (the reference): requests it decodes give the library's object
 * exactly, responses it encodes are the library's bytes exactly, over generated messages.
 */
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { extProcServingDefinition } from '../../src/common/envoy/ext-proc-codec.js';
import {
  extProcServiceDefinition,
  type HeaderValueOption,
  type ProcessingRequest,
  type ProcessingResponse,
  type ProtoStruct,
  type ProtoValue,
} from '../../src/common/envoy/ext-proc.js';
import {
  immediateResponse,
  requestHeadersResponse,
  responseHeadersResponse,
  setHeader,
  streamedBody,
} from '../../src/epp/extproc/messages.js';
import { InferenceError } from '../../src/epp/framework/errors.js';

const library = extProcServiceDefinition().Process as grpc.MethodDefinition<unknown, unknown>;
const ours = extProcServingDefinition().Process as grpc.MethodDefinition<unknown, unknown>;

const RUNS = { numRuns: 300, seed: 20261207 };

const text = fc.string({ maxLength: 24 });
const bytes = fc.uint8Array({ maxLength: 64 }).map((data) => Buffer.from(data));
const headerValue = fc.record({ key: text, value: text, raw_value: bytes }, { requiredKeys: ['key'] });
const headerMap = fc.record({ headers: fc.array(headerValue, { maxLength: 6 }) });
const httpHeaders = fc.record(
  { headers: fc.option(headerMap, { nil: undefined }), end_of_stream: fc.boolean() },
  { requiredKeys: [] },
);
const httpBody = fc.record(
  {
    body: bytes,
    end_of_stream: fc.boolean(),
    end_of_stream_without_message: fc.boolean(),
    grpc_message_compressed: fc.boolean(),
  },
  { requiredKeys: [] },
);
const httpTrailers = fc.record({ trailers: fc.option(headerMap, { nil: undefined }) }, { requiredKeys: [] });
const bodyMode = fc.constantFrom('NONE', 'STREAMED', 'BUFFERED', 'BUFFERED_PARTIAL', 'FULL_DUPLEX_STREAMED', 'GRPC');
const protocolConfig = fc.record(
  {
    request_body_mode: bodyMode,
    response_body_mode: bodyMode,
    send_body_without_waiting_for_header_response: fc.boolean(),
  },
  { requiredKeys: [] },
);

const protoValue: fc.Arbitrary<ProtoValue> = fc.letrec<{ value: ProtoValue; struct: ProtoStruct }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.constant<ProtoValue>({ nullValue: 'NULL_VALUE' }),
    fc.double({ noNaN: true }).map<ProtoValue>((number) => ({ numberValue: number })),
    text.map<ProtoValue>((str) => ({ stringValue: str })),
    fc.boolean().map<ProtoValue>((data) => ({ boolValue: data })),
    tie('struct').map<ProtoValue>((str) => ({ structValue: str })),
    fc.array(tie('value'), { maxLength: 3 }).map<ProtoValue>((values) => ({ listValue: { values } })),
  ),
  struct: fc.dictionary(text, tie('value'), { maxKeys: 3 }).map((fields) => ({ fields })),
})).value;
const protoStruct = fc.dictionary(text, protoValue, { maxKeys: 3 }).map((fields): ProtoStruct => ({ fields }));

const member = fc.oneof(
  httpHeaders.map((message) => ({ request_headers: message })),
  httpHeaders.map((message) => ({ response_headers: message })),
  httpBody.map((message) => ({ request_body: message })),
  httpBody.map((message) => ({ response_body: message })),
  httpTrailers.map((message) => ({ request_trailers: message })),
  httpTrailers.map((message) => ({ response_trailers: message })),
  fc.constant({}),
);
const processingRequest = fc
  .tuple(
    member,
    fc.record(
      {
        observability_mode: fc.boolean(),
        protocol_config: protocolConfig,
        // The rare fields proto-loader decodes for the codec.
        metadata_context: fc.record({ filter_metadata: fc.dictionary(text, protoStruct, { maxKeys: 2 }) }),
        attributes: fc.dictionary(text, protoStruct, { maxKeys: 2 }),
      },
      { requiredKeys: [] },
    ),
  )
  .map(([chosen, rest]): ProcessingRequest => ({ ...chosen, ...rest }));

/** An unknown field (number 15..1000, any wire type but groups) appended to a message, as a newer Envoy could send. */
const unknownField = fc.oneof(
  fc.tuple(fc.integer({ min: 15, max: 1000 }), fc.nat()).map(([field, payload]) => {
    const out: number[] = [];
    const varint = (input: number) => {
      let rest = input;
      while (rest > 0x7f) {
        out.push((rest & 0x7f) | 0x80);
        rest >>>= 7;
      }
      out.push(rest);
    };
    varint((field << 3) | 0);
    varint(payload);
    return Buffer.from(out);
  }),
  fc
    .tuple(fc.integer({ min: 15, max: 15 }), bytes)
    .map(([field, data]) => Buffer.concat([Buffer.from([(field << 3) | 2, data.length]), data])),
  fc.constant(Buffer.from([0x81, 0x01, 1, 2, 3, 4, 5, 6, 7, 8])), // field 16, fixed64 (its tag is a 2-byte varint)
  fc.constant(Buffer.from([(15 << 3) | 5, 1, 2, 3, 4])), // fixed32
);

describe('ext_proc codec: ProcessingRequest decoding', () => {
  it('gives proto-loader`s object for every generated request', () => {
    fc.assert(
      fc.property(processingRequest, (request) => {
        const encoded = library.requestSerialize(request);
        expect(ours.requestDeserialize(encoded)).toStrictEqual(library.requestDeserialize(encoded));
      }),
      RUNS,
    );
  });

  it('skips unknown fields as proto-loader does', () => {
    fc.assert(
      fc.property(processingRequest, unknownField, (request, extra) => {
        const encoded = Buffer.concat([library.requestSerialize(request), extra]);
        expect(ours.requestDeserialize(encoded)).toStrictEqual(library.requestDeserialize(encoded));
      }),
      RUNS,
    );
  });

  it('shares the message`s memory for bodies, as proto-loader does', () => {
    const encoded = library.requestSerialize({
      request_body: { body: Buffer.from('{"model":"m"}'), end_of_stream: true },
    });
    const decoded = ours.requestDeserialize(encoded) as ProcessingRequest;
    expect(decoded.request).toBe('request_body');
    const body = decoded.request_body!.body as Buffer;
    expect(body.toString()).toBe('{"model":"m"}');
    expect(body.buffer).toBe(encoded.buffer);
  });

  it('refuses a truncated message as proto-loader does', () => {
    const encoded = library.requestSerialize({ request_body: { body: Buffer.alloc(100, 120), end_of_stream: true } });
    const truncated = encoded.subarray(0, 50);
    expect(() => library.requestDeserialize(truncated)).toThrow(RangeError);
    expect(() => ours.requestDeserialize(truncated)).toThrow(RangeError);
  });
});

const appendAction = fc.constantFrom(
  'APPEND_IF_EXISTS_OR_ADD',
  'ADD_IF_ABSENT',
  'OVERWRITE_IF_EXISTS_OR_ADD',
  'OVERWRITE_IF_EXISTS',
) as fc.Arbitrary<HeaderValueOption['append_action']>;
const headerValueOption: fc.Arbitrary<HeaderValueOption> = fc.record(
  {
    header: headerValue,
    append: fc.record({ value: fc.boolean() }, { requiredKeys: [] }),
    append_action: appendAction,
  },
  { requiredKeys: ['header'] },
);
const headerMutation = fc.record(
  {
    set_headers: fc.array(headerValueOption, { maxLength: 5 }),
    remove_headers: fc.array(text, { maxLength: 3 }),
  },
  { requiredKeys: [] },
);
const bodyMutation = fc.oneof(
  fc.record({ streamed_response: fc.record({ body: bytes, end_of_stream: fc.boolean() }) }),
  fc.record({ body: bytes }),
  fc.record({ clear_body: fc.boolean() }),
);
const commonResponse = fc.record(
  {
    status: fc.constantFrom<'CONTINUE' | 'CONTINUE_AND_REPLACE'>('CONTINUE', 'CONTINUE_AND_REPLACE'),
    header_mutation: headerMutation,
    body_mutation: bodyMutation,
    clear_route_cache: fc.boolean(),
  },
  { requiredKeys: [] },
);
const statusName = fc.constantFrom('OK', 'BadRequest', 'TooManyRequests', 'ServiceUnavailable', 'Gone', 'Continue');
const processingResponse: fc.Arbitrary<ProcessingResponse> = fc
  .tuple(
    fc.oneof(
      commonResponse.map((response) => ({ request_headers: { response } })),
      commonResponse.map((response) => ({ response_headers: { response } })),
      commonResponse.map((response) => ({ request_body: { response } })),
      commonResponse.map((response) => ({ response_body: { response } })),
      fc
        .record({ header_mutation: headerMutation }, { requiredKeys: [] })
        .map((message) => ({ request_trailers: message })),
      fc
        .record({ header_mutation: headerMutation }, { requiredKeys: [] })
        .map((message) => ({ response_trailers: message })),
      fc
        .record(
          { status: statusName.map((code) => ({ code })), headers: headerMutation, body: bytes, details: text },
          { requiredKeys: ['status'] },
        )
        .map((message) => ({ immediate_response: message })),
    ),
    fc.option(protoStruct, { nil: undefined }),
  )
  .map(([chosen, dynamic]) => (dynamic ? { ...chosen, dynamic_metadata: dynamic } : chosen));

describe('ext_proc codec: ProcessingResponse encoding', () => {
  it('writes proto-loader`s bytes for every generated response', () => {
    fc.assert(
      fc.property(processingResponse, (response) => {
        expect(ours.responseSerialize(response)).toStrictEqual(library.responseSerialize(response));
      }),
      RUNS,
    );
  });

  it('writes proto-loader`s bytes for streamed body chunks (their own fast path)', () => {
    const chunk = fc.record(
      { body: fc.uint8Array({ maxLength: 300 }).map((data) => Buffer.from(data)), end_of_stream: fc.boolean() },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.constantFrom('request_body', 'response_body'), chunk, (kind, streamed) => {
        const response = { [kind]: { response: { body_mutation: { streamed_response: streamed } } } };
        expect(ours.responseSerialize(response)).toStrictEqual(library.responseSerialize(response));
      }),
      RUNS,
    );
  });

  it('writes proto-loader`s bytes for what the EPP sends', () => {
    const sent: ProcessingResponse[] = [
      requestHeadersResponse(
        [setHeader('x-gateway-destination-endpoint', '10.0.0.1:8000'), setHeader('x-prefiller-host-port', 'p:8000')],
        ['x-data-parallel-host-port'],
        '10.0.0.1:8000',
      ),
      ...streamedBody('request_body', Buffer.alloc(130_000, 97), true),
      ...streamedBody('response_body', Buffer.alloc(0), false),
      responseHeadersResponse([setHeader('x-went-into-resp-headers', 'true')]),
      immediateResponse(new InferenceError('ResourceExhausted', 'request evicted by flow control', 'evicted')),
      immediateResponse(new InferenceError('BadRequest', 'no model')),
      { request_trailers: {} },
      { response_trailers: {} },
      // Larger than the codec's first buffer (64 KiB), and than the one it keeps (1 MiB).
      { request_body: { response: { body_mutation: { body: Buffer.alloc(100_000, 98) } } } },
      { immediate_response: { status: { code: 'OK' }, body: Buffer.alloc(1_500_000, 99), details: 'big' } },
      {
        request_headers: {
          response: { header_mutation: { set_headers: [setHeader('x-small', 'after the big ones')] } },
        },
      },
    ];
    for (const response of sent)
      expect(ours.responseSerialize(response)).toStrictEqual(library.responseSerialize(response));
    // And they read back as sent.
    const back = library.responseDeserialize(ours.responseSerialize(sent[0])) as ProcessingResponse;
    expect(back.dynamic_metadata?.fields['envoy.lb']).toMatchObject({
      structValue: { fields: { 'x-gateway-destination-endpoint': { stringValue: '10.0.0.1:8000' } } },
    });
  });
});

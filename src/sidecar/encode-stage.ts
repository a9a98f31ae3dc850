/**
 * The encode stage of E/PD and E/P/D (--ec-connector), before the prefill and decode legs, as llm-d-router's sidecar
 * (pkg/sidecar/proxy/connector_ec_common.go, connector_ec_shared_storage.go, connector_ec_nixl.go):
 *
 * 1. The EPP names the encoders in x-encoder-hosts-ports (comma-joined `host:port`s). Entries outside the SSRF
 *    allowlist are dropped (logged); with none left the request goes on as P/D or decode-only, as upstream.
 * 2. The multimodal content parts of the chat `messages` (image_url, audio_url, video_url, input_audio) are collected
 *    in order; URL items are deduplicated by URL. No items: no encoder is called.
 * 3. One encoder request per item, all in flight together (at most --encode-concurrency), item i going to encoder
 *    i mod n: POST /v1/chat/completions with the client's body whose `messages` is one user message holding only that
 *    item, max_tokens 1 (and max_completion_tokens 1 when the client sent it), stream false, no stream_options;
 *    x-request-id `<id>-enc-<i>`. The first failure stops the others and answers the client (502 naming the encoder;
 *    504 past --encode-timeout).
 * 4. ec-example discards the answers; ec-nixl merges every answer's `ec_transfer_params` object into one map set on
 *    the request (answers without it are logged and skipped).
 * 5. The request goes on with `cache_hit_threshold` 0 (the encoder ran, so prefill must run: no decode-first) to the
 *    P/D connector, or without a prefiller straight to the local decoder.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { parseTarget, type Target } from '../common/index.js';
import { EC_TRANSFER_PARAMS, ENCODER_HOSTS_PORTS, REQUEST_ID_HEADER } from '../common/pd-contract.js';
import { isObject, type JsonObject } from '../common/json.js';
import { Cancellation, LegStopped, UpstreamLeg, connectErrorCode, type StopSignal } from '../common/upstream-leg.js';
import type { Logger } from 'pino';
import { depthMessage, nestedDeeperThan } from './json-body.js';
import type { SidecarConfig } from './options.js';
import type { TargetGuard } from './ssrf-guard.js';
import type { UpstreamAgents } from './upstream.js';
import { prefillCandidates } from './upstream.js';

/** Content-part types that need an encoder (upstream's mmTypes). */
const MM_TYPES = new Set(['image_url', 'audio_url', 'video_url', 'input_audio']);
/** The path of every encode leg: upstream always encodes through the chat API. */
export const ENCODE_PATH = '/v1/chat/completions';

/** The encoders named by x-encoder-hosts-ports, or the first malformed entry. */
export function encoderEntries(header: string | string[] | undefined): string[] {
  return prefillCandidates(header);
}

/** What the SSRF check left of the header: the encoders to use, and how many were denied. */
export interface EncoderTargets {
  allowed: Target[];
  denied: string[];
  invalid?: string;
}

/** Parses and filters the header's encoders; a malformed entry is reported (the request is refused with 400). */
export function encoderTargets(
  header: string | string[] | undefined,
  guard: Pick<TargetGuard, 'allowed'>,
): EncoderTargets {
  const out: EncoderTargets = { allowed: [], denied: [] };
  for (const entry of encoderEntries(header)) {
    const target = parseTarget(entry);
    if (!target) {
      out.invalid = entry;
      return out;
    }
    if (guard.allowed(target.host, target.port)) out.allowed.push(target);
    else out.denied.push(target.hostPort);
  }
  return out;
}

/** The multimodal items of a chat body, URL items deduplicated by URL (the first kept), in order. */
export function multimodalItems(body: JsonObject): JsonObject[] {
  const items: JsonObject[] = [];
  const seen = new Set<string>();
  const messages = body.messages;
  if (!Array.isArray(messages)) return items;
  for (const message of messages) {
    const content = isObject(message) ? message.content : undefined;
    if (!Array.isArray(content)) continue;
    for (const part of content) {
      if (!isObject(part) || typeof part.type !== 'string' || !MM_TYPES.has(part.type)) continue;
      const url = itemUrl(part);
      if (url !== undefined) {
        if (seen.has(url)) continue;
        seen.add(url);
      }
      items.push(part);
    }
  }
  return items;
}

function itemUrl(item: JsonObject): string | undefined {
  const type = item.type as string;
  if (type === 'input_audio') return undefined;
  const inner = item[type];
  return isObject(inner) && typeof inner.url === 'string' && inner.url !== '' ? inner.url : undefined;
}

/** One encoder request's body: the client's with only this item as the prompt, one output token, not streamed. */
export function encoderRequestBody(body: JsonObject, item: JsonObject): JsonObject {
  const { stream_options: _streamOptions, ...out } = body;
  out.messages = [{ role: 'user', content: [item] }];
  out.max_tokens = 1;
  if ('max_completion_tokens' in body) out.max_completion_tokens = 1;
  out.stream = false;
  return out;
}

/** How the encode stage ended when it did not succeed: the client's answer. */
export interface EncodeFailure {
  status: 502 | 504;
  message: string;
  /** Counted as a timeout or as an upstream error; a client that left gets nothing. */
  kind: 'upstream_error' | 'timeout' | 'aborted';
  /** For the log. */
  detail?: Record<string, unknown>;
}

export interface EncodeStageInput {
  config: SidecarConfig;
  agents: UpstreamAgents;
  logger: Logger;
  requestId: string;
  traceparent: string;
  /** The client's body (its KV transfer fields removed). */
  body: JsonObject;
  encoders: readonly Target[];
  clientSignal: StopSignal;
}

/** The body the P/D (or decode) legs go on with, or why the stage failed. */
export type EncodeResult = { body: JsonObject; items: number } | { failure: EncodeFailure };

/** Runs the encode stage (steps 2-5 above). */
export async function runEncodeStage(input: EncodeStageInput): Promise<EncodeResult> {
  const { config, body, encoders, logger } = input;
  const items = multimodalItems(body);
  const out: JsonObject = { ...body };
  if (items.length === 0) {
    logger.debug({ encoders: encoders.length }, 'no multimodal items, skipping encoder');
  } else {
    logger.debug(
      { items: items.length, encoders: encoders.map((encoder) => encoder.hostPort) },
      'processing multimodal items',
    );
    const merged: JsonObject = {};
    let contributed = 0;
    // Stops the sibling requests once one has failed (upstream's errgroup context).
    const stop = new Cancellation();
    let failure: EncodeFailure | undefined;
    let next = 0;
    const worker = async () => {
      while (failure === undefined && next < items.length) {
        const i = next++;
        const encoder = encoders[i % encoders.length];
        const r = await encodeOne(input, encoder, i, encoderRequestBody(body, items[i]), stop);
        if ('failure' in r) {
          if (failure === undefined) {
            failure = r.failure;
            stop.abort(new LegStopped('peer_failed', 'another encoder request failed'));
          }
          return;
        }
        if (config.ecConnector !== 'ec-nixl') continue;
        const ec = r.json[EC_TRANSFER_PARAMS];
        if (!isObject(ec) || Object.keys(ec).length === 0) {
          logger.debug({ item: i, encoder: encoder.hostPort }, 'encoder answer without ec_transfer_params; skipped');
          continue;
        }
        for (const key in ec) {
          if (key in merged) logger.debug({ item: i, key }, 'duplicate ec_transfer_params key; overwriting');
          merged[key] = ec[key];
        }
        contributed++;
      }
    };
    await Promise.all(Array.from({ length: Math.min(config.encodeConcurrency, items.length) }, worker));
    if (input.clientSignal.aborted) return { failure: { status: 502, message: '', kind: 'aborted' } };
    if (failure) return { failure };
    if (config.ecConnector === 'ec-nixl') {
      if (contributed === 0)
        logger.info(
          { items: items.length },
          'warning: no encoder response carried ec_transfer_params; forwarding prefill request without it',
        );
      else {
        out[EC_TRANSFER_PARAMS] = merged;
        if (contributed < items.length)
          logger.info({ contributed, items: items.length }, 'warning: ec_transfer_params partially populated');
      }
    }
  }
  // The encoder has run: prefill must run too, so the decoder must not answer from its cache first (upstream).
  out.cache_hit_threshold = 0;
  return { body: out, items: items.length };
}

/** Headers of an encode leg: upstream sends only these (its request is built new, not copied from the client's). */
function encodeHeaders(input: EncodeStageInput, index: number): Record<string, string> {
  return {
    'content-type': 'application/json',
    [REQUEST_ID_HEADER]: `${input.requestId}-enc-${index}`,
    traceparent: input.traceparent,
  };
}

async function encodeOne(
  input: EncodeStageInput,
  encoder: Target,
  index: number,
  body: JsonObject,
  stop: Cancellation,
): Promise<{ json: JsonObject } | { failure: EncodeFailure }> {
  const { config } = input;
  const name = `encoder ${encoder.hostPort}`;
  const detail = { encoder: encoder.hostPort, item: index };
  try {
    const leg = await UpstreamLeg.open({
      agent: input.agents.encode,
      origin: `${input.agents.scheme('encoder')}://${encoder.hostPort}`,
      method: 'POST',
      path: ENCODE_PATH,
      headers: encodeHeaders(input, index),
      body: JSON.stringify(body),
      clientSignal: input.clientSignal,
      peerSignal: stop,
      firstByteTimeoutMs: config.encodeTimeout,
      idleTimeoutMs: config.encodeTimeout,
      wholeLegDeadline: true,
      label: `encode to ${encoder.hostPort}`,
    });
    const raw = await leg.readAll(config.maxEncodeResponseSize);
    if (leg.status < 200 || leg.status >= 300) {
      input.logger.warn(
        { ...detail, status: leg.status, body: raw.toString('utf8', 0, Math.min(raw.length, 512)) },
        'encoder request failed',
      );
      return {
        failure: {
          status: 502,
          kind: 'upstream_error',
          message: `${name} answered ${leg.status} for multimodal item ${index}`,
        },
      };
    }
    if (config.ecConnector !== 'ec-nixl') return { json: {} };
    let json: unknown;
    try {
      json = JSON.parse(raw.toString('utf8'));
    } catch {
      return badAnswer(name, index, 'a body that is not JSON');
    }
    if (nestedDeeperThan(json, config.maxJsonDepth))
      return badAnswer(name, index, `JSON ${depthMessage(config.maxJsonDepth)}`);
    if (!isObject(json)) return badAnswer(name, index, 'JSON that is not an object');
    return { json };
  } catch (err) {
    if (err instanceof LegStopped) {
      if (err.reason === 'client_gone' || err.reason === 'peer_failed')
        return { failure: { status: 502, kind: 'aborted', message: err.message } };
      if (err.reason === 'first_byte_timeout' || err.reason === 'idle_timeout')
        return {
          failure: {
            status: 504,
            kind: 'timeout',
            message: `${name} did not answer multimodal item ${index} within ${config.encodeTimeout}ms`,
          },
        };
    }
    if (err instanceof RangeError)
      return {
        failure: {
          status: 502,
          kind: 'upstream_error',
          message: `${name} answered more than ${config.maxEncodeResponseSize} bytes for multimodal item ${index}`,
        },
      };
    const code = connectErrorCode(err) ?? 'EUNKNOWN';
    input.logger.warn({ ...detail, code, err }, 'encoder unreachable');
    return {
      failure: { status: 502, kind: 'upstream_error', message: `${name} could not be reached (${code})` },
    };
  }
}

function badAnswer(name: string, index: number, what: string): { failure: EncodeFailure } {
  return {
    failure: {
      status: 502,
      kind: 'upstream_error',
      message: `failed to parse the answer of ${name} for multimodal item ${index}: ${what}`,
    },
  };
}

/** The x-encoder-hosts-ports header of a request. */
export function encoderHeader(headers: IncomingHttpHeaders): string | string[] | undefined {
  return headers[ENCODER_HOSTS_PORTS];
}

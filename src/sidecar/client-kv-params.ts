/**
 * A client never steers KV transfer. `kv_transfer_params` in a client's body would make the model server pull KV blocks
 * from a host the client names (do_remote_prefill with remote_host/remote_port: a connection from the GPU node to
 * anywhere) or read blocks it names (remote_block_ids). The sidecar removes the client's copy on every path (P/D
 * legs, local, passthrough); the only kv_transfer_params a model server gets is the prefiller's, on the decode leg
 * the sidecar builds. With the SGLang connector the bootstrap triple plays that part and is removed too.
 *
 * vLLM reads kv_transfer_params at the body's root (every OpenAI-style API) and, for the generate API, in
 * sampling_params.extra_args; both are removed.
 *
 * Bodies forwarded as bytes (local, passthrough) keep their bytes unless a field is removed: a scan decides whether a
 * body could hold one, only then is it parsed, and it is serialised again only when something was removed. The scan
 * errs towards parsing, because vLLM reads bodies with Python's json: the field's name, any `\u` escape (a key can be
 * spelled with escapes), or a body Python would read as UTF-16/32 or with a BOM; and the parse accepts what Python's
 * does beyond JSON (NaN, Infinity, -Infinity).
 */
import type { SidecarConfig } from './options.js';
import { depthMessage, nestedDeeperThan } from './json-body.js';
import {
  EC_TRANSFER_PARAMS,
  EXTRA_ARGS,
  KV_TRANSFER_PARAMS,
  SAMPLING_PARAMS,
  SGLANG_BOOTSTRAP_FIELDS,
} from '../common/pd-contract.js';
import { isObject, type JsonObject } from '../common/json.js';
const BACKSLASH_U = Buffer.from('\\u');

export class ClientTransferFields {
  private readonly markers: readonly Buffer[];

  constructor(
    /** Root fields a client must not set. */
    readonly fields: readonly string[],
    /** Substrings that every one of `fields` contains, for the scan. */
    markers: readonly string[],
  ) {
    this.markers = markers.map((message) => Buffer.from(message));
  }

  /** The body without the client's transfer fields, or undefined when it had none (use it unchanged). */
  strip(body: JsonObject): JsonObject | undefined {
    let out: JsonObject | undefined;
    for (const f of this.fields) {
      if (!Object.hasOwn(body, f)) continue;
      out ??= { ...body };
      delete out[f];
    }
    const sampling = body[SAMPLING_PARAMS];
    if (
      isObject(sampling) &&
      isObject(sampling[EXTRA_ARGS]) &&
      Object.hasOwn(sampling[EXTRA_ARGS], KV_TRANSFER_PARAMS)
    ) {
      const { [KV_TRANSFER_PARAMS]: _client, ...extra } = sampling[EXTRA_ARGS];
      out ??= { ...body };
      out[SAMPLING_PARAMS] = { ...sampling, [EXTRA_ARGS]: extra };
    }
    return out;
  }

  /**
   * The bytes to forward for a body sent on as it came: `raw` itself unless a transfer field was removed. A body that
   * is not a JSON object (to Python's json either) is left alone: the model server cannot read a field from it.
   */
  stripRaw(raw: Buffer, maxDepth: number): { bytes: Buffer; removed: boolean } | { error: string } {
    if (!this.mayHold(raw)) return { bytes: raw, removed: false };
    const value = parseLikePython(decodeLikePython(raw));
    if (!isObject(value)) return { bytes: raw, removed: false };
    const stripped = this.strip(value);
    if (!stripped) return { bytes: raw, removed: false };
    if (nestedDeeperThan(stripped, maxDepth)) return { error: `invalid JSON: ${depthMessage(maxDepth)}` };
    return { bytes: Buffer.from(JSON.stringify(stripped)), removed: true };
  }

  /** Whether a model server could find a transfer field in these bytes (false is certain; true means "parse it"). */
  mayHold(raw: Buffer): boolean {
    // Python's json.detect_encoding: a BOM, or a zero byte in the first two (UTF-16/32 without a BOM).
    const b0 = raw[0];
    if (b0 === 0x00 || b0 === 0xef || b0 === 0xfe || b0 === 0xff || raw[1] === 0x00) return true;
    for (const m of this.markers) if (raw.indexOf(m) >= 0) return true;
    return raw.indexOf(BACKSLASH_U) >= 0;
  }
}

// ec_transfer_params (E/PD) is the encoder cache's handshake: a client's copy would make the prefiller pull encoder
// output from a peer the client names. Only the encoders' answers set it (encode-stage.ts).
const NIXL = new ClientTransferFields(
  [KV_TRANSFER_PARAMS, EC_TRANSFER_PARAMS],
  [KV_TRANSFER_PARAMS, EC_TRANSFER_PARAMS],
);
const SGLANG = new ClientTransferFields(
  [KV_TRANSFER_PARAMS, EC_TRANSFER_PARAMS, ...SGLANG_BOOTSTRAP_FIELDS],
  [KV_TRANSFER_PARAMS, EC_TRANSFER_PARAMS, 'bootstrap_'],
);

/** The fields a client must not set, for the configured connector. */
export function clientTransferFields(connector: SidecarConfig['kvConnector']): ClientTransferFields {
  return connector === 'sglang' ? SGLANG : NIXL;
}

/** Text as Python's json.loads(bytes) reads it (json.detect_encoding); undecodable bytes become U+FFFD. */
export function decodeLikePython(chunk: Buffer): string {
  if (chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) return chunk.toString('utf8', 3);
  if (chunk[0] === 0xff && chunk[1] === 0xfe && chunk[2] === 0x00 && chunk[3] === 0x00)
    return utf32(chunk.subarray(4), true);
  if (chunk[0] === 0x00 && chunk[1] === 0x00 && chunk[2] === 0xfe && chunk[3] === 0xff)
    return utf32(chunk.subarray(4), false);
  if (chunk[0] === 0xff && chunk[1] === 0xfe) return chunk.toString('utf16le', 2);
  if (chunk[0] === 0xfe && chunk[1] === 0xff) return utf16be(chunk.subarray(2));
  if (chunk.length >= 4) {
    if (chunk[0] === 0x00) return chunk[1] !== 0x00 ? utf16be(chunk) : utf32(chunk, false);
    if (chunk[1] === 0x00)
      return chunk[2] !== 0x00 || chunk[3] !== 0x00 ? chunk.toString('utf16le') : utf32(chunk, true);
  } else if (chunk.length === 2) {
    if (chunk[0] === 0x00) return utf16be(chunk);
    if (chunk[1] === 0x00) return chunk.toString('utf16le');
  }
  return chunk.toString('utf8');
}

function utf16be(chunk: Buffer): string {
  return Buffer.from(chunk.subarray(0, chunk.length & ~1))
    .swap16()
    .toString('utf16le');
}

function utf32(chunk: Buffer, littleEndian: boolean): string {
  const parts: string[] = [];
  for (let i = 0; i + 4 <= chunk.length; i += 4) {
    const cp = littleEndian ? chunk.readUInt32LE(i) : chunk.readUInt32BE(i);
    parts.push(cp <= 0x10ffff ? String.fromCodePoint(cp) : '\ufffd');
  }
  return parts.join('');
}

/** JSON.parse, accepting Python's NaN, Infinity and -Infinity (read as null); undefined when it is not JSON. */
export function parseLikePython(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    if (!text.includes('NaN') && !text.includes('Infinity')) return undefined;
  }
  try {
    return JSON.parse(nonFiniteAsNull(text));
  } catch {
    return undefined;
  }
}

const NON_FINITE = ['-Infinity', 'Infinity', 'NaN'];

/** Replaces NaN, Infinity and -Infinity outside strings with null. */
function nonFiniteAsNull(text: string): string {
  const out: string[] = [];
  let from = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 0x5c /* \ */) i++;
      else if (ch === 0x22 /* " */) inString = false;
      continue;
    }
    if (ch === 0x22) {
      inString = true;
      continue;
    }
    if (ch !== 0x2d /* - */ && ch !== 0x49 /* I */ && ch !== 0x4e /* N */) continue;
    const token = NON_FINITE.find((value) => text.startsWith(value, i));
    if (!token) continue;
    out.push(text.slice(from, i), 'null');
    i += token.length - 1;
    from = i + 1;
  }
  out.push(text.slice(from));
  return out.join('');
}

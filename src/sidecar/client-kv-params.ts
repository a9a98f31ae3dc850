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
import { EXTRA_ARGS, KV_TRANSFER_PARAMS, SAMPLING_PARAMS, SGLANG_BOOTSTRAP_FIELDS } from '../common/pd-contract.js';
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
    this.markers = markers.map((m) => Buffer.from(m));
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
    if (isObject(sampling) && isObject(sampling[EXTRA_ARGS]) && Object.hasOwn(sampling[EXTRA_ARGS], KV_TRANSFER_PARAMS)) {
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

const NIXL = new ClientTransferFields([KV_TRANSFER_PARAMS], [KV_TRANSFER_PARAMS]);
const SGLANG = new ClientTransferFields([KV_TRANSFER_PARAMS, ...SGLANG_BOOTSTRAP_FIELDS], [KV_TRANSFER_PARAMS, 'bootstrap_']);

/** The fields a client must not set, for the configured connector. */
export function clientTransferFields(connector: SidecarConfig['kvConnector']): ClientTransferFields {
  return connector === 'sglang' ? SGLANG : NIXL;
}

/** Text as Python's json.loads(bytes) reads it (json.detect_encoding); undecodable bytes become U+FFFD. */
export function decodeLikePython(b: Buffer): string {
  if (b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) return b.toString('utf8', 3);
  if (b[0] === 0xff && b[1] === 0xfe && b[2] === 0x00 && b[3] === 0x00) return utf32(b.subarray(4), true);
  if (b[0] === 0x00 && b[1] === 0x00 && b[2] === 0xfe && b[3] === 0xff) return utf32(b.subarray(4), false);
  if (b[0] === 0xff && b[1] === 0xfe) return b.toString('utf16le', 2);
  if (b[0] === 0xfe && b[1] === 0xff) return utf16be(b.subarray(2));
  if (b.length >= 4) {
    if (b[0] === 0x00) return b[1] !== 0x00 ? utf16be(b) : utf32(b, false);
    if (b[1] === 0x00) return b[2] !== 0x00 || b[3] !== 0x00 ? b.toString('utf16le') : utf32(b, true);
  } else if (b.length === 2) {
    if (b[0] === 0x00) return utf16be(b);
    if (b[1] === 0x00) return b.toString('utf16le');
  }
  return b.toString('utf8');
}

function utf16be(b: Buffer): string {
  return Buffer.from(b.subarray(0, b.length & ~1)).swap16().toString('utf16le');
}

function utf32(b: Buffer, littleEndian: boolean): string {
  const parts: string[] = [];
  for (let i = 0; i + 4 <= b.length; i += 4) {
    const cp = littleEndian ? b.readUInt32LE(i) : b.readUInt32BE(i);
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
    const token = NON_FINITE.find((t) => text.startsWith(t, i));
    if (!token) continue;
    out.push(text.slice(from, i), 'null');
    i += token.length - 1;
    from = i + 1;
  }
  out.push(text.slice(from));
  return out.join('');
}

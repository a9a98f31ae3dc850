/**
 * Strict validation of a JSON/YAML document against protobuf message definitions (protobuf.js reflection): unknown
 * fields, wrong scalar types, unknown enum names, two members of one oneof, and the `@type` of Any are all reported.
 * protobuf.js's own fromObject silently drops unknown fields, which would let a misspelt Envoy option through.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import protobuf from 'protobufjs';
import { protoIncludeDirs } from '../../src/common/envoy/ext-proc.js';

const NUMERIC = /^-?\d+(\.\d+)?$/;

export class ProtoValidator {
  private readonly root: protobuf.Root;

  constructor(files: string[]) {
    const dirs = protoIncludeDirs();
    this.root = new protobuf.Root();
    // Resolve imports through the include dirs, ours first (the v1.37 ext_proc files).
    this.root.resolvePath = (_origin, target) => {
      for (const d of dirs) {
        const p = path.join(d, target);
        if (existsSync(p)) return p;
      }
      return target;
    };
    this.root.loadSync(files, { keepCase: true });
    this.root.resolveAll();
  }

  /** Returns the problems found, each with its path in the document. */
  validate(typeName: string, value: unknown, at = '$'): string[] {
    const errors: string[] = [];
    this.checkMessage(this.root.lookupType(typeName), value, at, errors);
    return errors;
  }

  private checkMessage(type: protobuf.Type, value: unknown, at: string, errors: string[]): void {
    switch (type.fullName) {
      case '.google.protobuf.Duration':
        if (typeof value !== 'string' || !/^-?\d+(\.\d+)?s$/.test(value)) errors.push(`${at}: expected a duration like "10s", got ${JSON.stringify(value)}`);
        return;
      case '.google.protobuf.Struct':
      case '.google.protobuf.Value':
      case '.google.protobuf.ListValue':
        return;
      case '.google.protobuf.BoolValue':
        if (typeof value !== 'boolean') errors.push(`${at}: expected a boolean`);
        return;
      case '.google.protobuf.StringValue':
        if (typeof value !== 'string') errors.push(`${at}: expected a string`);
        return;
      case '.google.protobuf.UInt32Value':
      case '.google.protobuf.UInt64Value':
      case '.google.protobuf.Int32Value':
      case '.google.protobuf.Int64Value':
      case '.google.protobuf.DoubleValue':
      case '.google.protobuf.FloatValue':
        if (typeof value !== 'number' && !(typeof value === 'string' && NUMERIC.test(value))) errors.push(`${at}: expected a number`);
        return;
      case '.google.protobuf.Any': {
        const o = (value ?? {}) as Record<string, unknown>;
        const name = typeof o['@type'] === 'string' ? (o['@type'] as string).replace(/^type\.googleapis\.com\//, '') : '';
        if (!name) return void errors.push(`${at}: Any without @type`);
        let inner: protobuf.Type;
        try {
          inner = this.root.lookupType(name);
        } catch {
          return void errors.push(`${at}: unknown @type ${name}`);
        }
        const { ['@type']: _ignored, ...rest } = o;
        return this.checkMessage(inner, rest, at, errors);
      }
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return void errors.push(`${at}: expected an object (${type.fullName.slice(1)})`);
    const oneofSeen = new Map<string, string>();
    for (const [key, val] of Object.entries(value as Record<string, unknown>)) {
      const field = type.fields[key] ?? Object.values(type.fields).find((field) => field.options?.json_name === key);
      const p = `${at}.${key}`;
      if (!field) {
        errors.push(`${p}: no field "${key}" in ${type.fullName.slice(1)}`);
        continue;
      }
      if (field.partOf) {
        const other = oneofSeen.get(field.partOf.name);
        if (other) errors.push(`${p}: "${key}" and "${other}" are members of the same oneof ${field.partOf.name}`);
        oneofSeen.set(field.partOf.name, key);
      }
      this.checkField(field, val, p, errors);
    }
  }

  private checkField(field: protobuf.Field, value: unknown, at: string, errors: string[]): void {
    if (field instanceof protobuf.MapField || (field as { map?: boolean }).map) {
      if (typeof value !== 'object' || value === null) return void errors.push(`${at}: expected a map`);
      for (const [k, item] of Object.entries(value)) this.checkValue(field, item, `${at}.${k}`, errors);
      return;
    }
    if (field.repeated) {
      if (!Array.isArray(value)) return void errors.push(`${at}: expected a list`);
      value.forEach((item, i) => this.checkValue(field, item, `${at}[${i}]`, errors));
      return;
    }
    this.checkValue(field, value, at, errors);
  }

  private checkValue(field: protobuf.Field, value: unknown, at: string, errors: string[]): void {
    const rt = field.resolvedType;
    if (rt instanceof protobuf.Type) return this.checkMessage(rt, value, at, errors);
    if (rt instanceof protobuf.Enum) {
      if (!(typeof value === 'string' && value in rt.values) && !(typeof value === 'number' && Object.values(rt.values).includes(value))) {
        errors.push(`${at}: ${JSON.stringify(value)} is not a value of ${rt.fullName.slice(1)}`);
      }
      return;
    }
    switch (field.type) {
      case 'string':
      case 'bytes':
        if (typeof value !== 'string') errors.push(`${at}: expected a string`);
        return;
      case 'bool':
        if (typeof value !== 'boolean') errors.push(`${at}: expected a boolean`);
        return;
      default:
        if (typeof value !== 'number' && !(typeof value === 'string' && NUMERIC.test(value))) errors.push(`${at}: expected a number`);
    }
  }
}

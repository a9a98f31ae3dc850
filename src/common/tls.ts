/**
 * Server TLS material for the sidecar (`--secure-proxy`) and the EPP (`--secure-serving`), both on by default upstream:
 * a certificate directory with `tls.crt` and `tls.key` (as a Kubernetes TLS secret mounts it), hot-reloaded when the
 * files change, or a self-signed certificate generated at start when no directory is given.
 */
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';

export interface TlsMaterial {
  key: string;
  cert: string;
}

/** A self-signed EC P-256 certificate for the host names and addresses given (plus localhost and 127.0.0.1). */
export async function selfSignedCertificate(commonName = 'pd-router', altNames: string[] = []): Promise<TlsMaterial> {
  // X.509 generation pulls in a large ASN.1 stack; load it only when a certificate must be made.
  const { generate } = await import('selfsigned');
  const names = new Set(['localhost', '127.0.0.1', '::1', ...altNames]);
  const notAfter = new Date();
  notAfter.setFullYear(notAfter.getFullYear() + 10);
  const pems = await generate([{ name: 'commonName', value: commonName }], {
    keyType: 'ec',
    curve: 'P-256',
    notAfterDate: notAfter,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [...names].map((count) => (/^[\d.]+$|:/.test(count) ? { type: 7 as const, ip: count } : { type: 2 as const, value: count })),
      },
    ],
  } as Parameters<typeof import('selfsigned').generate>[1]);
  return { key: pems.private, cert: pems.cert };
}

export function readCertificateDir(dir: string): TlsMaterial {
  return {
    cert: readFileSync(path.join(dir, 'tls.crt'), 'utf8'),
    key: readFileSync(path.join(dir, 'tls.key'), 'utf8'),
  };
}

/**
 * Loads TLS material from `certDir` (watching it for changes; `onChange` gets the new material) or generates a
 * self-signed certificate. Returns the material and a function that stops watching.
 */
export async function serverTls(
  certDir: string,
  logger: Logger,
  onChange?: (tlsMaterial: TlsMaterial) => void,
): Promise<{ material: TlsMaterial; close: () => void }> {
  if (!certDir) return { material: await selfSignedCertificate(), close: () => undefined };
  const material = readCertificateDir(certDir);
  let watcher: FSWatcher | undefined;
  if (onChange) {
    let pending: NodeJS.Timeout | undefined;
    watcher = watch(certDir, () => {
      // Secrets are updated by swapping a symlink: wait for the burst of events to settle before reading.
      clearTimeout(pending);
      pending = setTimeout(() => {
        try {
          onChange(readCertificateDir(certDir));
          logger.info({ certDir }, 'reloaded TLS certificate');
        } catch (err) {
          logger.warn({ err, certDir }, 'TLS certificate reload failed; keeping the previous one');
        }
      }, 200);
    });
    watcher.unref();
  }
  return { material, close: () => watcher?.close() };
}

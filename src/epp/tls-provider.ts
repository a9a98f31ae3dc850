/**
 * Feeds the serving certificate to grpc-js and swaps it when the certificate directory changes (the common TLS
 * helper watches it), so a rotated Kubernetes TLS secret needs no restart.
 */
import type { experimental } from '@grpc/grpc-js';
import type { TlsMaterial } from '../common/index.js';

type Listener = (update: experimental.IdentityCertificateUpdate | null) => void;

export class IdentityProvider implements experimental.CertificateProvider {
  private current: experimental.IdentityCertificateUpdate | null = null;
  private readonly listeners = new Set<Listener>();

  update(tlsMaterial: TlsMaterial): void {
    this.current = { certificate: Buffer.from(tlsMaterial.cert), privateKey: Buffer.from(tlsMaterial.key) };
    for (const l of this.listeners) l(this.current);
  }

  addIdentityCertificateListener(listener: Listener): void {
    this.listeners.add(listener);
    // grpc-js subscribes before it registers the server as a watcher of the credentials: an answer given
    // synchronously would never reach the server, so it is delivered on the next microtask.
    queueMicrotask(() => {
      if (this.current && this.listeners.has(listener)) listener(this.current);
    });
  }

  removeIdentityCertificateListener(listener: Listener): void {
    this.listeners.delete(listener);
  }

  addCaCertificateListener(): void {}

  removeCaCertificateListener(): void {}
}

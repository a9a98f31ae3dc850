/**
 * The EPP replicas the gateway may ask (`--epp a:9002,b:9002,...`), as Envoy reaches the replicas behind the EPP
 * Service: one gRPC channel each. An exchange asks the replica that answered last first, then the others in order;
 * the proxy moves on when a replica is unavailable (connect failure, stream error, no answer within the message
 * timeout) or answers as a follower under leader election (503 with x-llm-d-request-dropped-reason:
 * rejected-not-leader), which is safe because nothing has gone upstream yet and the gateway holds the whole body.
 */
import type * as grpc from '@grpc/grpc-js';
import { ExtProcSession } from './ext-proc-session.js';

type ExtProcClient = ConstructorParameters<typeof ExtProcSession>[0];

/** The answer of a follower: this replica is not the leader (pd-router's EPP under --ha-enable-leader-election). */
export const NOT_LEADER_REASON = 'rejected-not-leader';

export class EppReplicas {
  private preferred = 0;

  constructor(
    readonly addresses: readonly string[],
    private readonly clients: readonly ExtProcClient[],
    private readonly messageTimeoutMs: number,
  ) {}

  /** Replica indexes in the order one exchange tries them: the last one that answered, then the rest. */
  order(): number[] {
    const n = this.clients.length;
    return Array.from({ length: n }, (_, k) => (this.preferred + k) % n);
  }

  open(i: number): ExtProcSession {
    return new ExtProcSession(this.clients[i]!, this.messageTimeoutMs);
  }

  /** Replica `i` answered (not as a follower): later exchanges ask it first. */
  answered(i: number): void {
    this.preferred = i;
  }

  close(): void {
    for (const c of this.clients) (c as unknown as grpc.Client).close();
  }
}

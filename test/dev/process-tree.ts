/**
 * What a test needs to check that a process tree it started is gone: the descendants of a pid and the TCP ports they
 * listen on, read from /proc (Linux, as CI), and whether a port can be bound again.
 */
import { existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import net from 'node:net';

function ppidOf(pid: number): number | undefined {
  try {
    // The command name (2nd field) may hold spaces or parentheses: the fields after the last ')' are fixed.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

export function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

/** Every live descendant of `root`, with its command line. */
export function descendants(root: number): Array<{ pid: number; cmd: string }> {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const ppid = ppidOf(Number(name));
    if (ppid === undefined) continue;
    children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
  }
  const out: Array<{ pid: number; cmd: string }> = [];
  const walk = (pid: number) => {
    for (const c of children.get(pid) ?? []) {
      out.push({ pid: c, cmd: commandLine(c) });
      walk(c);
    }
  };
  walk(root);
  return out;
}

/** Whether `pid` still runs `marker` (a pid reused by another program does not count). */
export function alive(pid: number, marker: string): boolean {
  if (!existsSync(`/proc/${pid}`)) return false;
  const stat = (() => {
    try {
      return readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      return '';
    }
  })();
  // A zombie has exited; only its parent's wait() is missing.
  if (/\) Z /.test(stat)) return false;
  return commandLine(pid).includes(marker);
}

/** TCP ports in LISTEN state owned by the given processes. */
export function listeningPorts(pids: number[]): number[] {
  const inodes = new Set<string>();
  for (const pid of pids) {
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) inodes.add(m[1]!);
      } catch {
        // closed meanwhile
      }
    }
  }
  const ports = new Set<number>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!existsSync(table)) continue;
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is HEX_IP:HEX_PORT, st 0A is LISTEN, inode is the 10th field.
      if (f.length > 9 && f[3] === '0A' && inodes.has(f[9]!)) ports.add(parseInt(f[1]!.split(':')[1]!, 16));
    }
  }
  return [...ports].sort((left, right) => left - right);
}

/** Whether 127.0.0.1:port can be bound (nobody listens on it). */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

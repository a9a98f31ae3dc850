/**
 * A process must not outlive the one that started it when that one supervises it: `pd-router dev` starts every
 * component with an IPC channel, and a component whose channel closes (its supervisor exited, even by SIGKILL) stops.
 * `pd-router dev` itself watches its parent pid (npm, a shell): when the parent is gone the process is re-parented, so
 * the pid changes. Nothing here keeps the event loop alive.
 */
import { opt } from './config/index.js';

/** The flag that makes a child process exit when its parent does (`pd-router dev`). */
export const parentWatchOptions = {
  watchParentInterval: opt.duration({
    default: 1_000,
    min: 0,
    description:
      'How often to check that the process that started this one (npm, a shell) is still there; when it is gone, stop as on SIGTERM. 0 turns the check off (e.g. for a run detached with nohup).',
  }),
};

/** Watches the parent process; stops the component when it is gone. */
export interface ParentWatch {
  stop(): void;
}

/**
 * Calls `onGone` once, when the supervising parent's IPC channel closes or (pollMs > 0) the parent pid changes from
 * `initialParent` (read it when the process starts: a parent may die while the component is still starting).
 */
export function watchParent(pollMs: number, onGone: (how: string) => void, initialParent = process.ppid): ParentWatch {
  let gone = false;
  const fire = (how: string) => {
    if (gone) return;
    gone = true;
    stop();
    onGone(how);
  };
  const onDisconnect = () => fire('the parent process closed its IPC channel');
  if (process.channel) {
    process.once('disconnect', onDisconnect);
    process.channel.unref();
  }
  // process.send exists only for a process started with an IPC channel; not connected means it closed already.
  const closedAlready = process.send !== undefined && !process.connected;
  const timer =
    pollMs > 0 && initialParent > 1
      ? setInterval(() => {
          // process.ppid is read afresh each time: an orphan is re-parented to init (1) or a subreaper.
          if (process.ppid !== initialParent) fire(`the parent process ${initialParent} exited`);
        }, pollMs)
      : undefined;
  timer?.unref();
  if (closedAlready) queueMicrotask(onDisconnect);
  else if (timer && process.ppid !== initialParent)
    queueMicrotask(() => fire(`the parent process ${initialParent} exited`));
  function stop() {
    process.off('disconnect', onDisconnect);
    if (timer) clearInterval(timer);
  }
  return { stop };
}

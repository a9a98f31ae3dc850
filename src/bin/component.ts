/**
 * The per-component binaries (`pd-router-epp`, `pd-router-sidecar`, `pd-router-sim`): each is one component taking its
 * flags directly, as llm-d's images run their programs (container args `--port=8000 ...`, no command word). They run
 * the same command modules as `pd-router <command>`.
 */
import type { CommandModule } from '../common/index.js';

export async function runComponent(program: string, load: () => Promise<CommandModule>): Promise<void> {
  try {
    const code = await (await load()).run(process.argv.slice(2), program);
    if (code >= 0) process.exitCode = code;
  } catch (err) {
    process.stderr.write(`${program}: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  }
}

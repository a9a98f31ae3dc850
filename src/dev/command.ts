/**
 * `pd-router dev`: the local P/D stack on simulators.
 */
import { defineCommand, opt, loggingOptions, shutdownOptions, type CommandDefinition } from '../common/index.js';
import { simConfig, startSimulator, type SimulatorHandle } from '../sim/index.js';

const devOptions = {
  host: opt.string({ default: '127.0.0.1', description: 'Address every local server binds to.' }),
  prefillPort: opt.int({ default: 8100, min: 0, max: 65535, description: 'Port of the prefill simulator.' }),
  decodePort: opt.int({ default: 8200, min: 0, max: 65535, description: 'Port of the decode simulator.' }),
  model: opt.string({ default: 'sim-model', description: 'Model name the simulators serve.' }),
  ...shutdownOptions,
  ...loggingOptions,
};

const devCommand: CommandDefinition<typeof devOptions> = {
  name: 'dev',
  summary: 'Starts a simulated pool on this machine: one prefill and one decode simulator, and prints their URLs.',
  options: devOptions,
  envPrefix: 'PD_DEV',
};

export const devCommandModule = defineCommand(devCommand, async (values, logger) => {
  const started: SimulatorHandle[] = [];
  try {
    for (const [role, port] of [
      ['prefill', values.prefillPort],
      ['decode', values.decodePort],
    ] as const) {
      const sim = await startSimulator(
        simConfig({ host: values.host, port, model: [values.model], mode: 'random', seed: 1, engineId: `${role}-0` }),
        logger.child({ role }),
      );
      started.push(sim);
      process.stdout.write(`${role.padEnd(8)} simulator: ${sim.url}  (metrics ${sim.url}/metrics)\n`);
    }
  } catch (e) {
    await Promise.all(started.map((s) => s.close(1000)));
    throw e;
  }
  process.stdout.write(
    `\nTry: curl -s ${started[1]!.url}/v1/chat/completions -H 'content-type: application/json' -d '{"model":"${values.model}","messages":[{"role":"user","content":"Hello"}]}'\n`,
  );
  return { stop: (d) => Promise.all(started.map((s) => s.close(d))).then(() => undefined) };
});

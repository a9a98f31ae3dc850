#!/usr/bin/env node
/** pd-router-sim: the vLLM simulator alone (llm-d-inference-sim's image: `--port=8000 --model=...`). */
import { runComponent } from './component.js';

await runComponent('pd-router-sim', async () => (await import('../sim/command.js')).simCommandModule);

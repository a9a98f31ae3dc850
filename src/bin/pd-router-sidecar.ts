#!/usr/bin/env node
/** pd-router-sidecar: the decode-pod routing sidecar alone (llm-d's pd-sidecar image: `--port=8000 --vllm-port=8200 ...`). */
import { runComponent } from './component.js';

await runComponent('pd-router-sidecar', async () => (await import('../sidecar/command.js')).sidecarCommandModule);

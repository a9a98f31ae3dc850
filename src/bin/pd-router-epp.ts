#!/usr/bin/env node
/** pd-router-epp: the Endpoint Picker alone (llm-d's EPP image: `/app/epp --pool-name=... --v 4 ...`). */
import { runComponent } from './component.js';

await runComponent('pd-router-epp', async () => (await import('../epp/command.js')).eppCommandModule);

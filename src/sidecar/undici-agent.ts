/**
 * undici's Agent without undici's index. The index loads all of undici (fetch, WebSocket, caches, mocks: ~110 modules,
 * ~9 MB of the sidecar's memory); the sidecar needs the Agent and what it uses (~30 modules). undici has no exports
 * map, so these paths are importable; test/sidecar/footprint.test.ts holds the Agent to the index's and checks that
 * the index stays unloaded.
 */
import Agent from 'undici/lib/dispatcher/agent.js';
import api from 'undici/lib/api/index.js';
import Dispatcher from 'undici/lib/dispatcher/dispatcher.js';

// What undici's index does when loaded: every dispatcher gets request(), stream(), pipeline(), upgrade(), connect()
// (the same functions, so loading the index as well changes nothing).
Object.assign(Dispatcher.prototype, api);

export { Agent };

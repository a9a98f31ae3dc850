import { it } from 'vitest';
import { disaggParams } from '../../src/epp/plugins/profile-handler/disagg-params.js';
it('x', () => { const r = disaggParams.safeParse({ stageOrder: 'sideways' }); console.log(JSON.stringify(r.error?.issues, null, 1)); });

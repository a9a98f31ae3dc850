/**
 * llm-d's published P/D EndpointPickerConfig files (deploy/config/pd-epp-config.yaml and sim-pd-epp-config.yaml,
 * verbatim in fixtures.ts) loaded unchanged and driven through the ext_proc server, reproducing the scenario of
 * llm-d-router's end-to-end test "Running a PD configuration with disagg-profile-handler and metrics validation"
 * (test/e2e/e2e_test.go): one prefill and four decode model servers, then
 *
 *   1. completion(simplePrompt)   2. chat(simplePrompt)   3. completion(extraPrompt)
 *   4. completion(simplePrompt) -> same decode pod as 1
 *   5. chat(extraPrompt)          6. chat(simplePrompt) -> same decode pod as 2
 *
 * and then `llm_d_epp_disagg_decision_total` / `llm_d_inference_scheduler_disagg_decision_total` with
 * model_name="food-review": decision_type="prefill-decode" = 4 and "decode-only" = 2.
 *
 * Mapping to upstream's setup:
 * - Upstream runs its test-only `pdConfig` (test/e2e/configs_test.go); here the two published files are used as they
 *   are (they add queue-scorer and differ in producer parameters; neither changes these decisions).
 * - Upstream's model servers are llm-d-inference-sim pods in Kind behind Envoy; here they are five pd-router
 *   simulators on loopback that the EPP discovers from an endpoints file and scrapes, and Envoy is played by a gRPC
 *   ext_proc client sending what Envoy sends (headers, body with end_of_stream, response headers and body).
 * - Upstream identifies the decode pod by the simulator's x-inference-pod response header; here by the EPP's
 *   x-gateway-destination-endpoint (the same pick, before the request is proxied).
 * - Requests are the bodies upstream's OpenAI client sends: {"model","prompt"} and {"model","messages":[user]}.
 *
 * Why 4 and 2: the EPP has no tokenizer, so prompts count ceil(bytes/4) tokens (chat: role bytes + content bytes);
 * simplePrompt is 27 tokens (chat 28), extraPrompt 16 (chat 17), all >= nonCachedTokens 16 while uncached, so the
 * first completion and chat of each prompt disaggregate (4). Chat and completion bodies hash to different prefix
 * blocks, so a chat is not a repeat of a completion; the two repeats (4 and 6) hit their whole prompt in the
 * approximate prefix index of the decode pod picked before, score highest there (prefix-cache-scorer x2) and are
 * decode-only (2).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEpp, type EppHandle } from '../../src/epp/index.js';
import { startSimulator, simConfig, type SimulatorHandle } from '../../src/sim/index.js';
import { metricsText, metricValue, waitFor } from '../helpers.js';
import { ExtProcTestClient, body, headers, responseBody, responseHeaders, setHeadersOf } from './ext-proc-client.js';
import { PD_EPP_CONFIG, SIM_PD_EPP_CONFIG, loopbackEppConfig, seeded, spec } from './fixtures.js';

// llm-d-router test/e2e/e2e_test.go and e2e_suite_test.go.
const SIM_MODEL_NAME = 'food-review';
const simplePrompt =
  'Hello my name is Andrew, I have a doctorate in Rocket Science, and I like interplanetary space exploration';
const extraPrompt = 'Why is the sky sometimes blue and sometimes red close to sunset?';
const PREFILL_REPLICAS = 1;
const DECODE_REPLICAS = 4;

let sims: SimulatorHandle[] = [];

beforeAll(async () => {
  sims = await Promise.all(
    Array.from({ length: PREFILL_REPLICAS + DECODE_REPLICAS }, () =>
      startSimulator(simConfig({ host: '127.0.0.1', port: 0, model: [SIM_MODEL_NAME] })),
    ),
  );
});
afterAll(async () => {
  await Promise.all(sims.map((handle) => handle.close()));
});

interface Decision {
  destination: string;
  prefiller?: string;
}

for (const [file, yaml] of [
  ['deploy/config/pd-epp-config.yaml', PD_EPP_CONFIG],
  ['deploy/config/sim-pd-epp-config.yaml', SIM_PD_EPP_CONFIG],
] as const) {
  describe(`llm-d ${file}, unchanged: the decisions of llm-d's P/D end-to-end test (1P/4D)`, () => {
    for (const seed of [1, 2, 3]) {
      let epp: EppHandle;
      let client: ExtProcTestClient;
      const prefillPod = () => `127.0.0.1:${sims[0].port}`;
      const decodePods = () => sims.slice(1).map((handle) => `127.0.0.1:${handle.port}`);

      beforeAll(async () => {
        const specs = [
          spec('vllm-sim-p-0', '127.0.0.1', 'prefill', {}, sims[0].port),
          ...sims.slice(1).map((handle, i) => spec(`vllm-sim-d-${i}`, '127.0.0.1', 'decode', {}, handle.port)),
        ];
        epp = await startEpp(loopbackEppConfig(yaml, specs), { random: seeded(seed) });
        client = new ExtProcTestClient(`127.0.0.1:${epp.grpcPort}`);
        // As in the e2e test, the pods are up and scraped before the first request.
        await waitFor(
          () => epp.store.all().length === 5 && epp.store.all().every((endpoint) => endpoint.metrics.updatedAt > 0),
          10_000,
          'the EPP to scrape all five simulators',
        );
      });
      afterAll(async () => {
        client?.close();
        await epp?.close(1000);
      });

      /** One request as Envoy sends it; returns the EPP's routing decision. */
      async function route(kind: 'completion' | 'chat', prompt: string, count: number): Promise<Decision> {
        const path = kind === 'completion' ? '/v1/completions' : '/v1/chat/completions';
        const payload =
          kind === 'completion'
            ? { model: SIM_MODEL_NAME, prompt }
            : { model: SIM_MODEL_NAME, messages: [{ role: 'user', content: prompt }] };
        const call = client.open();
        call.send(
          headers({
            ':method': 'POST',
            ':path': path,
            ':authority': 'envoy',
            'content-type': 'application/json',
            'x-request-id': `e2e-${seed}-${count}`,
          }),
          body(JSON.stringify(payload), true),
        );
        const [h] = await call.waitFor(2);
        const set = new Map(
          setHeadersOf(h.request_headers!.response.header_mutation).map(([k, value]) => [k.toLowerCase(), value]),
        );
        // Close the exchange as Envoy would after the model server answered.
        call.send(
          responseHeaders({ ':status': '200', 'content-type': 'application/json' }),
          responseBody(
            JSON.stringify({
              id: 'x',
              choices: [],
              usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
            }),
            true,
          ),
        );
        await call.waitFor(3);
        call.end();
        expect(await call.ended).toEqual({ code: 0, details: 'OK' });
        return { destination: set.get('x-gateway-destination-endpoint')!, prefiller: set.get('x-prefiller-host-port') };
      }

      it(`seed ${seed}: repeats land on the same decode pod; prefill-decode = 4, decode-only = 2`, async () => {
        const completion1 = await route('completion', simplePrompt, 1);
        const chat1 = await route('chat', simplePrompt, 2);
        const completionExtra = await route('completion', extraPrompt, 3);
        const completion2 = await route('completion', simplePrompt, 4);
        const chatExtra = await route('chat', extraPrompt, 5);
        const chat2 = await route('chat', simplePrompt, 6);

        for (const d of [completion1, chat1, completionExtra, completion2, chatExtra, chat2])
          expect(decodePods()).toContain(d.destination);
        expect(completion2.destination).toBe(completion1.destination);
        expect(chat2.destination).toBe(chat1.destination);
        // Which requests disaggregated (the prefill pod rides along in x-prefiller-host-port).
        expect(
          [completion1, chat1, completionExtra, completion2, chatExtra, chat2].map(
            (decision) => decision.prefiller ?? 'decode-only',
          ),
        ).toEqual([prefillPod(), prefillPod(), prefillPod(), 'decode-only', prefillPod(), 'decode-only']);

        const text = await metricsText(`http://127.0.0.1:${epp.metricsPort}`);
        for (const name of ['llm_d_inference_scheduler_disagg_decision_total', 'llm_d_epp_disagg_decision_total']) {
          expect(metricValue(text, name, { decision_type: 'prefill-decode', model_name: SIM_MODEL_NAME }), name).toBe(
            4,
          );
          expect(metricValue(text, name, { decision_type: 'decode-only', model_name: SIM_MODEL_NAME }), name).toBe(2);
        }
      });
    }
  });
}

/** vLLM KV-cache events: the wire codec and the block keys llm-d computes from token ids (EPP and simulator). */
export * from './block-keys.js';
export * from './codec.js';

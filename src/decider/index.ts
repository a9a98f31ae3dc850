/** P/D deciders: whether a request gets a remote prefill (or encode). The EPP registers them by type name. */
export * from './types.js';
export { alwaysDisaggPdDecider } from './always-disagg-pd-decider.js';
export {
  prefixBasedPdDecider,
  prefixBasedPdDeciderParams,
  type PrefixBasedPdDeciderParams,
} from './prefix-based-pd-decider.js';
export { alwaysDisaggMultimodalDecider, isMultimodalRequest } from './always-disagg-multimodal-decider.js';
export {
  costBasedPdDecider,
  costBasedPdDeciderParams,
  createCostBasedDecider,
  CostCalibration,
  type CostBasedPdDecider,
  type CostBasedPdDeciderParams,
} from './cost-based-pd-decider.js';

export * from './api-type.js';
export * from './prompt.js';
export * from './errors.js';

/** The P/D role label and which role values each role filter keeps (llm-d `filter/bylabel/roles.go`). */
export const ROLE_LABEL = 'llm-d.ai/role';

export const DECODE_ROLES = ['decode', 'prefill-decode', 'both', 'encode-prefill-decode'] as const;
export const PREFILL_ROLES = ['prefill', 'encode-prefill', 'prefill-decode', 'both', 'encode-prefill-decode'] as const;
export const ENCODE_ROLES = ['encode', 'encode-prefill', 'encode-prefill-decode'] as const;

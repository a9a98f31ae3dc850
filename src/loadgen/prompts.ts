/**
 * Prompts of an exact token length for the simulator's tokenizer (src/sim/tokenizer.ts, llm-d-inference-sim's): a run
 * of word characters plus its trailing whitespace is one token, so a prompt of N space-separated words is N tokens.
 * The words are common English words, which real BPE tokenizers also mostly encode as one token each (" word"), so
 * lengths against a real vLLM are close but not exact (its chat template adds its own tokens).
 *
 * Chat prompts are rendered by the simulator as `### user: <content>\n`: `#`, `#`, `# `, `user`, `: ` are 5 tokens and the
 * newline joins the last word's token, so chat content is N - 5 words.
 *
 * Each prompt is unique: right after the shared prefix (if any) come words encoding the request index and a per-run
 * nonce, so block-hash prefix caches never match beyond the shared prefix, not even across runs with the same seed.
 */
import { Rng } from './random.js';

const WORDS_TEXT = `the of and to in is was for on that with as by at from his her it an were are which this be or has had not
but its their they one two three new first also after who have more been other all into time only year when over most some
such years would there about these many can out may up people city later them then world state than him where while during
between both since under made used known part found each four five school water house small large long high great early
work life home group name game family team season music film book land river road line power war army field sea air fire
light day night week month place point order level number side hand body head face eye voice word story letter paper table
room door wall floor window garden tree flower grass stone gold silver iron glass wood cloth bread milk rice fruit apple
orange green blue black white red brown yellow dark bright warm cold hot dry wet soft hard heavy quick slow fast late young
old good bad best better real true free full open close clear simple plain rich poor strong weak happy sad kind calm quiet
loud deep short wide narrow thin thick round square north south east west spring summer autumn winter morning evening
market bridge castle church farm village island mountain valley forest desert ocean lake coast shore harbor train ship
plane truck horse bird fish dog cat cow sheep lion bear wolf fox deer mouse snake king queen prince lord judge doctor
teacher student worker farmer driver writer singer player leader member friend mother father sister brother child baby
woman man girl boy`;

export const WORDS: readonly string[] = [...new Set(WORDS_TEXT.split(/\s+/).filter((word) => word.length > 0))];

/** Tokens the simulator's chat rendering adds around one user message (`### user: ` … `\n`). */
export const CHAT_TEMPLATE_TOKENS = 5;

/** Words that make a prompt unique: the request index in base |WORDS| (3 digits, least significant first) and a 2-word run nonce. */
const UNIQUE_WORDS = 5;

export interface BuiltPrompt {
  /** Completions: the prompt; chat: the user message content. */
  text: string;
  /** Tokens the simulator counts for the request (including the chat rendering). */
  tokens: number;
}

export class PromptFactory {
  private readonly prefixes = new Map<number, string[]>();

  /**
   * @param seed seeds the shared prefixes (identical across runs of a seed, like a fixed system prompt) and filler words
   * @param nonce per-run value mixed into every prompt (random by default) so runs never share prefixes by accident
   */
  constructor(
    readonly api: 'chat' | 'completions',
    readonly seed: number,
    readonly nonce: number,
    readonly sharedPrefix?: { groups: number; prefixTokens: number },
  ) {}

  /** Fewest tokens a request of this factory can have. */
  get minTokens(): number {
    return (this.api === 'chat' ? CHAT_TEMPLATE_TOKENS : 0) + (this.sharedPrefix?.prefixTokens ?? 0) + 1;
  }

  prefixWords(group: number): string[] {
    let p = this.prefixes.get(group);
    if (!p) {
      const rng = new Rng(this.seed, 1_000_003 + group);
      p = Array.from({ length: this.sharedPrefix?.prefixTokens ?? 0 }, () => WORDS[rng.nextU32() % WORDS.length]!);
      this.prefixes.set(group, p);
    }
    return p;
  }

  /** Builds request `index`'s prompt of `tokens` tokens (raised to minTokens), in prefix group `group`. */
  build(index: number, tokens: number, group: number, rng: Rng): BuiltPrompt {
    const total = Math.max(this.minTokens, Math.round(tokens));
    const words = total - (this.api === 'chat' ? CHAT_TEMPLATE_TOKENS : 0);
    const out: string[] = this.sharedPrefix ? [...this.prefixWords(group)] : [];
    const v = WORDS.length;
    const unique = [index % v, Math.floor(index / v) % v, Math.floor(index / (v * v)) % v, this.nonce % v, Math.floor(this.nonce / v) % v];
    for (let i = 0; i < UNIQUE_WORDS && out.length < words; i++) out.push(WORDS[unique[i]!]!);
    while (out.length < words) out.push(WORDS[rng.nextU32() % v]!);
    return { text: out.join(' '), tokens: total };
  }
}

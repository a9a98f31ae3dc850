/**
 * The stand-in tokenizer, matching llm-d-inference-sim's simulated tokenizer so that both simulators count the same
 * prompt tokens: a token is one punctuation character or a run of ASCII word characters, plus any whitespace after it.
 * Characters the pattern does not match (non-ASCII letters, `|`, backtick, emoji) are dropped, as upstream drops them.
 * Token ids are the 32-bit FNV-1a hash of the token text including its trailing whitespace.
 *
 * Chat-style prompts are rendered as `### <role>: <content>\n` per message before tokenizing, as upstream renders them.
 */
import { contentText, type ApiType } from '../common/index.js';
import { isObject, type JsonObject } from '../common/json.js';

const TOKEN = /([{}:,\-.?!;@#$%^&*()+_~/\\><[\]="']|[0-9A-Za-z_]+)([\t\n\f\r ]*)/g;

export function tokenize(text: string): string[] {
  const out: string[] = [];
  TOKEN.lastIndex = 0;
  for (let m = TOKEN.exec(text); m !== null; m = TOKEN.exec(text)) out.push(m[0]);
  return out;
}

export function tokenId(token: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < token.length; i++) {
    h ^= token.charCodeAt(i) & 0xff;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export function tokenIds(tokens: readonly string[]): number[] {
  return tokens.map(tokenId);
}

function renderMessages(messages: readonly unknown[]): string {
  let out = '';
  for (const m of messages) {
    if (!isObject(m)) continue;
    out += `### ${typeof m.role === 'string' ? m.role : ''}: ${contentText(m.content)}\n`;
  }
  return out;
}

/** The prompt text upstream tokenizes for an API type (chat templates rendered as `### role: content`). */
export function renderPrompt(api: ApiType, body: JsonObject): string {
  switch (api) {
    case 'chat':
      return renderMessages(Array.isArray(body.messages) ? body.messages : []);
    case 'messages': {
      const msgs: unknown[] = [];
      if (body.system !== undefined) msgs.push({ role: 'system', content: body.system });
      if (Array.isArray(body.messages)) msgs.push(...body.messages);
      return renderMessages(msgs);
    }
    case 'responses': {
      const msgs: unknown[] = [];
      if (typeof body.instructions === 'string') msgs.push({ role: 'system', content: body.instructions });
      if (typeof body.input === 'string') msgs.push({ role: 'user', content: body.input });
      else if (Array.isArray(body.input)) msgs.push(...body.input);
      return renderMessages(msgs);
    }
    case 'completions':
      return typeof body.prompt === 'string' ? body.prompt : Array.isArray(body.prompt) ? body.prompt.filter((params) => typeof params === 'string').join('') : '';
    case 'generate':
      return '';
  }
}

/**
 * Sentences the random mode draws from (upstream's set), so random answers look alike in both simulators.
 */
export const RANDOM_SENTENCES = [
  'Testing@, #testing 1$ ,2%,3^, [4&*5], 6~, 7-_ + (8 : 9) / \\ < > . ',
  'Testing, testing 1,2,3. ',
  'I am fine, how are you today? ',
  'I am your AI assistant, how can I help you today? ',
  'Today is a nice sunny day. ',
  'The temperature here is twenty-five degrees centigrade. ',
  'Today it is partially cloudy and raining. ',
  'To be or not to be that is the question. ',
  'Alas, poor Yorick! I knew him, Horatio: A fellow of infinite jest ',
  'The rest is silence. ',
  'Give a man a fish and you feed him for a day; teach a man to fish and you feed him for a lifetime ',
] as const;

export const RANDOM_SENTENCE_TOKENS: readonly (readonly string[])[] = RANDOM_SENTENCES.map(tokenize);

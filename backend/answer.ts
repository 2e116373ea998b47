import { createHash } from 'node:crypto';

const OPENINGS = [
  (topic: string) => `Good question about “${topic}”.`,
  (topic: string) => `Voilà — here is what I can tell you about “${topic}”.`,
  (topic: string) => `Let me think about “${topic}” step by step.`,
  (topic: string) => `Thanks for asking about “${topic}”!`,
] as const;

const BODY = [
  'First, the document is split into chunks → each chunk is read, described and embedded.',
  'One upstream connection per topic means a thousand viewers cost one connection ✓.',
  'Naïve retries without Last-Event-ID would replay everything; resuming sends only what was missed.',
  'In Japanese “stream” is ストリーム, and in German it is “Datenstrom”.',
  'Latency stays low because every event is flushed the moment it exists ⚡.',
  'Backpressure matters — a slow reader must never slow the others down.',
  'Heartbeat comments keep proxies from closing quiet connections (every 15 s or so).',
  'Prices such as 12,50 € or ¥1 200 survive the trip intact, byte for byte.',
] as const;

const CLOSINGS = ['I hope this helps 🙂', 'Anything else I can look into? 🚀', 'Happy building! 🛠️', 'Bonne journée ☀️'] as const;

/**
 * The assistant's answer to `message`: a few sentences picked by the message's
 * hash, so the same message always gets the same answer (tests and demos can
 * rely on it) and different messages get different ones.
 */
export function composeAnswer(message: string): string {
  const hash = createHash('sha256').update(message).digest();
  const topic = summarize(message);
  const opening = OPENINGS[(hash[0] as number) % OPENINGS.length] as (topic: string) => string;
  const sentences = [opening(topic)];
  const count = 3 + ((hash[1] as number) % 3);
  for (let i = 0; i < count; i++) {
    const sentence = BODY[((hash[2 + i] as number) + i) % BODY.length] as string;
    if (!sentences.includes(sentence)) sentences.push(sentence);
  }
  sentences.push(CLOSINGS[(hash[8] as number) % CLOSINGS.length] as string);
  return sentences.join(' ');
}

/**
 * The answer cut into tokens the way a model streams them: each word with the
 * whitespace after it. Splitting only at whitespace never cuts a character (an
 * emoji's surrogate pair, a combining sequence) in two.
 */
export function tokenize(text: string): string[] {
  return text.match(/\S+\s*/gu) ?? [];
}

function summarize(message: string): string {
  const words = message.replace(/\s+/g, ' ').trim();
  const chars = [...words];
  return chars.length <= 60 ? words : `${chars.slice(0, 57).join('')}…`;
}

/** A topic: `download:CODE` or `session:SESSION_ID`, the keys of the relay's two shared streams. */
export type Topic = string;

const TOPIC = /^(download|session):([A-Za-z0-9_-]{1,128})$/;

/** Throws `TypeError` for a string that is not a topic, so a typo fails at the call, not as a 400 later. */
export function checkTopic(topic: string): Topic {
  if (!TOPIC.test(topic)) throw new TypeError(`not a topic: ${JSON.stringify(topic)} (expected download:CODE or session:ID)`);
  return topic;
}

/** The relay route that answers a topic's state as JSON, for polling. */
export function statusPath(topic: Topic): string {
  const [, kind, id] = TOPIC.exec(topic) ?? [];
  if (id === undefined) throw new TypeError(`not a topic: ${topic}`);
  return kind === 'download' ? `/api/downloads/${encodeURIComponent(id)}/status` : `/api/sessions/${encodeURIComponent(id)}`;
}

/** Whether a polled state is final: a download COMPLETED or FAILED, a session `done`. */
export function isFinalState(topic: Topic, state: unknown): boolean {
  if (typeof state !== 'object' || state === null) return false;
  const record = state as Record<string, unknown>;
  return topic.startsWith('download:') ? record.status === 'COMPLETED' || record.status === 'FAILED' : record.done === true;
}

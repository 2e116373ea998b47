import { type Topic, isFinalState, statusPath } from './topics';
import type { Transport } from './transport';

/** What the poller asks and tells. */
export interface PollerHooks {
  /** The topics to poll now. */
  topics(): ReadonlySet<Topic>;
  /** A topic's state, as the JSON text its status route answered. */
  onState(topic: Topic, json: string): void;
  /** A topic's state was final: it will not change again. */
  onFinal(topic: Topic): void;
  onError(error: Error): void;
}

/**
 * The fallback when streaming does not work: every `intervalMs`, each topic's status
 * route, one round at a time (a slow relay delays the next round rather than piling requests up).
 */
export class Poller {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private active = false;

  constructor(
    private readonly transport: Transport,
    private readonly intervalMs: number,
    private readonly hooks: PollerHooks,
  ) {}

  /** Starts polling now, unless it is already running. */
  start(): void {
    if (this.active) return;
    this.active = true;
    void this.round();
  }

  stop(): void {
    this.active = false;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private async round(): Promise<void> {
    await Promise.all([...this.hooks.topics()].map((topic) => this.pollOne(topic)));
    if (this.active) this.timer = setTimeout(() => void this.round(), this.intervalMs);
  }

  private async pollOne(topic: Topic): Promise<void> {
    try {
      const response = await this.transport.request(statusPath(topic), { headers: { accept: 'application/json' } });
      const text = await response.text();
      if (!this.active) return;
      if (!response.ok) {
        this.hooks.onError(new Error(`polling ${topic}: HTTP ${response.status}`));
        return;
      }
      this.hooks.onState(topic, text);
      let state: unknown;
      try {
        state = JSON.parse(text);
      } catch {
        this.hooks.onError(new Error(`polling ${topic}: the answer is not JSON`));
        return;
      }
      if (isFinalState(topic, state)) this.hooks.onFinal(topic);
    } catch (err) {
      if (this.active) this.hooks.onError(new Error(`polling ${topic}: ${err instanceof Error ? err.message : String(err)}`));
    }
  }
}

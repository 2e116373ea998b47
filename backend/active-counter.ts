import { BackendError } from './errors';

/** Counts each user's running jobs of one kind and refuses one past the limit with 429. */
export class ActiveCounter {
  private readonly counts = new Map<string, number>();

  constructor(private readonly limit: number) {}

  acquire(user: string): void {
    const count = this.counts.get(user) ?? 0;
    if (count >= this.limit) throw new BackendError('too_many_jobs');
    this.counts.set(user, count + 1);
  }

  release(user: string): void {
    const count = (this.counts.get(user) ?? 0) - 1;
    if (count > 0) this.counts.set(user, count);
    else this.counts.delete(user);
  }
}

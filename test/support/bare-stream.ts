import type { ServerResponse } from 'node:http';
import { NodeInternals } from '../../src/internals';
import { type RelayOptions, resolveOptions } from '../../src/options';
import { type CloseReason, Subscriber } from '../../src/relay/subscriber';
import { StreamPolicy } from '../../src/stream-policy';

/** The relay's stream policy with `settings` over the defaults; its clock runs only for what is `watch`ed. */
export function policyOf(settings: Omit<Partial<RelayOptions>, 'backendUrl'> = {}): StreamPolicy {
  return new StreamPolicy(resolveOptions({ backendUrl: 'http://127.0.0.1:1', ...settings }));
}

/** Node's internals as the relay uses them by default; a warning fails the test that caused it. */
const INTERNALS = new NodeInternals({
  enabled: true,
  warn: (line) => {
    throw new Error(`unexpected warning: ${line}`);
  },
});

/** A Subscriber on `res` outside any hub: nothing ticks it unless the test does. */
export function bareSubscriber(res: ServerResponse, policy: StreamPolicy, onClose: (reason: CloseReason) => void = () => undefined): Subscriber {
  return new Subscriber(res, policy, { onClose: (_subscriber, reason) => onClose(reason) }, INTERNALS);
}

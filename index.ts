export { type CreateRelayOptions, type Relay, createRelay } from './routes/relay';
export type { RelayOptions } from './src/options';
export type { AuthorizeTopic } from './src/relay/authorize';
export type { JwtOptions } from './middleware/authenticate';
export { type SseEvent, encodeEvent } from './src/sse/encode';
export { type EventFeed, LocalOwnership, type TopicOwnership } from './src/relay/ownership';
export type { ReplayBuffer, StoredEvent } from './src/relay/replay';
export type { UpstreamInit, UpstreamListener } from './src/relay/upstream';

/** Why a stream ended; used for logs and metrics. */
export type CloseReason =
  | 'client_closed'
  | 'upstream_ended'
  | 'relay_error'
  | 'slow_client'
  | 'idle_timeout'
  | 'lifetime'
  | 'rejected'
  | 'shutdown'
  | 'token_expired'
  | 'ended_by_app';

import { randomBytes } from 'node:crypto';
import type { Request } from 'express';
import { BackendError } from './errors';

/** The shape of every id in a path: download codes, session ids, chatbot ids. */
export const ID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;

/** A new unguessable id: 128 random bits, base64url. */
export function newId(): string {
  return randomBytes(16).toString('base64url');
}

/** The path parameter `name`, checked against `ID_PATTERN`. */
export function pathId(req: Request, name: string): string {
  const value = (req.params as Record<string, string | undefined>)[name];
  if (value === undefined || !ID_PATTERN.test(value)) throw new BackendError('invalid_id');
  return value;
}

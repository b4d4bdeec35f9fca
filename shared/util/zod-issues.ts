import type { z } from 'zod';

/** A zod error's issues as "path: message" lines ("(root)" for the top level). */
export function formatZodIssues(error: z.ZodError): string[] {
  return error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`);
}

/**
 * Security headers of the coordinator's audit page and API (coordinator/http/audit.controller.ts).
 *
 * The page (coordinator/http/audit-page: index.html with one inline <style>, and audit-page.js, one
 * esbuild bundle) needs: its own script, WebAssembly compilation for libsodium ('wasm-unsafe-eval':
 * WebAssembly only, not JavaScript eval), its inline stylesheet (allowed by its SHA-256, computed
 * from the served index.html, so nothing else inline runs or applies) and fetch() to the audit API
 * on the same origin. Everything else is refused: other scripts and styles, plugins, frames, forms,
 * <base>, and being framed (frame-ancestors 'none', and X-Frame-Options for older browsers).
 * Every response also says nosniff (a log page or an error text is never run as script or HTML)
 * and sends no Referer onwards.
 */
import { createHash } from 'node:crypto';

/** The Content-Security-Policy of the page, given the served index.html (its inline styles are allowed by hash). */
export function auditPageCsp(indexHtml: string): string {
  const styles = [...indexHtml.matchAll(/<style>([\s\S]*?)<\/style>/g)].map((m) => `'sha256-${createHash('sha256').update(m[1], 'utf8').digest('base64')}'`);
  return [
    "default-src 'none'",
    "script-src 'self' 'wasm-unsafe-eval'",
    `style-src ${styles.length ? styles.join(' ') : "'none'"}`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

/** The Content-Security-Policy of everything else served under /audit/ (API answers, the script, errors): nothing may load or frame it. */
export const AUDIT_API_CSP = "default-src 'none'; frame-ancestors 'none'";

/** Headers on every /audit/ response besides the Content-Security-Policy. */
export const AUDIT_SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
};
